"""The Train form: generated from the field table, bound to the URL (a configuration is a link); not a page."""

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
ss = st.session_state
# Every widget is bound to the URL with Streamlit's own bind="query-params": its key is the
# parameter, a value at its default is left out, so the default preset's link is just the page's.
BIND = {"bind": "query-params"}


def key(name: str) -> str:
    """The widget key of a field: train_<name>."""
    return f"train_{name}"


FIELD_KEYS = {key(name): name for name, f in FIELDS.items() if f.widget != "layers"}


def field_widget(f: Field, widget_key: str, default: object, on_change: Callable[[], None] | None = None) -> None:
    """The widget of one field, as the table describes it: the constraint's range, bound to the URL."""
    kw = {"key": widget_key, "help": f.help or None, "on_change": on_change, **BIND}
    if f.widget == "select":
        st.selectbox(f.label, f.choices, index=f.choices.index(default), **kw)
    elif f.widget == "select_slider":
        st.select_slider(f.label, f.options, value=default, format_func=lambda v: f"{v:g}", **kw)
    elif f.widget == "slider":
        st.slider(f.label, f.low, f.high, value=default, step=f.step, **kw)
    elif f.widget == "checkbox":
        st.checkbox(f.label, value=default, **kw)
    elif f.kind == "int":
        st.number_input(f.label, min_value=int(f.low), max_value=int(f.high), value=default, step=int(f.step or 1),
                        **kw)
    else:  # an open lower bound cannot be a widget minimum: the field's check says so instead
        placeholder = "optimizer default" if f.optional else None
        st.number_input(f.label, min_value=None if f.low_open else float(f.low), max_value=float(f.high),
                        value=default, step=f.step, format="%g", placeholder=placeholder, **kw)


def widget_values(config: TrainConfig) -> dict:
    """Widget states that show this config."""
    values = {k: getattr(config, name) for k, name in FIELD_KEYS.items()}
    layers = config.hidden_layers
    fits = all(u in UNIT_OPTIONS for u in layers)
    values.update({N_LAYERS: len(layers), AS_TEXT: not fits, LAYERS_TEXT: FIELDS["hidden_layers"].format(layers)})
    for i, k in enumerate(UNIT_KEYS):
        values[k] = layers[i] if fits and i < len(layers) else 128
    return values


DEFAULTS = {PRESET: DEFAULT_PRESET, **widget_values(PRESETS[DEFAULT_PRESET].config)}  # the widgets' own defaults


def load(config: TrainConfig, preset: str = CUSTOM) -> None:
    """Show this config in the Train page's widgets (the next time it is drawn), e.g. a sweep's trial."""
    ss.update({PRESET: preset, **widget_values(config)})


def link_notices() -> list[str]:
    """One line per parameter of the page's link that its widget cannot take (Streamlit ignores those)."""
    notices = []
    for name, text in st.query_params.items():
        try:
            if name in FIELD_KEYS:
                FIELDS[FIELD_KEYS[name]].parse(text, widget=True)
            elif name == PRESET and text not in (*PRESETS, CUSTOM):
                raise ConfigError(f"the preset must be one of {', '.join((*PRESETS, CUSTOM))}")
            elif name == N_LAYERS and text not in [str(n) for n in range(1, MAX_LAYERS + 1)]:
                raise ConfigError(f"the number of hidden layers must be 1 to {MAX_LAYERS}")
            elif name in UNIT_KEYS and text not in [str(u) for u in UNIT_OPTIONS]:
                raise ConfigError(f"units must be one of {', '.join(map(str, UNIT_OPTIONS))}")
            elif name == LAYERS_TEXT:
                FIELDS["hidden_layers"].parse(text)
        except ConfigError as e:
            notices.append(f"the link's {name}={text!r} was ignored: {e}")
    return notices


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


def _layers_widgets(f: Field) -> None:
    st.toggle("Type the layers as text", value=DEFAULTS[AS_TEXT], key=AS_TEXT, on_change=_toggle_text, **BIND)
    if ss[AS_TEXT]:
        st.text_input(f"{f.label} (units, comma-separated)", value=DEFAULTS[LAYERS_TEXT], key=LAYERS_TEXT,
                      on_change=_mark_custom, help=f.help, **BIND)
        return
    st.slider(f.label, 1, MAX_LAYERS, value=DEFAULTS[N_LAYERS], key=N_LAYERS, on_change=_mark_custom, **BIND)
    for i in range(ss[N_LAYERS]):
        st.select_slider(f"Units in layer {i + 1}", UNIT_OPTIONS, value=DEFAULTS[UNIT_KEYS[i]], key=UNIT_KEYS[i],
                         on_change=_mark_custom, **BIND)


def draw(fields: Mapping[str, Field] = FIELDS) -> tuple[TrainConfig | None, str]:
    """Draw the form; returns (the config it describes, "") or (None, the one-line error)."""
    for notice in link_notices():
        st.warning(notice, icon=":material/link_off:")
    names = [*PRESETS, CUSTOM]
    st.selectbox("Preset", names, index=names.index(DEFAULT_PRESET), key=PRESET, on_change=_apply_preset,
                 format_func=lambda n: n if n == CUSTOM else f"{n}: {PRESETS[n].config.describe()}",
                 help="The reference study's configurations; changing any field below makes it custom.", **BIND)
    left, right = st.columns(2)
    main = [f for f in fields.values() if not f.advanced]
    with left:
        for f in (f for f in main if f.widget == "layers"):
            _layers_widgets(f)
    with right:
        for f in (f for f in main if f.widget != "layers"):
            field_widget(f, key(f.name), DEFAULTS.get(key(f.name), f.default), _mark_custom)
    with st.expander("Advanced"):
        columns = st.columns(3)
        for i, f in enumerate(f for f in fields.values() if f.advanced):
            with columns[i % 3]:
                field_widget(f, key(f.name), DEFAULTS.get(key(f.name), f.default), _mark_custom)
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
