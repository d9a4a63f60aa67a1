"""The field table drives validation, Train widgets, CLI flags and summaries: one edit adds a field."""

import dataclasses

import numpy as np
import pytest
import streamlit as st
from helpers import ROOT, SUBSET
from streamlit.testing.v1 import AppTest

from kmnist_core import cli, views
from kmnist_core.config import FIELDS, PRESETS, UNIT_OPTIONS, Field, TrainConfig, field_table, train_command
from kmnist_core.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Extended(TrainConfig):
    """TrainConfig with one more field, as a developer would add it."""

    momentum: float = 0.9  # SGD momentum


ROWS = {name: dataclasses.replace(f, name="", default=None) for name, f in FIELDS.items()}
MOMENTUM = Field("float", "Momentum", "SGD momentum", 0.0, 0.99, widget="slider", step=0.01, advanced=True,
                 short="momentum")
TABLE = field_table({**ROWS, "momentum": MOMENTUM}, Extended)


def test_every_field_has_a_row_and_every_row_a_field():
    assert list(FIELDS) == [f.name for f in dataclasses.fields(TrainConfig)]
    assert all(f.name == name and f.default == getattr(TrainConfig(), name) for name, f in FIELDS.items())
    with pytest.raises(RuntimeError, match="momentum"):
        field_table(ROWS, Extended)  # a field without a row is caught when the table is built


def test_a_new_field_at_its_default_keeps_every_stored_key():
    assert Extended().key("data", TABLE) == TrainConfig().key("data")  # stored runs keep their cache hits
    assert Extended(momentum=0.5).key("data", TABLE) != TrainConfig().key("data")
    assert TrainConfig().key("d") == "079f7c70280872a61ae2"  # the key of the defaults, as stores hold it


def test_a_new_row_becomes_a_cli_flag_with_its_help(capsys):
    parser = cli.build_parser(TABLE)
    args = parser.parse_args(["train", "--momentum", "0.5", "--epochs", "3"])
    assert cli.config_changes(args, TABLE) == {"momentum": 0.5, "epochs": 3}
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--momentum VALUE Momentum: SGD momentum; a number in the range [0, 0.99]" in help_text
    with pytest.raises(ConfigError, match="momentum must be a number in the range"):
        cli.config_changes(parser.parse_args(["train", "--momentum", "fast"]), TABLE)


def test_a_new_row_becomes_a_summary_label_and_a_train_command_flag():
    config = Extended(momentum=0.5)
    assert config.summary(fields=TABLE) == "[128, 64] relu adam wd=0 · momentum 0.5"
    assert Extended().summary(fields=TABLE) == "[128, 64] relu adam wd=0"  # at its default: not named
    assert train_command(config, TABLE) == ("python -m kmnist_core train --hidden 128,64 --activation relu "
                                            "--optimizer adam --weight-decay 0.0 --momentum 0.5")


def _form_with_the_new_row():
    from test_fields import TABLE

    from pages import config_form

    config_form.draw(TABLE)


def test_a_new_row_becomes_a_train_page_widget_with_its_range():
    at = AppTest.from_function(_form_with_the_new_row, default_timeout=30)
    at.run()
    slider = at.slider(key="train_momentum")
    assert (slider.label, slider.min, slider.max, slider.value) == ("Momentum", 0.0, 0.99, 0.9)


def test_the_train_page_widgets_have_the_constraints_ranges(monkeypatch, tmp_path):
    monkeypatch.setenv("KMNIST_DATA_DIR", str(SUBSET))
    monkeypatch.setenv("KMNIST_RUNS_DIR", str(tmp_path / "runs"))
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=60)
    at.run()
    checked = 0
    for name, f in FIELDS.items():
        key = f"train_{name}"
        if f.widget == "slider":
            w = at.slider(key=key)
            assert (w.min, w.max) == (f.low, f.high) and w.label == f.label, name
        elif f.widget == "number":
            proto = at.number_input(key=key).proto
            assert proto.max == f.high and (not proto.has_min if f.low_open else proto.min == f.low), name
        elif f.widget == "select":
            assert tuple(at.selectbox(key=key).options) == f.choices, name
        elif f.widget == "select_slider":
            assert len(at.select_slider(key=key).options) == len(f.options), name
        elif f.widget == "checkbox":
            assert at.checkbox(key=key).label == f.label, name
        else:
            continue
        checked += 1
    assert checked == len(FIELDS) - 1  # all but the hidden layers, which have a widget kind of their own
    st.cache_resource.clear()


def test_option_lists_stay_within_the_constraints():
    assert UNIT_OPTIONS == (16, 32, 64, 128, 256, 512, 1024) and max(UNIT_OPTIONS) <= 4096
    wd = FIELDS["weight_decay"].options
    assert wd[0] == 0.0 and 0.0005 in wd and list(wd) == sorted(set(wd)) and max(wd) == FIELDS["weight_decay"].high
    assert {p.config.weight_decay for p in PRESETS.values()} <= set(wd)
    positive = np.array(wd[1:])
    assert np.all(positive[1:] / positive[:-1] <= 2.5)  # a log scale: each step at most x2.5


def test_compare_columns_come_from_the_table():
    columns = [f.column for f in FIELDS.values() if f.column]
    assert list(views.TABLE_COLUMNS[3 : 3 + len(columns)]) == columns

