"""Sweep page: a search space and a budget, an Optuna sweep on the job queue, its trials live; open one in Train."""

from __future__ import annotations

import streamlit as st

from kmnist_core import charts, sweeps, views
from kmnist_core.config import ACTIVATIONS, FIELDS, OPTIMIZERS, UNIT_OPTIONS
from kmnist_core.errors import KmnistError
from pages import common, config_form

POLL_S = 1.0  # the trials table and charts refresh while a sweep runs
WEIGHT_DECAYS = FIELDS["weight_decay"].options[1:]  # a log range needs low > 0
LEARNING_RATES = (1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 3e-2, 5e-2, 1e-1)
ss = st.session_state


def _space() -> dict | None:
    """The search space from the widgets, or from a pasted or uploaded file (which wins); None if invalid."""
    with st.expander("Search space", expanded=True):
        left, right = st.columns(2)
        layers = left.slider("Hidden layers", 1, 6, (1, 3), key="sweep_layers")
        units = left.multiselect("Units per layer", UNIT_OPTIONS, default=[32, 64, 128, 256, 512], key="sweep_units")
        activations = left.multiselect("Activations", ACTIVATIONS, default=list(ACTIVATIONS[:5]), key="sweep_act")
        optimizers = right.multiselect("Optimizers", OPTIMIZERS, default=list(OPTIMIZERS), key="sweep_opt")
        wd = right.select_slider("Weight decay (log range)", WEIGHT_DECAYS, value=(1e-5, 1e-2), key="sweep_wd",
                                 format_func=lambda v: f"{v:g}")
        lr = right.select_slider("Learning rate (log range)", LEARNING_RATES, value=(1e-4, 3e-2), key="sweep_lr",
                                 format_func=lambda v: f"{v:g}")
        epochs = right.number_input("Epochs per trial", 1, 200, 10, key="sweep_epochs")
        text = st.text_area("…or paste a space file (TOML or JSON); it replaces the widgets above", key="sweep_text",
                            placeholder='epochs = 5\noptimizer = ["adam", "rmsprop"]\n'
                                        'learning_rate = { low = 1e-4, high = 1e-2, log = true }')
        upload = st.file_uploader("…or upload one", type=["toml", "json"], key="sweep_upload")
    try:
        if upload is not None:
            return sweeps.parse_space(upload.getvalue().decode("utf-8", "replace"), f"space file {upload.name}",
                                      toml=upload.name.endswith(".toml"))
        if text.strip():
            return sweeps.parse_space(text, "the pasted space")
        return sweeps.validate_space(sweeps.space_of(layers, units, activations, optimizers, wd, lr, epochs))
    except KmnistError as e:
        st.error(str(e), icon=":material/error:")
        return None


def _controls(runner: sweeps.SweepRunner, space: dict | None) -> None:
    a, b, c, d = st.columns(4)
    kind = a.radio("Budget", ["trials", "minutes"], horizontal=True, key="sweep_budget_kind")
    amount = b.number_input(f"How many {kind}", 1, 1000, 16 if kind == "trials" else 10, key="sweep_budget")
    sampler = c.selectbox("Sampler", sweeps.SAMPLERS, key="sweep_sampler")
    pruner = d.selectbox("Pruner", sweeps.PRUNERS, index=list(sweeps.PRUNERS).index("median"), key="sweep_pruner")
    name = st.text_input("Study name", key="sweep_name", placeholder="new: sweep-<date>-<time>; an existing name "
                         "resumes that study")
    start, stop = st.columns(2)
    if start.button("Start sweep", type="primary", key="sweep_start", icon=":material/play_arrow:",
                    disabled=space is None or runner.running):
        budget = sweeps.Budget.make(trials=amount if kind == "trials" else None,
                                    minutes=amount if kind == "minutes" else None)
        runner.start(sweeps.SweepSettings(space, sampler=sampler, pruner=pruner), budget, name.strip() or None)
        ss["sweep_shown"] = runner.sweep.name
    if stop.button("Stop", key="sweep_stop", icon=":material/stop_circle:", disabled=not runner.running):
        runner.stop()


def _shown(runner: sweeps.SweepRunner) -> sweeps.Sweep | None:
    """The sweep to show: the one running here, else the one picked from the local storage's studies."""
    storage = sweeps.open_storage(None, common.store().root)
    names = [s["study"] for s in reversed(sweeps.list_sweeps(storage))]
    if not names:
        st.info("No sweep yet: define a space and start one.", icon=":material/info:")
        return None
    if ss.get("sweep_shown") not in names:
        ss["sweep_shown"] = names[0]
    picked = st.selectbox("Sweep", names, key="sweep_shown")
    if runner.sweep is not None and runner.sweep.name == picked:
        return runner.sweep
    return sweeps.join_sweep(storage, picked)


def _trials(sweep: sweeps.Sweep, running: bool, outcome: str) -> None:
    rows = sweeps.trials_table(sweep)
    counts = sweeps.trial_counts(sweep)
    st.caption(f"**{sweep.name}** · " + " · ".join(f"{n} {word}" for word, n in counts.items() if n)
               + (" · running" if running else f" · {outcome}" if outcome else ""))
    with st.container(key="sweep_trials"):
        st.dataframe(views.sweep_table(rows), hide_index=True, key="sweep_table")
    best = sweeps.best_so_far(sweep)
    if best:
        left, right = st.columns(2)
        left.plotly_chart(charts.best_so_far(best), key="sweep_best")
        importances = sweeps.importances(sweep) if counts["completed"] >= 2 else None
        if importances is not None and importances.values:
            right.plotly_chart(charts.importances(importances.values, importances.evaluator), key="sweep_importances")
        st.plotly_chart(charts.sweep_parcoords(rows), key="sweep_parcoords")
    done = [r["trial"] for r in rows if r["status"] in ("completed", "pruned")]
    if done:
        left, right = st.columns([3, 1])
        trial = left.selectbox("Trial", done, key="sweep_open_trial", format_func=lambda n: f"trial {n}")
        if right.button("Open in Train", key="sweep_open", icon=":material/model_training:"):
            config = sweeps.trial_config(sweep, next(t for t in sweep.study.trials if t.number == trial))
            config_form.load(config)
            st.switch_page(common.TRAIN_PAGE)


def main() -> None:
    st.title("Sweep")
    q = common.queue()
    if q is None:
        return
    runner = common.sweep_runner()
    space = _space()
    if space is not None:
        st.caption("Space: " + "; ".join(sweeps.describe_space(space)))
    _controls(runner, space)

    @st.fragment(run_every=POLL_S if runner.running else None)
    def live() -> None:
        with common.guard():
            sweep = _shown(runner)
            if sweep is not None:
                _trials(sweep, runner.running and runner.sweep.name == sweep.name, runner.outcome)

    live()


common.require_frame()
with common.guard():
    main()
