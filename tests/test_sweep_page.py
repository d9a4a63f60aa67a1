"""The Sweep page (AppTest, real job queue, real Optuna study in the runs folder): start, watch, open in Train."""

import time

import pytest
from helpers import ROOT
from streamlit.testing.v1 import AppTest

from kmnist_core.store import RunStore

SPACE = 'epochs = 1\nbatch_size = 512\nhidden_layers = [[16], [32]]\noptimizer = ["adam", "rmsprop"]\n'


@pytest.fixture
def at(env):
    app = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=60)
    app.run()
    app.switch_page("pages/sweep.py").run()
    assert not app.exception, app.exception
    return app


def _table(at):
    frames = [d.value for d in at.dataframe if "trial" in d.value.columns]
    return frames[0] if frames else None


def test_a_bad_pasted_space_is_one_line_and_start_is_disabled(at):
    at.text_area(key="sweep_text").set_value('epochs = 1\nweight_decay = { low = 0, high = 0.1, log = true }\n').run()
    assert [e.value for e in at.error] == ["space: weight_decay: a log range needs low > 0; got low 0"]
    assert at.button(key="sweep_start").disabled


def test_a_tiny_sweep_runs_in_the_background_and_its_trial_opens_in_train(at):
    at.text_area(key="sweep_text").set_value(SPACE)
    at.number_input(key="sweep_budget").set_value(2)
    at.selectbox(key="sweep_pruner").set_value("none").run()
    assert not at.error
    at.button(key="sweep_start").click().run()
    assert not at.exception, at.exception
    deadline = time.monotonic() + 180
    while True:  # the page's fragment polls in a browser; here each run is one poll
        table = _table(at)
        # TPE's random start-up may draw one configuration twice: the second is "completed (cached)"
        if table is not None and table.status.str.startswith("completed").sum() == 2:
            break
        assert time.monotonic() < deadline, ("the sweep did not finish", None if table is None else table.to_dict(),
                                             [x.value for x in [*at.caption, *at.info, *at.warning, *at.error]])
        time.sleep(1)
        at.run()
        assert not at.exception, at.exception
    assert table.trial.tolist() == [0, 1] and table["val accuracy"].between(0, 1).all()
    charts = [c.proto.spec for c in at.get("plotly_chart")]
    assert any('"best so far"' in spec for spec in charts) and any("Parameter importance" in spec for spec in charts)
    at.selectbox(key="sweep_open_trial").set_value(1)
    at.button(key="sweep_open").click().run()
    assert not at.exception, at.exception
    run = RunStore().get(table.run.tolist()[1])
    assert [t.value for t in at.main.title] == ["Train"]
    assert at.number_input(key="train_epochs").value == 1 and at.number_input(key="train_batch_size").value == 512
    assert at.selectbox(key="train_optimizer").value == run.config.optimizer
