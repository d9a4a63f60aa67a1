"""Live mode of the Train page: once the widgets pause, this session's live job is replaced (not a page)."""

from __future__ import annotations

import time

import streamlit as st

from kmnist_core import service, views
from kmnist_core.config import TrainConfig
from kmnist_core.errors import RunNotFoundError
from kmnist_core.jobs import JobQueue

TOGGLE = "train_live"
JOB = "train_job"  # the job the Train page shows (shared with pages/train.py)
LIVE_JOB = "_train_live_job"  # this session's live job: the only job live mode ever replaces
PENDING = "_train_live_pending"  # (config, monotonic time of its last change)
PREVIOUS = "_train_previous"  # [(label, history)] of the configurations before, newest last
DEBOUNCE_S = 0.5  # no change for this long: dragging a slider or typing starts one job, not twenty
CHECK_S = 0.2
LIMIT_S = 30.0  # a configuration estimated to train longer is not started automatically
KEEP_PREVIOUS = 3
ss = st.session_state


def toggle() -> bool:
    """The Live switch; off by default. Turning it off stops nothing: it only stops new replacements."""
    return st.toggle("Live", key=TOGGLE, help=f"Retrain as the widgets change: {DEBOUNCE_S:g} s after the last "
                     f"change this session's live run is replaced. Runs estimated over {LIMIT_S:.0f} s wait for Train.")


def follow(q: JobQueue, config: TrainConfig | None, estimate: service.Estimate | None) -> None:
    """Note the widgets' configuration and, once it has stood still for DEBOUNCE_S, make it the live job."""
    if config is None:
        return  # an invalid value: its message is shown, nothing is queued, the last valid job goes on
    pending = ss.get(PENDING)
    if pending is None or pending[0] != config:
        ss[PENDING] = (config, time.monotonic())
    submitted = _job_config(q, ss.get(LIVE_JOB))
    if submitted == config:
        return
    if estimate is not None and estimate.total_s > LIMIT_S:
        st.info(f"Live mode does not start this one by itself: it would train for about "
                f"{views.format_duration(estimate.total_s)}. Press Train to start it.", icon=":material/timer:")
        return

    @st.fragment(run_every=CHECK_S)
    def debounce() -> None:
        config_now, changed = ss[PENDING]
        if time.monotonic() - changed < DEBOUNCE_S:
            return
        _keep_previous(q, ss.get(JOB))
        old = ss.get(LIVE_JOB)
        ss[JOB] = ss[LIVE_JOB] = q.replace(old, config_now)
        if q.progress(ss[JOB]).active:
            q.store.relabel(ss[JOB], tags=[service.LIVE_TAG])
        st.rerun()  # the whole page: the job panel and the sidebar follow the new job

    debounce()


def previous() -> list[tuple[str, list]]:
    """The curves of the configurations before the current one, oldest first, to draw faded."""
    return list(ss.get(PREVIOUS, []))


def _keep_previous(q: JobQueue, job_id: str | None) -> None:
    try:
        snap = q.progress(job_id) if job_id else None
    except RunNotFoundError:
        return
    if snap is None or not snap.history:
        return
    kept = [p for p in ss.get(PREVIOUS, []) if p[0] != snap.config.summary()]
    ss[PREVIOUS] = [*kept, (snap.config.summary(), list(snap.history))][-KEEP_PREVIOUS:]


def _job_config(q: JobQueue, job_id: str | None) -> TrainConfig | None:
    try:
        return q.progress(job_id).config if job_id else None
    except RunNotFoundError:
        return None
