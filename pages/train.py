"""Train page: configure an MLP, submit it to the job queue, watch live curves, see the result."""

from __future__ import annotations

from typing import TYPE_CHECKING

import streamlit as st

from kmnist_core import charts, service, views
from kmnist_core.config import TrainConfig, count_params, train_command
from kmnist_core.errors import RunNotFoundError
from kmnist_core.records import Status
from pages import common, config_form, live_mode

if TYPE_CHECKING:
    from kmnist_core.data import Dataset
    from kmnist_core.jobs import JobQueue

POLL_S = 1.0  # live curves refresh while the job is queued or running
JOB = live_mode.JOB  # this session's current job id
ss = st.session_state


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
            common.run_result(job_id)
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
                    if snap.status == Status.FAILED:
                        st.error(f"run {job_id} failed: {snap.error}", icon=":material/error:")
                    else:
                        common.run_result(job_id)
                if snap.cached and config is not None and config == snap.config:
                    _train_again(config, "train_again_job")
            st.plotly_chart(charts.training_curves(snap.history, snap.live, previous=live_mode.previous()),
                            key="train_curves")
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
        common.run_result(run_id, key="train_cached_result")
        _train_again(config, "train_again")


def main() -> None:
    st.title("Train")
    config, error = config_form.draw()
    data, q = common.dataset(), common.queue()
    live = live_mode.toggle()
    estimate = None
    if error:
        st.error(error, icon=":material/error:")
    else:
        estimate = service.estimate(config, data, q.store.list_runs(limit=service.ESTIMATE_RUNS)) if q else None
        st.caption(f"**{count_params(config):,} parameters** · {config.describe()}"
                   + (f" · {views.estimate_text(estimate)}" if estimate else ""))
        with st.expander("The same from the command line"):
            st.code(train_command(config), language="bash")  # with a copy button; the page's URL is its link
    if live and q is not None:
        live_mode.follow(q, config, estimate)
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
        cached = service.cached_run(q.store, config, data) if config is not None else None
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
