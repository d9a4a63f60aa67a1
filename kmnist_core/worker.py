"""The worker side of Dask: a plugin that warms each worker (TensorFlow, the data) and the training task.

Every training runs as `train_task` on a Dask worker (kmnist_core.engine submits it). A worker is
long-lived: the `WarmUp` plugin imports TensorFlow and loads the data once, in a thread of its
own, so that the worker answers the scheduler while it warms and the first job does not pay for it.

Messages, all small plain dicts, go to the server as Dask worker events on topic EVENTS:
    {"type": "started", "run_id": str, "worker": address, "pid": int}
    {"type": "progress", "run_id": str, **records.Progress}  # per epoch, and <= ~10 a second within one
The server asks a run to stop with `request_stop` (Client.run on that worker): cooperative, within a
second. A run whose Dask task was released (its client went away, or cancelled it) stops the same way.

The task's result: {"status", "error", "files"}. "files" is None when the worker wrote into the
server's own runs folder (the embedded cluster, or a shared KMNIST_RUNS_DIR); otherwise it holds every
file the run wrote, {relative path: bytes}, for the server to write into its store ("runs come home").
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

from distributed import WorkerPlugin

from .errors import KmnistError, StoreError

log = logging.getLogger(__name__)

EVENTS = "kmnist-progress"  # the Dask event topic of every job's messages
ENV_LOG_DIR = "KMNIST_LOG_DIR"
ENV_DATA_DIR = "KMNIST_DATA_DIR"
LOG_FILE = "worker.log"
WATCH_S = 0.2  # how often a running task looks whether Dask released it
SERVER_FILES = ("config.json", "status.json")  # the server writes these itself; never sent home


def log_path() -> Path:
    """The workers' log file: $KMNIST_LOG_DIR/worker.log, else <temp dir>/kmnist-lab/worker.log."""
    folder = Path(os.environ.get(ENV_LOG_DIR) or Path(tempfile.gettempdir()) / "kmnist-lab")
    return folder / LOG_FILE


class StopRequest(threading.Event):
    """Set when the server asks a run to stop; `status` is what the stopped run then reads (cancelled, pruned)."""

    status = "cancelled"


_stops: dict[str, StopRequest] = {}  # run id -> its stop request, in this worker process
_stops_lock = threading.Lock()


def _stop_for(run_id: str) -> StopRequest:
    with _stops_lock:
        return _stops.setdefault(run_id, StopRequest())


def request_stop(run_id: str, status: str = "cancelled") -> bool:
    """Ask a run on this worker to stop (called through Client.run); it may not have started yet."""
    stop = _stop_for(run_id)
    stop.status = status
    stop.set()
    return True


class WarmUp(WorkerPlugin):
    """Dask worker plugin: import TensorFlow and load the data once per worker, in the background.

    Args:
        data_folder: the folder the server loaded; a worker on another machine without it uses
            its own $KMNIST_DATA_DIR. Which data it has is checked by fingerprint (`describe`).
        redirect: send the worker's stdout/stderr to the worker log (the embedded cluster, whose
            workers would otherwise print TensorFlow's C++ log into the server's terminal).
    """

    name = "kmnist-warmup"

    def __init__(self, data_folder: str, redirect: bool = False):
        self.data_folder, self.redirect = data_folder, redirect

    def setup(self, worker: Any) -> None:
        state = _WorkerState.get()
        if state.thread is None:
            state.thread = threading.Thread(target=state.warm, args=(self.data_folder, worker.state.nthreads,
                                                                     self.redirect),
                                            name="kmnist-warmup", daemon=True)
            state.thread.start()


class _WorkerState:
    """This worker process' TensorFlow and data, loaded once by WarmUp."""

    _instance: _WorkerState | None = None

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self.ready = threading.Event()
        self.data: Any = None
        self.error = ""
        self.import_seconds: float | None = None
        self.threads = 1

    @classmethod
    def get(cls) -> _WorkerState:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def warm(self, data_folder: str, threads: int, redirect: bool) -> None:
        if redirect:
            _redirect_output()
        _limit_threads(threads)
        self.threads = threads
        started = time.perf_counter()
        try:
            import tensorflow as tf

            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
            import keras  # noqa: F401 - imported once here, before the first job, not during it

            from .data import load_folder

            folder = Path(data_folder)
            if not folder.is_dir() and os.environ.get(ENV_DATA_DIR):
                folder = Path(os.environ[ENV_DATA_DIR])  # another machine: its own copy of the data
            self.data = load_folder(folder)
        except KmnistError as e:
            self.error = str(e)
        except Exception as e:  # noqa: BLE001 - a worker that cannot warm says why, in one line
            log.exception("the worker could not load TensorFlow or the data")
            self.error = f"{type(e).__name__}: {e}"
        self.import_seconds = time.perf_counter() - started
        self.ready.set()


def describe() -> dict[str, Any]:
    """What the server's Workers panel shows of this worker (called through Client.run)."""
    state = _WorkerState.get()
    if not state.ready.is_set():
        return {"state": "starting", "pid": os.getpid(), "fingerprint": "", "error": ""}
    return {"state": "failed" if state.error else "ready", "pid": os.getpid(), "error": state.error,
            "fingerprint": state.data.fingerprint if state.data is not None else "",
            "import_seconds": state.import_seconds, "threads": state.threads}


def train_task(run_id: str, config: dict[str, Any], fingerprint: str, runs_root: str,
               meta: bytes | None) -> dict[str, Any]:
    """The Dask task of one training run; returns {"status", "error", "files"} (see the module docstring).

    Args:
        run_id: the run (its folder in the server's store).
        config: TrainConfig.to_dict().
        fingerprint: the server's Dataset.fingerprint; a worker with other data refuses the run.
        runs_root: the server's runs folder, written directly when meta is None.
        meta: the run's config.json, when the run trains in a scratch folder and its files go home.
    """
    from distributed import get_worker

    worker = get_worker()
    state = _WorkerState.get()
    state.ready.wait()
    stop = _stop_for(run_id)

    def emit(message: dict[str, Any]) -> None:
        worker.log_event(EVENTS, {"run_id": run_id, **message})

    emit({"type": "started", "worker": worker.address, "pid": os.getpid()})
    if state.error or state.data.fingerprint != fingerprint:
        with _stops_lock:
            _stops.pop(run_id, None)
        reason = state.error or "it holds other KMNIST data than the server"
        return {"status": "failed", "error": f"worker {worker.address} cannot train: {reason}", "files": None}
    watch = threading.Thread(target=_watch_release, args=(worker, _task_key(), stop), daemon=True)
    watch.start()
    scratch = Path(tempfile.mkdtemp(prefix="kmnist-run-")) if meta is not None else None
    try:
        from .store import RunStore

        store = RunStore(runs_root if scratch is None else scratch)
        if meta is not None:
            store.folder(run_id).mkdir(parents=True)
            (store.folder(run_id) / "config.json").write_bytes(meta)
        status, error = _train_one(emit, store, state.data, run_id, config, stop)
        files = _pack(store.folder(run_id)) if scratch is not None else None
        return {"status": str(status), "error": error, "files": files}
    finally:
        stop.set()  # ends the watcher
        with _stops_lock:
            _stops.pop(run_id, None)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _task_key() -> Any:
    from distributed.worker import thread_state

    return getattr(thread_state, "key", None)


def _watch_release(worker: Any, key: Any, stop: StopRequest) -> None:
    """Stop the run once Dask no longer wants its task: its client left, or cancelled it."""
    while not stop.wait(WATCH_S):
        task = worker.state.tasks.get(key)
        if task is None or task.state == "cancelled":
            log.info("task %s was released: stopping it", key)
            stop.status = "cancelled"
            stop.set()


def _pack(folder: Path) -> dict[str, bytes]:
    """Every file of a run folder but the server's own, {relative posix path: bytes}."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.relative_to(folder).as_posix() not in SERVER_FILES}


def _train_one(emit: Any, store: Any, data: Any, run_id: str, config_dict: dict[str, Any],
               stop: StopRequest) -> tuple[str, str]:
    """Train one run and write its files; returns (status, one-line error or "")."""
    from .config import TrainConfig
    from .model import export_weights
    from .records import Status
    from .train import train

    history: list[dict[str, Any]] = []

    def on_progress(progress: dict[str, Any]) -> None:
        if progress["record"] is not None:
            history.append(progress["record"])
        emit({"type": "progress", **progress})

    try:
        if stop.is_set():
            return stop.status, f"{stop.status} before it started"
        config = TrainConfig.from_dict(config_dict)
        result = train(config, data, on_progress=on_progress, stop=stop, log_dir=store.folder(run_id))
        if result.status == Status.CANCELLED:
            result.status = Status(stop.status)  # pruned, when a sweep's pruner stopped it
        weights = export_weights(result.model) if result.status == Status.COMPLETED else None
        store.save_result(run_id, result, weights)
        return result.status, ""
    except Exception as e:  # noqa: BLE001 - the worker must survive any one failed run
        log.exception("run %s failed", run_id)  # the traceback goes to the log file only
        error = str(e) if isinstance(e, KmnistError) else f"{type(e).__name__}: {e}"
        if not isinstance(e, StoreError):  # a StoreError from save_result has recorded the failure itself
            try:
                store.save_history(run_id, history)
                store.set_status(run_id, Status.FAILED, error)
            except OSError:
                log.exception("could not record the failure of %s", run_id)
        return Status.FAILED, f"{error} (details in {log_path()})"


def export_weights_in_worker(store: Any, run_id: str, timeout: float = 180.0) -> None:
    """Write weights.npz for a run stored before weights were exported, in a short-lived spawn'd process.

    Loading model.keras needs Keras, which the server never imports; so, as with training, another
    process does it. It takes a few seconds (the TensorFlow import), once per such run.

    Raises:
        StoreError: the model cannot be loaded or the weights cannot be written (one line).
    """
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        future = pool.submit(_export, str(store.root.absolute()), run_id)
        try:
            error = future.result(timeout)
        except FutureTimeout:
            for process in list(getattr(pool, "_processes", {}).values()):
                process.kill()
            raise StoreError(f"run {run_id}: exporting its weights took over {timeout:.0f} s; try again") from None
        except Exception as e:  # noqa: BLE001 - the process died (BrokenProcessPool): one line
            raise StoreError(f"run {run_id}: the process exporting its weights ended early ({type(e).__name__})") from e
    if error:
        raise StoreError(error)


def _export(root: str, run_id: str) -> str:
    """Export process: model.keras -> weights.npz; returns "" or the one-line error."""
    _redirect_output()
    _limit_threads(1)
    try:
        from .model import export_weights, load_model
        from .store import RunStore

        store = RunStore(root)
        store.save_weights(run_id, export_weights(load_model(store.model_path(run_id))))
        return ""
    except KmnistError as e:
        return str(e)
    except Exception as e:  # noqa: BLE001 - a model Keras cannot load is a damaged run, said in one line
        log.exception("exporting the weights of %s failed", run_id)
        return f"run {run_id}: its model.keras cannot be loaded ({type(e).__name__}); details in {log_path()}"


def _redirect_output() -> None:
    """Send this process' stdout and stderr, at the file-descriptor level, to the log file."""
    path = log_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError:
        fd = os.open(os.devnull, os.O_WRONLY)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115 - lives as long as the process
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, force=True,
                        format=f"%(asctime)s worker {os.getpid()} %(levelname)s %(name)s: %(message)s")


def _limit_threads(threads: int) -> None:
    """Set TensorFlow's environment and cap every thread pool (its own, and BLAS's) before they start."""
    from .model import tensorflow_environment

    tensorflow_environment()
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
                 "TF_NUM_INTEROP_THREADS"):
        os.environ[name] = str(threads)
