"""Shared Streamlit helpers: the only st.cache_resource wrappers and what every page shows alike."""

from __future__ import annotations

import base64
import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import streamlit as st

from kmnist_core import insight, service, views
from kmnist_core.data import ATTRIBUTION, ENV_DATA_DIR, Dataset, load_kmnist
from kmnist_core.errors import KmnistError, RunNotFoundError
from kmnist_core.inference import Network
from kmnist_core.insight import TrainActivations
from kmnist_core.jobs import JobQueue
from kmnist_core.store import RunInfo, RunStore, check_run_id, default_root
from pages import legacy_mpa

if TYPE_CHECKING:
    from kmnist_core.sweeps import SweepRunner

TRAIN_PAGE = "pages/train.py"
COMPARE_PAGE = "pages/compare.py"
CONFUSION_PAGE = "pages/confusion.py"
DRAW_PAGE = "pages/draw.py"
INSPECT_PAGE = "pages/inspect.py"
DATA_PAGE = "pages/data.py"
SWEEP_PAGE = "pages/sweep.py"

# The tab icon: お drawn by the browser. A data URL, because Streamlit checks a non-ASCII page_icon
# against its emoji catalogue, whose first import costs ~0.4 s of the first page's time.
FAVICON = "data:image/svg+xml;base64," + base64.b64encode(
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">'
    '<text x="16" y="27" font-size="28" text-anchor="middle">お</text></svg>'.encode()).decode()

ACTIVE_POLL_S = 1.0  # the sidebar's queue line while something trains
IDLE_POLL_S = 10.0  # ... and while nothing does, to notice jobs other sessions submit

_DATA_ERROR = "_kmnist_data_error"  # set by the frame on each full run: the load error, or ""
_STORE_ERROR = "_kmnist_store_error"
_SEEN_ACTIVE = "_kmnist_seen_active"  # {job id: status} of the jobs the sidebar saw active last time
SELECTED_RUN = "selected_run"  # the run this session last looked at (Train result, Confusion, Draw)



# The app's pages in navigation order: (script, title, icon). Navigation and the tests read this one table.
PAGE_TABLE = (
    (TRAIN_PAGE, "Train", ":material/model_training:"),
    (COMPARE_PAGE, "Compare", ":material/table_chart:"),
    (SWEEP_PAGE, "Sweep", ":material/tune:"),
    (CONFUSION_PAGE, "Confusion matrix", ":material/grid_on:"),
    (INSPECT_PAGE, "Inspect", ":material/biotech:"),
    (DRAW_PAGE, "Draw", ":material/draw:"),
    (DATA_PAGE, "Data", ":material/dataset:"),
)


def navigation_pages() -> list:
    """The app's pages, in navigation order, for st.navigation; the first is the default."""
    return [st.Page(script, title=title, icon=icon, default=index == 0)
            for index, (script, title, icon) in enumerate(PAGE_TABLE)]


# --- the process-wide resources: created once, shared by every session ---


@st.cache_resource(show_spinner="Loading the KMNIST data…")
def _load_dataset(data_dir: str | None) -> Dataset:
    # A DataError propagates and Streamlit caches nothing: the next run tries again, so fixing
    # the folder and reloading the page recovers without a server restart.
    return load_kmnist(data_dir)


@st.cache_resource(show_spinner=False)
def _open_store(root: str) -> RunStore:
    return RunStore(root)


@st.cache_resource(show_spinner=False, on_release=lambda q: q.close())
def _open_queue(root: str, data_dir: str | None) -> JobQueue:
    return JobQueue(_open_store(root), _load_dataset(data_dir))


@st.cache_resource(show_spinner=False)
def _open_sweep_runner(root: str, data_dir: str | None) -> SweepRunner:
    from kmnist_core.sweeps import SweepRunner  # Optuna and SQLAlchemy: ~1 s of import, only for the Sweep page

    return SweepRunner(_open_queue(root, data_dir))


def sweep_runner() -> SweepRunner | None:
    """The process-wide sweep runner (one sweep at a time, seen by every session), or None without a queue."""
    return None if queue() is None else _open_sweep_runner(runs_dir(), data_dir())


def data_dir() -> str | None:
    """$KMNIST_DATA_DIR as an absolute path, or None (tensorflow-datasets)."""
    value = os.environ.get(ENV_DATA_DIR)
    return str(Path(value).expanduser().absolute()) if value else None


def runs_dir() -> str:
    """The run store's folder as an absolute path ($KMNIST_RUNS_DIR or ./runs)."""
    return str(default_root().expanduser().absolute())


def _resource(open_it: Callable[[], Any], error_key: str) -> Any:
    """open_it(), or None once it has failed in this run; its one-line error kept for the frame."""
    if st.session_state.get(error_key):
        return None
    try:
        return open_it()
    except KmnistError as e:
        st.session_state[error_key] = str(e)
        return None


def dataset() -> Dataset | None:
    """The process-wide dataset, or None when it cannot be loaded (the frame shows why)."""
    return _resource(lambda: _load_dataset(data_dir()), _DATA_ERROR)


def store() -> RunStore | None:
    """The process-wide run store, or None when its folder is unusable (the frame shows why)."""
    return _resource(lambda: _open_store(runs_dir()), _STORE_ERROR)


def queue() -> JobQueue | None:
    """The process-wide job queue, or None without data or store."""
    if dataset() is None or store() is None:
        return None
    return _open_queue(runs_dir(), data_dir())


@st.cache_resource(show_spinner=False, max_entries=8)
def _load_network(path: str, mtime: float) -> Network:
    return Network.load(path)


def run_network(run_id: str) -> Network:
    """The trained network of a completed run (numpy forward pass), loaded once per process.

    A run stored before weights were exported gets them now, from a short-lived worker process.

    Raises:
        RunNotFoundError: the run is gone or has no model.
        StoreError: the weights cannot be read or exported.
    """
    runs = store()
    try:
        path = runs.weights_path(run_id)
    except RunNotFoundError:
        with st.spinner(f"Exporting the weights of run {run_id}, stored before weights were exported…"):
            service.load_network(runs, run_id)
        path = runs.weights_path(run_id)
    return _load_network(str(path), path.stat().st_mtime)


@st.cache_resource(show_spinner="Computing the training images' activations…", max_entries=8)
def _train_activations(runs_root: str, run_id: str, fingerprint: str, _runs: RunStore, _data: Dataset,
                       _net: Network) -> TrainActivations:
    return insight.train_activations(_runs, run_id, _data, _net)


def train_activations(run_id: str) -> TrainActivations:
    """A completed run's training-split activations (for a drawing's nearest neighbours), once per process and run.

    Raises:
        RunNotFoundError, StoreError: as run_network.
        RunDataMismatchError: the run was trained on other data than the loaded dataset.
    """
    data, runs = dataset(), store()
    # Checked on every call (a store read), so that a run deleted since is reported rather than served from memory.
    insight.checked_run(runs, run_id, data, "training activations", "training")
    return _train_activations(runs_dir(), run_id, data.fingerprint, runs, data, run_network(run_id))


@st.cache_resource(show_spinner="Exploring the dataset…", max_entries=4)
def _explore(fingerprint: str, with_knn: bool, _data: Dataset, _knn: Any) -> insight.DataExplorer:
    if _knn is None:
        return insight.explore(_data)
    return insight.explore(_data, _knn.test_pred, _knn.test_proba)


def explorer() -> insight.DataExplorer | None:
    """The Data page's numbers of the loaded dataset (4-NN mistakes included once cached), once per dataset."""
    data = dataset()
    if data is None:
        return None
    knn = (baselines() or {}).get("knn4")
    return _explore(data.fingerprint, knn is not None, data, knn)


def baselines() -> dict | None:
    """The k-NN baselines of the loaded data if they are cached in the store, else None (cheap)."""
    from kmnist_core.baselines import load_baselines

    data, runs = dataset(), store()
    return None if data is None or runs is None else load_baselines(runs, data)


def compute_baselines_button(key: str) -> None:
    """A button that computes and caches the k-NN baselines once per dataset (about 15 s)."""
    from kmnist_core.baselines import load_or_compute_baselines

    data, runs = dataset(), store()
    if data is None or runs is None:
        return
    if st.button("Compute the k-NN baselines", key=key, icon=":material/calculate:",
                 help="4-NN on raw pixels and PCA(50) + 4-NN, once per dataset; cached in the run store"):
        with st.spinner("Fitting 4-NN and PCA(50) + 4-NN…"):
            load_or_compute_baselines(runs, data)
        st.rerun()


# --- the frame: what every page shows ---


def require_frame() -> None:
    """At the top of every page: make sure the frame ran first (see pages/legacy_mpa.py)."""
    legacy_mpa.ensure_frame(navigation_pages, frame)


def frame() -> None:
    """Load the shared resources for this run; show a data or store error on top of any page."""
    legacy_mpa.frame_drawn()
    st.sidebar.title("KMNIST Lab")
    st.session_state[_DATA_ERROR] = ""
    st.session_state[_STORE_ERROR] = ""
    data, runs = dataset(), store()
    if data is None:
        st.error(st.session_state[_DATA_ERROR], icon=":material/error:")
    if runs is None:
        st.error(st.session_state[_STORE_ERROR], icon=":material/error:")
    with st.sidebar:
        if data is not None:
            st.caption(f"**Data:** {data.describe()}")
        else:
            st.caption("**Data:** not loaded; fix the folder and reload the page")
        if runs is not None:
            st.caption(f"**Runs:** {runs.root}")
        if data is not None and runs is not None:
            queue_status()
        st.caption(ATTRIBUTION)


def queue_status() -> None:
    """The job queue in one sidebar line, refreshed while jobs are active; reruns the page when one ends."""
    q = queue()
    interval = ACTIVE_POLL_S if q.active() else IDLE_POLL_S

    @st.fragment(run_every=interval)
    def _status() -> None:
        active = q.active()
        with st.container(key="queue_status"):
            st.markdown(f"**Jobs:** {views.queue_summary(active)}")
            if problem := q.engine_problem():
                st.caption(problem)
        states = {s.job_id: s.status for s in active}
        seen = st.session_state.get(_SEEN_ACTIVE)
        st.session_state[_SEEN_ACTIVE] = states
        if seen is not None and (set(seen) - set(states) or (states and interval == IDLE_POLL_S)
                                 or any(seen.get(i, status) != status for i, status in states.items())):
            st.rerun()  # a job ended, started elsewhere, or went from queued to running: refresh the page

    _status()


# --- small shared pieces ---


@contextlib.contextmanager
def guard() -> Iterator[None]:
    """Show the project's errors as one line instead of a traceback."""
    try:
        yield
    except RunNotFoundError as e:
        st.warning(str(e), icon=":material/warning:")
    except KmnistError as e:
        st.error(str(e), icon=":material/error:")


def no_completed_run() -> None:
    """Say there is nothing to show yet and link to Train."""
    st.info("No completed run yet: train a model first.", icon=":material/info:")
    st.page_link(TRAIN_PAGE, label="Go to Train", icon=":material/model_training:")


RUN = "run"  # the run picker's key on every page, and so its URL parameter: ?run=<id> opens that run


def pick_run(runs: list[RunInfo], label: str = "Run") -> RunInfo | None:
    """The run picker: completed runs, bound to the URL's ?run=; default: this session's last run, else the best.

    A run asked for (by the link, or earlier in the session) that no longer exists, did not complete
    or is not a run id at all gets one line saying so; the picker then shows the default.
    Shows the no-run message when there is nothing completed.

    Returns:
        The chosen RunInfo, or None.
    """
    by_id = {r.run_id: r for r in runs}
    ids = [r.run_id for r in service.completed_runs(runs)]
    for asked in dict.fromkeys(x for x in (st.query_params.get(RUN), st.session_state.get(RUN)) if x):
        if asked in ids:
            continue
        try:
            st.warning(service.unavailable_reason(runs, check_run_id(asked)), icon=":material/warning:")
        except RunNotFoundError as e:
            st.error(str(e), icon=":material/error:")
    if st.session_state.get(RUN) not in ids:
        st.session_state.pop(RUN, None)  # a run deleted meanwhile: the picker falls back to its default
    if not ids:
        no_completed_run()
        return None
    default = service.default_run(runs, [st.session_state.get(SELECTED_RUN)])
    run_id = st.selectbox(label, ids, index=ids.index(default.run_id), key=RUN, bind="query-params",
                          format_func=lambda r: views.run_label(by_id[r]))
    st.session_state[SELECTED_RUN] = run_id
    return by_id[run_id]


def run_result(run_id: str, key: str = "train_result") -> None:
    """A finished run's numbers and links to look at it further, in a container with this key."""
    info = store().get(run_id)
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
        st.session_state[SELECTED_RUN] = run_id
        l1, l2 = st.columns(2)
        l1.page_link(CONFUSION_PAGE, label="Confusion matrix of this run", icon=":material/grid_on:",
                     query_params={RUN: run_id})
        l2.page_link(DRAW_PAGE, label="Draw with this model", icon=":material/draw:", query_params={RUN: run_id})
