"""The Train page's configuration form, generated from the field table; also loads a config into it (not a page)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import streamlit as st

from kmnist_core.config import FIELDS, MAX_LAYERS, PRESETS, UNIT_OPTIONS, Field, TrainConfig
from kmnist_core.errors import ConfigError

CUSTOM = "custom"
DEFAULT_PRESET = "ref-relu-adam"
PRESET = "train_preset"
N_LAYERS, AS_TEXT, LAYERS_TEXT = "train_n_layers", "train_layers_as_text", "train_layers_text"
UNIT_KEYS = tuple(f"train_units_{i}" for i in range(MAX_LAYERS))
SAVED = "_train_saved"  # widget values kept while the user is on another page
ss = st.session_state


def key(name: str) -> str:
    """The widget key of a field: train_<name>."""
    return f"train_{name}"


FIELD_KEYS = {key(name): name for name, f in FIELDS.items() if f.widget != "layers"}
WIDGET_KEYS = (PRESET, N_LAYERS, AS_TEXT, LAYERS_TEXT, *UNIT_KEYS, *FIELD_KEYS)


def field_widget(f: Field, widget_key: str, on_change: Callable[[], None] | None = None) -> None:
    """The widget of one field, as the table describes it: the constraint's range, the table's default."""
    ss.setdefault(widget_key, f.default)
    kw = {"key": widget_key, "help": f.help or None, "on_change": on_change}
    if f.widget == "select":
        st.selectbox(f.label, f.choices, **kw)
    elif f.widget == "select_slider":
        st.select_slider(f.label, f.options, format_func=lambda v: f"{v:g}", **kw)
    elif f.widget == "slider":
        st.slider(f.label, f.low, f.high, step=f.step, **kw)
    elif f.widget == "checkbox":
        st.checkbox(f.label, **kw)
    elif f.kind == "int":
        st.number_input(f.label, min_value=int(f.low), max_value=int(f.high), step=int(f.step or 1), **kw)
    else:  # an open lower bound cannot be a widget minimum: the field's check says so instead
        optional = {"value": None, "placeholder": "optimizer default"} if f.optional else {}  # None: may be empty
        st.number_input(f.label, min_value=None if f.low_open else float(f.low), max_value=float(f.high),
                        step=f.step, format="%g", **optional, **kw)


def widget_values(config: TrainConfig) -> dict:
    """Widget states that show this config."""
    values = {k: getattr(config, name) for k, name in FIELD_KEYS.items()}
    layers = config.hidden_layers
    fits = all(u in UNIT_OPTIONS for u in layers)
    values.update({N_LAYERS: len(layers), AS_TEXT: not fits, LAYERS_TEXT: FIELDS["hidden_layers"].format(layers)})
    for i, k in enumerate(UNIT_KEYS):
        values[k] = layers[i] if fits and i < len(layers) else ss.get(k, 128)
    return values


def load(config: TrainConfig, preset: str = CUSTOM) -> None:
    """Show this config in the Train page's widgets (the next time it is drawn)."""
    ss[SAVED] = {PRESET: preset, **widget_values(config)}
    ss.pop(PRESET, None)  # the page restores everything from SAVED, as after a page switch


def _apply_preset() -> None:
    if ss[PRESET] != CUSTOM:
        ss.update(widget_values(PRESETS[ss[PRESET]].config))


def _mark_custom() -> None:
    ss[PRESET] = CUSTOM


def _toggle_text() -> None:
    """Carry the layers over between the sliders and the text field."""
    _mark_custom()
    if ss[AS_TEXT]:
        ss[LAYERS_TEXT] = FIELDS["hidden_layers"].format([ss[k] for k in UNIT_KEYS[: ss[N_LAYERS]]])
        return
    try:
        layers = TrainConfig(hidden_layers=ss[LAYERS_TEXT]).hidden_layers
    except ConfigError:
        return
    if all(u in UNIT_OPTIONS for u in layers):
        ss[N_LAYERS] = len(layers)
        ss.update(dict(zip(UNIT_KEYS, layers, strict=False)))


def _restore() -> None:
    """First visit: the default preset; coming back from another page (or after load()): what was set."""
    saved = ss.get(SAVED) or {PRESET: DEFAULT_PRESET, **widget_values(PRESETS[DEFAULT_PRESET].config)}
    # Streamlit drops a widget's state while its page is not shown, but keeps a value a callback
    # wrote into the same key: coming back (the preset key is gone), restore it all.
    returning = PRESET not in ss
    for k, value in saved.items():
        if returning or k not in ss:
            ss[k] = value


def _layers_widgets(f: Field) -> None:
    st.toggle("Type the layers as text", key=AS_TEXT, on_change=_toggle_text)
    if ss[AS_TEXT]:
        st.text_input(f"{f.label} (units, comma-separated)", key=LAYERS_TEXT, on_change=_mark_custom, help=f.help)
        return
    st.slider(f.label, 1, MAX_LAYERS, key=N_LAYERS, on_change=_mark_custom)
    for i in range(ss[N_LAYERS]):
        st.select_slider(f"Units in layer {i + 1}", UNIT_OPTIONS, key=UNIT_KEYS[i], on_change=_mark_custom)


def draw(fields: Mapping[str, Field] = FIELDS) -> tuple[TrainConfig | None, str]:
    """Draw the form; returns (the config it describes, "") or (None, the one-line error)."""
    _restore()
    st.selectbox("Preset", [*PRESETS, CUSTOM], key=PRESET, on_change=_apply_preset,
                 format_func=lambda n: n if n == CUSTOM else f"{n}: {PRESETS[n].config.describe()}",
                 help="The reference study's configurations; changing any field below makes it custom.")
    left, right = st.columns(2)
    main = [f for f in fields.values() if not f.advanced]
    with left:
        for f in (f for f in main if f.widget == "layers"):
            _layers_widgets(f)
    with right:
        for f in (f for f in main if f.widget != "layers"):
            field_widget(f, key(f.name), _mark_custom)
    with st.expander("Advanced"):
        columns = st.columns(3)
        for i, f in enumerate(f for f in fields.values() if f.advanced):
            with columns[i % 3]:
                field_widget(f, key(f.name), _mark_custom)
    ss[SAVED] = {k: ss[k] for k in WIDGET_KEYS if k in ss}
    try:
        return _config(), ""
    except ConfigError as e:
        return None, str(e)


def _config() -> TrainConfig:
    """The TrainConfig the widgets describe (sliders' float noise rounded away)."""
    layers = ss[LAYERS_TEXT] if ss[AS_TEXT] else tuple(ss[k] for k in UNIT_KEYS[: ss[N_LAYERS]])
    values = {name: ss[k] for k, name in FIELD_KEYS.items()}
    for name, value in values.items():
        if FIELDS[name].widget == "slider" and isinstance(value, float):
            values[name] = round(value, 4)
    return TrainConfig(hidden_layers=layers, **values)
