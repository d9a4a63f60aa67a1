"""A configuration is a link (AppTest): widgets bound to the URL's query parameters; bad values give one notice each."""

import pytest
from helpers import ROOT
from streamlit.testing.v1 import AppTest

from kmnist_core.config import PRESETS, TrainConfig, train_command


def _open(params):
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=60)
    for name, value in params.items():
        at.query_params[name] = value
    at.run()
    assert not at.exception, at.exception
    return at


def test_a_link_opens_exactly_its_configuration(env):
    at = _open({"train_preset": "custom", "train_n_layers": "1", "train_units_0": "256", "train_activation": "tanh",
                "train_optimizer": "rmsprop", "train_weight_decay": "0.001", "train_epochs": "3",
                "train_dropout": "0.2", "train_batch_norm": "true", "train_learning_rate": "0.002"})
    expected = TrainConfig((256,), "tanh", "rmsprop", 0.001, learning_rate=0.002, epochs=3, dropout=0.2,
                           batch_norm=True)
    assert not at.warning
    [code] = at.code
    assert code.value == train_command(expected)  # what training from the link trains, and its cache key
    assert at.slider(key="train_n_layers").value == 1 and at.select_slider(key="train_units_0").value == 256


def test_a_link_without_parameters_is_the_default_preset(env):
    at = _open({})
    assert at.code[0].value == train_command(PRESETS["ref-relu-adam"].config)


@pytest.mark.parametrize("name, value, why", [
    ("train_epochs", "0", "epochs must be an integer in the range [1, 200]; got 0"),
    ("train_weight_decay", "0.0007", "weight_decay must be one of 0, 1e-05"),
    ("train_activation", "swish", "activation must be one of 'relu'"),
    ("train_n_layers", "9", "the number of hidden layers must be 1 to 6"),
    ("train_preset", "nope", "the preset must be one of"),
])
def test_a_bad_link_value_is_ignored_with_one_notice_naming_it(env, name, value, why):
    at = _open({name: value, "train_seed": "7"})
    notices = [w.value for w in at.warning]
    assert len(notices) == 1 and notices[0].startswith(f"the link's {name}={value!r} was ignored: ") and why in \
        notices[0], notices
    assert "--seed 7" in at.code[0].value  # the good parameter still applies


def test_a_bad_or_gone_run_in_a_link_is_one_line_and_the_page_goes_on(env):
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=60)
    at.run()
    for value, line in (("../etc", "run id '../etc' is not valid"), ("20990101-000000-abcdef", "no longer exists")):
        at.switch_page("pages/confusion.py")
        at.query_params["run"] = value
        at.run()
        assert not at.exception
        shown = [m.value for m in (*at.error, *at.warning)]
        assert len([m for m in shown if line in m]) == 1, shown
        assert [t.value for t in at.main.title] == ["Confusion matrix"]
