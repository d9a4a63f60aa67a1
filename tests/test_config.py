"""TrainConfig: constraints, messages, layer parsing, keys and presets."""

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmnist_core.config import PRESETS, TrainConfig, parse_layers
from kmnist_core.errors import ConfigError


@pytest.mark.parametrize("text, layers", [
    ("128, 64", (128, 64)), ("128,64", (128, 64)), ("[256, 128, 64]", (256, 128, 64)),
    ("  32 ", (32,)), ("4096", (4096,)), ("1,2,3,4,5,6", (1, 2, 3, 4, 5, 6)), ("128 64", (128, 64)),
])
def test_parse_layers(text, layers):
    assert parse_layers(text) == layers


@pytest.mark.parametrize("text", ["", "0", "-5", "abc", "128,,64", "1,2,3,4,5,6,7", "100000", "128,", ",64",
                                  "1.5", "٣", "12 ,, 3", "[]"])
def test_parse_layers_rejects(text):
    with pytest.raises(ConfigError) as e:
        parse_layers(text)
    msg = str(e.value)
    assert msg.startswith("hidden_layers must be") and repr(text) in msg and "1 to 4096" in msg


@pytest.mark.parametrize("field, value, allowed", [
    ("weight_decay", math.nan, "[0, 0.1]"), ("weight_decay", -0.1, "[0, 0.1]"), ("weight_decay", 1e9, "[0, 0.1]"),
    ("learning_rate", 0.0, "(0, 1]"), ("epochs", 0, "[1, 200]"), ("epochs", 2.5, "integer"),
    ("batch_size", 0, "[8, 4096]"), ("activation", "swishy", "'relu'"), ("optimizer", "adamw", "'nesterov'"),
    ("val_fraction", 0.9, "[0.01, 0.5]"), ("seed", -1, "integer"), ("hidden_layers", (), "1 to 6"),
    ("hidden_layers", (128, 0), "1 to 4096"), ("dropout", 1.0, "[0, 0.9]"), ("lr_schedule", "linear", "'cosine'"),
    ("batch_norm", "yes", "true or false"), ("epochs", True, "integer"),
])
def test_bad_values_name_field_value_and_allowed(field, value, allowed):
    with pytest.raises(ConfigError) as e:
        TrainConfig(**{field: value})
    msg = str(e.value)
    shown = repr(list(value) if isinstance(value, tuple) else value)
    assert msg.startswith(f"{field} must be") and allowed in msg and msg.endswith(f"got {shown}")
    assert isinstance(e.value, ValueError)


def test_string_layers_are_parsed_and_config_is_frozen():
    c = TrainConfig(hidden_layers="256, 128")
    assert c.hidden_layers == (256, 128)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.epochs = 3


def test_round_trip_and_unknown_keys():
    c = TrainConfig((64,), "tanh", "nesterov", 0.001, epochs=3)
    assert TrainConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ConfigError, match="unknown config field 'colour'"):
        TrainConfig.from_dict({**c.to_dict(), "colour": "red"})


def test_key_is_stable_and_depends_on_config_and_data():
    a, b = TrainConfig(), TrainConfig()
    assert a.key("data1") == b.key("data1")
    assert a.key("data1") != a.key("data2")
    assert a.key("d") != a.replace(seed=1).key("d")
    # None means the optimizer's default, so spelling it out is the same run
    assert a.key("d") == a.replace(learning_rate=0.001).key("d")


def test_presets_are_the_reference_study():
    ref = PRESETS["ref-relu-adam"]
    assert ref.config.hidden_layers == (128, 64) and ref.config.weight_decay == 0.0005
    assert (ref.reported_val_accuracy, ref.reported_test_accuracy) == (0.9495, 0.8834)
    assert {p.config.optimizer for p in PRESETS.values() if p.name.startswith("ref-")} == {
        "adam", "sgd", "rmsprop", "nesterov"}


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_parse_layers_never_raises_anything_else(text):
    try:
        layers = parse_layers(text)
    except ConfigError:
        return
    assert isinstance(layers, tuple) and 1 <= len(layers) <= 6 and all(1 <= u <= 4096 for u in layers)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-10, 5000), max_size=8).map(lambda xs: ", ".join(map(str, xs))))
def test_parse_layers_on_number_lists(text):
    try:
        layers = parse_layers(text)
    except ConfigError:
        return
    assert ", ".join(map(str, layers)) == text
