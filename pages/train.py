"""Train page: configure an MLP, submit it to the job queue, watch live curves, see the result."""

from __future__ import annotations

from typing import TYPE_CHECKING

import streamlit as st

from kmnist_core import charts, views
from kmnist_core.config import ACTIVATIONS, LR_SCHEDULES, MAX_LAYERS, OPTIMIZERS, PRESETS, TrainConfig
from kmnist_core.errors import ConfigError, RunNotFoundError
from kmnist_core.model import count_params
from pages import common

if TYPE_CHECKING:
    from kmnist_core.data import Dataset
    from kmnist_core.jobs import JobQueue

POLL_S = 1.0  # live curves refresh while the job is queued or running
CUSTOM = "custom"
DEFAULT_PRESET = "ref-relu-adam"
JOB = "train_job"  # this session's current job id
SAVED = "_train_saved"  # widget values kept while the user is on another page
UNIT_KEYS = tuple(f"train_units_{i}" for i in range(MAX_LAYERS))
# widget key -> TrainConfig field, for the fields with one widget each
FIELD_KEYS = {
    "train_activation": "activation", "train_optimizer": "optimizer", "train_weight_decay": "weight_decay",
    "train_learning_rate": "learning_rate", "train_epochs": "epochs", "train_batch_size": "batch_size",
    "train_val_fraction": "val_fraction", "train_seed": "seed", "train_dropout": "dropout",
    "train_augment": "augment", "train_lr_schedule": "lr_schedule", "train_early_stopping": "early_stopping",
    "train_label_smoothing": "label_smoothing", "train_batch_norm": "batch_norm",
}
WIDGET_KEYS = ("train_preset", "train_n_layers", "train_layers_as_text", "train_layers_text",
               *UNIT_KEYS, *FIELD_KEYS)
ss = st.session_state


def _widget_values(config: TrainConfig) -> dict:
    """Widget states that show this config."""
    values = {key: getattr(config, field) for key, field in FIELD_KEYS.items()}
    layers = config.hidden_layers
    fits = all(u in views.UNIT_OPTIONS for u in layers)
    values.update({"train_n_layers": len(layers), "train_layers_as_text": not fits,
                   "train_layers_text": views.layers_text(layers)})
    for i, key in enumerate(UNIT_KEYS):
        values[key] = layers[i] if fits and i < len(layers) else ss.get(key, 128)
    return values


def _apply_preset() -> None:
    name = ss["train_preset"]
    if name != CUSTOM:
        ss.update(_widget_values(PRESETS[name].config))


def _mark_custom() -> None:
    ss["train_preset"] = CUSTOM


def _toggle_text() -> None:
    """Carry the layers over between the sliders and the text field."""
    _mark_custom()
    if ss["train_layers_as_text"]:
        ss["train_layers_text"] = views.layers_text([ss[k] for k in UNIT_KEYS[: ss["train_n_layers"]]])
        return
    try:
        layers = TrainConfig(hidden_layers=ss["train_layers_text"]).hidden_layers
    except ConfigError:
        return
    if all(u in views.UNIT_OPTIONS for u in layers):
        ss["train_n_layers"] = len(layers)
        ss.update(dict(zip(UNIT_KEYS, layers, strict=False)))


def _restore_widgets() -> None:
    """First visit: the default preset; coming back from another page: what the user had set."""
    saved = ss.get(SAVED) or {"train_preset": DEFAULT_PRESET, **_widget_values(PRESETS[DEFAULT_PRESET].config)}
    # Streamlit drops a widget's state while its page is not shown, but keeps a value a callback
    # wrote into the same key (_toggle_text, _apply_preset do): coming back (the preset is gone), restore it all.
    returning = "train_preset" not in ss
    for key, value in saved.items():
        if returning or key not in ss:
            ss[key] = value


def _config_widgets() -> tuple[TrainConfig | None, str]:
    """Draw the configuration widgets; returns (config, "") or (None, the error message)."""
    st.selectbox("Preset", [*PRESETS, CUSTOM], key="train_preset", on_change=_apply_preset,
                 format_func=lambda n: n if n == CUSTOM else f"{n}: {PRESETS[n].config.describe()}",
                 help="The reference study's configurations; changing any field below makes it custom.")
    left, right = st.columns(2)
    with left:
        st.toggle("Type the layers as text", key="train_layers_as_text", on_change=_toggle_text)
        if ss["train_layers_as_text"]:
            st.text_input("Hidden layers (units, comma-separated)", key="train_layers_text", on_change=_mark_custom,
                          help="e.g. 256, 128; 1 to 6 layers")
        else:
            st.slider("Hidden layers", 1, MAX_LAYERS, key="train_n_layers", on_change=_mark_custom)
            for i in range(ss["train_n_layers"]):
                st.select_slider(f"Units in layer {i + 1}", views.UNIT_OPTIONS, key=UNIT_KEYS[i],
                                 on_change=_mark_custom)
    with right:
        st.selectbox("Activation", ACTIVATIONS, key="train_activation", on_change=_mark_custom)
        st.selectbox("Optimizer", OPTIMIZERS, key="train_optimizer", on_change=_mark_custom,
                     help="nesterov: SGD with momentum 0.9 and Nesterov updates")
        st.select_slider("Weight decay (L2)", views.WEIGHT_DECAY_OPTIONS, key="train_weight_decay",
                         format_func=lambda v: f"{v:g}", on_change=_mark_custom,
                         help="L2 penalty on every Dense kernel: loss += weight_decay × Σw²")
    with st.expander("Advanced"):
        a, b, c = st.columns(3)
        with a:
            st.number_input("Learning rate", value=None, key="train_learning_rate", format="%g", step=0.0001,
                            placeholder="optimizer default", on_change=_mark_custom,
                            help="Empty: the optimizer's Keras default (adam, rmsprop 0.001; sgd, nesterov 0.01)")
            st.number_input("Epochs", key="train_epochs", step=1, on_change=_mark_custom)
            st.number_input("Batch size", key="train_batch_size", step=16, on_change=_mark_custom)
            st.number_input("Seed", key="train_seed", step=1, on_change=_mark_custom)
        with b:
            st.slider("Validation fraction", 0.05, 0.5, step=0.05, key="train_val_fraction", on_change=_mark_custom)
            st.slider("Dropout", 0.0, 0.9, step=0.05, key="train_dropout", on_change=_mark_custom,
                      help="Dropout rate after each hidden layer; 0 is off")
            st.slider("Augmentation strength", 0.0, 1.0, step=0.1, key="train_augment", on_change=_mark_custom,
                      help="Random shifts, rotations and zoom at training time only; 0 is off")
            st.slider("Label smoothing", 0.0, 0.5, step=0.05, key="train_label_smoothing", on_change=_mark_custom)
        with c:
            st.selectbox("Learning-rate schedule", LR_SCHEDULES, key="train_lr_schedule", on_change=_mark_custom,
                         help="step: ×0.1 at 50 % and 75 % of training")
            st.number_input("Early stopping patience (epochs)", key="train_early_stopping", step=1,
                            on_change=_mark_custom, help="Stop when val accuracy has not improved this long; 0 is off")
            st.checkbox("Batch normalisation", key="train_batch_norm", on_change=_mark_custom)
    try:
        return _build_config(), ""
    except ConfigError as e:
        return None, str(e)


def _build_config() -> TrainConfig:
    """The TrainConfig the widgets describe (sliders' float noise rounded away).

    Raises:
        ConfigError: naming the field, the value and what is allowed.
    """
    if ss["train_layers_as_text"]:
        layers = ss["train_layers_text"]
    else:
        layers = tuple(ss[k] for k in UNIT_KEYS[: ss["train_n_layers"]])
    values = {field: ss[key] for key, field in FIELD_KEYS.items()}
    for field in ("val_fraction", "dropout", "augment", "label_smoothing"):
        values[field] = round(float(values[field]), 4)
    return TrainConfig(hidden_layers=layers, **values)


def _result(run_id: str, key: str = "train_result") -> None:
    """A finished run's numbers and links to look at it further, in a container with this key."""
    runs = common.store()
    info = runs.get(run_id)
    if not info.completed:
        reason = f": {info.reason}" if info.reason else ""
        st.warning(f"run {run_id} is {info.status}{reason}", icon=":material/warning:")
        return
    m = info.metrics
    with st.container(key=key):
        c1, c2, c3, c4 = st.columns(4)
        c1.metric("Best val accuracy", f"{m['best_val_accuracy']:.4f}", help=f"at epoch {m['best_epoch']}")
        c2.metric("Test accuracy", f"{m['test_accuracy']:.4f}")
        c3.metric("Train time", views.format_duration(m.get("wall_seconds")))
        c4.metric("Parameters", f"{m.get('params', 0):,}")
        ss[common.SELECTED_RUN] = run_id
        l1, l2 = st.columns(2)
        l1.page_link(common.CONFUSION_PAGE, label="Confusion matrix of this run", icon=":material/grid_on:",
                     query_params={"run": run_id})
        l2.page_link(common.DRAW_PAGE, label="Draw with this model", icon=":material/draw:",
                     query_params={"run": run_id})


def _train_again(config: TrainConfig, key: str) -> None:
    if st.button("Train again", key=key, help="Train this configuration anew, ignoring the stored run"):
        ss[JOB] = common.queue().submit(config, force=True)
        st.rerun()


def _job_panel(job_id: str, config: TrainConfig | None) -> None:
    """This session's job: progress, Stop, live curves; polls the queue while the job is active."""
    q = common.queue()
    try:
        active = q.progress(job_id).active
    except RunNotFoundError:
        ss.pop(JOB, None)  # not in this server's queue (e.g. after a restart): show the stored run instead
        with common.guard():
            _result(job_id)
        return

    @st.fragment(run_every=POLL_S if active else None)
    def panel() -> None:
        snap = q.progress(job_id)
        with st.container(key="train_job"):
            st.subheader(f"Run {job_id}")
            st.caption(snap.config.summary(skip=views.COLUMN_FIELDS))
            if snap.cached:  # done before it began: no progress bar (one lazy-loaded widget less to show)
                st.success("cached: this configuration already has a completed run; showing its stored result.",
                           icon=":material/cached:")
            else:
                st.progress(snap.fraction, text=views.progress_text(snap))
            if snap.active and st.button("Stop", key="train_stop", icon=":material/stop_circle:"):
                q.cancel(job_id)
                snap = q.progress(job_id)
            if not snap.active:  # the outcome first, then the curves
                with common.guard():
                    if snap.status == "failed":
                        st.error(f"run {job_id} failed: {snap.error}", icon=":material/error:")
                    else:
                        _result(job_id)
                if snap.cached and config is not None and config == snap.config:
                    _train_again(config, "train_again_job")
            st.plotly_chart(charts.training_curves(snap.history, snap.live), key="train_curves")
        if active and not snap.active:
            st.rerun()  # the job ended: one full rerun stops the polling and refreshes the sidebar

    panel()


def _cached_panel(run_id: str, config: TrainConfig) -> None:
    """The stored result of a config that has already been trained, shown before anyone clicks."""
    info = common.store().get(run_id)
    with st.container(key="train_cached"):
        st.success(f"cached: this configuration already has completed run {run_id}; its stored result is below.",
                   icon=":material/cached:")
        st.plotly_chart(charts.training_curves(info.history), key="train_cached_curves")
        _result(run_id, key="train_cached_result")
        _train_again(config, "train_again")


def main() -> None:
    st.title("Train")
    _restore_widgets()
    config, error = _config_widgets()
    ss[SAVED] = {k: ss[k] for k in WIDGET_KEYS if k in ss}
    data, q = common.dataset(), common.queue()
    if error:
        st.error(error, icon=":material/error:")
    else:
        st.caption(f"**{count_params(config):,} parameters** · {config.describe()}")
    _actions(config, data, q)


@st.fragment
def _actions(config: TrainConfig | None, data: Dataset | None, q: JobQueue | None) -> None:
    """The Train button and the run it shows. A fragment: a click answered from the store redraws
    only this part, not the whole page (measured: a full rerun of the page is most of that wait)."""
    with common.guard():
        clicked = st.button("Train", type="primary", key="train_submit", disabled=config is None or q is None,
                            icon=":material/play_arrow:")
        if q is None:
            return
        if clicked:
            ss[JOB] = q.submit(config)
            if q.progress(ss[JOB]).active:
                st.rerun()  # the whole page, so the sidebar's queue line starts polling with the job in the queue
        cached = q.store.find_completed(config.key(data.fingerprint)) if config is not None else None
        job_id = ss.get(JOB)
        try:
            same_job = job_id is not None and q.progress(job_id).config == config
        except RunNotFoundError:
            same_job = False
        if cached and cached != job_id and not same_job:
            _cached_panel(cached, config)
        if job_id:
            _job_panel(job_id, config)

common.require_frame()
with common.guard():
    main()
