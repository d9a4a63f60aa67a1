"""The training worker process: spawn'd, imports TensorFlow once, trains job after job, reports by messages.

The server (kmnist_core.jobs) and a worker talk over one multiprocessing Pipe, in small plain
dicts; big results go to the run store on disk and the messages carry the run id.

Server -> worker:
    {"type": "train", "run_id": str, "config": TrainConfig.to_dict()}
    {"type": "stop", "run_id": str, "status": "cancelled" | "pruned"}  # cooperative: ends within a second
    {"type": "shutdown"}
Worker -> server:
    {"type": "ready", "pid": int, "import_seconds": float, "threads": int}
    {"type": "fatal", "error": str}  # cannot start (data unreadable, other data than the server's)
    {"type": "progress", "run_id": str, **records.Progress}  # per epoch, and <= ~10 a second within one
    {"type": "done", "run_id": str, "status": str, "error": str}  # after the run's files are written

A worker exits when its pipe ends: the server closed it, or died, even by SIGKILL. Its stdout
and stderr (TensorFlow's C++ log, Python warnings, tracebacks) go to a log file, never to the
terminal of the CLI or server that started it.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from .errors import KmnistError, StoreError

log = logging.getLogger(__name__)

ENV_LOG_DIR = "KMNIST_LOG_DIR"
LOG_FILE = "worker.log"


def log_path() -> Path:
    """The workers' log file: $KMNIST_LOG_DIR/worker.log, else <temp dir>/kmnist-lab/worker.log."""
    folder = Path(os.environ.get(ENV_LOG_DIR) or Path(tempfile.gettempdir()) / "kmnist-lab")
    return folder / LOG_FILE


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs to start: where the data and the runs are, and how many threads it may use."""

    data_folder: str  # the folder the server loaded (kmnist_core.data.Dataset.folder)
    fingerprint: str  # the server's Dataset.fingerprint: the worker must train on the very same data
    runs_root: str
    threads: int  # TensorFlow intra-op threads; workers x threads <= the machine's cores


def main(conn: Connection, spec: WorkerSpec) -> None:
    """The worker process' entry point (multiprocessing target). Returns only at shutdown."""
    _redirect_output()
    _limit_threads(spec.threads)
    inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
    stops: dict[str, StopRequest] = {}
    lock = threading.Lock()
    threading.Thread(target=_listen, args=(conn, inbox, stops, lock), name="kmnist-worker-listen",
                     daemon=True).start()
    started = time.perf_counter()
    try:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(spec.threads)
        tf.config.threading.set_inter_op_parallelism_threads(spec.threads)
        import keras  # noqa: F401 - imported once here, before the first job, not during it

        from .data import load_folder

        data = load_folder(Path(spec.data_folder))
        if data.fingerprint != spec.fingerprint:
            raise KmnistError(f"the data in {spec.data_folder} changed since the dashboard loaded it; "
                              "reload the page (or restart the command) to use the new files")
    except KmnistError as e:
        conn.send({"type": "fatal", "error": str(e)})
        return
    conn.send({"type": "ready", "pid": os.getpid(), "import_seconds": time.perf_counter() - started,
               "threads": spec.threads})
    from .store import RunStore

    store = RunStore(spec.runs_root)
    while (message := inbox.get()) is not None:
        run_id = message["run_id"]
        with lock:
            stop = stops.setdefault(run_id, StopRequest())
        status, error = _train_one(conn, store, data, run_id, message["config"], stop)
        conn.send({"type": "done", "run_id": run_id, "status": status, "error": error})
        with lock:
            stops.pop(run_id, None)


class StopRequest(threading.Event):
    """Set when the server asks a run to stop; `status` is what the stopped run then reads (cancelled, pruned)."""

    status = "cancelled"


def _listen(conn: Connection, inbox: queue.Queue, stops: dict[str, StopRequest], lock: threading.Lock) -> None:
    """Read the server's messages; when the pipe ends, the server is gone: exit at once, mid-training too."""
    try:
        while True:
            message = conn.recv()
            if message["type"] == "train":
                inbox.put(message)
            elif message["type"] == "stop":
                with lock:
                    stop = stops.setdefault(message["run_id"], StopRequest())
                    stop.status = message.get("status", stop.status)
                    stop.set()
            elif message["type"] == "shutdown":
                inbox.put(None)
    except (EOFError, OSError):
        pass
    logging.shutdown()
    os._exit(0)  # no orphan keeps the CPU busy after its server died


def _train_one(conn: Connection, store: Any, data: Any, run_id: str, config_dict: dict[str, Any],
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
        conn.send({"type": "progress", "run_id": run_id, **progress})

    try:
        if stop.is_set():
            store.set_status(run_id, stop.status, f"{stop.status} before it started")
            return stop.status, ""
        store.set_status(run_id, Status.RUNNING)  # owned by this process from now on
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

    Loading model.keras needs Keras, which the server never imports; so, as with training, a
    worker process does it. It takes a few seconds (the TensorFlow import), once per such run.

    Args:
        store: the RunStore holding the run.
        run_id: a completed run with a model.keras.

    Raises:
        StoreError: the model cannot be loaded or the weights cannot be written (one line).
    """
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_export_main, args=(str(store.root.absolute()), run_id, send), daemon=True,
                              name="kmnist-export")
    process.start()
    send.close()
    try:
        if not receive.poll(timeout):
            raise StoreError(f"run {run_id}: exporting its weights took over {timeout:.0f} s; try again")
        error = receive.recv()
    except EOFError:
        error = f"run {run_id}: the process exporting its weights ended early (exit code {process.exitcode})"
    finally:
        receive.close()
        if process.is_alive():
            process.kill()
        process.join(5)
    if error:
        raise StoreError(error)


def _export_main(root: str, run_id: str, reply: Connection) -> None:
    """Export process: model.keras -> weights.npz; replies "" or the one-line error."""
    _redirect_output()
    _limit_threads(1)
    try:
        from .model import export_weights, load_model
        from .store import RunStore

        store = RunStore(root)
        store.save_weights(run_id, export_weights(load_model(store.model_path(run_id))))
        reply.send("")
    except KmnistError as e:
        reply.send(str(e))
    except Exception as e:  # noqa: BLE001 - a model Keras cannot load is a damaged run, said in one line
        log.exception("exporting the weights of %s failed", run_id)
        reply.send(f"run {run_id}: its model.keras cannot be loaded ({type(e).__name__}); details in {log_path()}")


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
