"""The job engine: one Dask client, to an embedded LocalCluster or to the scheduler named by $KMNIST_SCHEDULER.

What is Dask's: the workers, their processes and restarts, moving tasks and results, the events
that carry progress. What is ours (kmnist_core.jobs, above this): which job goes next, dedup,
ownership, the snapshots. This module never imports TensorFlow; kmnist_core.worker holds what
runs on the workers, and is named here only lazily, as the code Dask sends them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError, KmnistError

log = logging.getLogger(__name__)

ENV_WORKERS = "KMNIST_WORKERS"
ENV_SCHEDULER = "KMNIST_SCHEDULER"
ENV_RUNS_SHARED = "KMNIST_RUNS_SHARED"  # "1": a remote cluster's workers see the server's runs folder (NFS)
CONNECT_TIMEOUT_S = 5.0  # a scheduler that has not answered by then is "unreachable"
RECONNECT_S = 3.0  # how often an unreachable scheduler is tried again
PROBE_S = 0.5  # how often a worker that is still warming up is asked again
LOOK_S = 0.25  # how often the list of workers is fetched from the scheduler
RESTART_TIMEOUT_S = 4.0  # a worker's nanny kills it outright after 0.8 x this
RESOURCE = "train"  # each worker has one: one training at a time per worker, whatever its thread count
# Dask's settings that this engine relies on, for the embedded scheduler (the README gives them for a remote one):
DASK_CONFIG = {
    "distributed.scheduler.allowed-failures": 0,  # a dead worker's run fails by name; it is not trained again
    "distributed.scheduler.worker-ttl": "30s",  # a silent node (network gone) is dropped after this
    # Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in each worker (glibc returns freed memory at once).
    # Measured on small jobs, 2 workers x 1 thread: training took 0.56 s a job with it, 0.52 s without it,
    # and 0.47 s in a plain process (the old pool); README, "The job engine".
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
}


def cpu_count() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def worker_count(value: str | None = None) -> int:
    """The number of embedded workers: $KMNIST_WORKERS, default 1.

    Raises:
        ConfigError: one line naming KMNIST_WORKERS when it is not a whole number from 1 to 64.
    """
    text = os.environ.get(ENV_WORKERS, "") if value is None else value
    if not text.strip():
        return 1
    if not text.strip().isdigit() or not 1 <= int(text) <= 64:
        raise ConfigError(f"{ENV_WORKERS} must be a whole number from 1 to 64; got {text!r}")
    return int(text)


def threads_per_worker(workers: int) -> int:
    """TensorFlow threads each worker may use: the cores shared out, at least one each."""
    return max(1, cpu_count() // workers)


@dataclass(frozen=True)
class WorkerInfo:
    """One Dask worker as the Workers panel, the sidebar and tests see it."""

    address: str  # tcp://host:port
    host: str
    pid: int | None
    state: str  # starting | idle | training | failed | other data
    threads: int
    job_id: str | None = None
    import_seconds: float | None = None  # TensorFlow import + data load at its start
    error: str = ""  # why it takes no jobs

    @property
    def usable(self) -> bool:
        return self.state in ("idle", "training")

    @property
    def line(self) -> str:
        """One line: 'worker tcp://127.0.0.2:40123 holds other data than the server: it takes no jobs'."""
        if self.state == "other data":
            return f"worker {self.address} holds other KMNIST data than the server: it takes no jobs"
        if self.state == "failed":
            return f"worker {self.address} cannot train: {self.error}"
        return f"worker {self.address}: {self.state}"


class Engine:
    """A Dask client that connects in the background and keeps trying; thread-safe.

    Args:
        data_folder: the server's data folder, which every worker loads (WarmUp).
        fingerprint: the server's Dataset.fingerprint; workers with other data take no jobs.
        on_event: called with each job message the workers send (kmnist_core.worker.EVENTS).
        scheduler: a scheduler address; default $KMNIST_SCHEDULER; None or "" embeds a LocalCluster.
        workers: embedded workers; default $KMNIST_WORKERS, else 1.

    Raises:
        ConfigError: KMNIST_WORKERS is not a valid number.
    """

    def __init__(self, data_folder: str, fingerprint: str, on_event: Callable[[dict[str, Any]], None],
                 scheduler: str | None = None, workers: int | None = None):
        self.data_folder, self.fingerprint, self.on_event = data_folder, fingerprint, on_event
        self.address = (os.environ.get(ENV_SCHEDULER, "") if scheduler is None else scheduler).strip()
        self.embedded = not self.address
        self.n_workers = worker_count() if workers is None else workers
        self.threads = threads_per_worker(self.n_workers)
        self.shares_runs = self.embedded or os.environ.get(ENV_RUNS_SHARED, "") == "1"
        self.client: Any = None
        self.cluster: Any = None
        self.problem = ""  # one line while no scheduler answers
        self._known: dict[str, dict[str, Any]] = {}  # address -> the scheduler's info on that worker
        self._probes: dict[str, dict[str, Any]] = {}  # address -> worker.describe()'s answer
        self._probed: dict[str, float] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._tried = threading.Event()  # the first connection attempt has ended, either way
        self._thread = threading.Thread(target=self._keep_connected, name="kmnist-engine", daemon=True)
        self._thread.start()

    # --- connection ---

    @property
    def where(self) -> str:
        return "the embedded cluster" if self.embedded else f"the scheduler at {self.address}"

    def connected(self) -> bool:
        client = self.client
        return client is not None and client.status == "running"

    def _keep_connected(self) -> None:
        while not self._closed.is_set():
            if not self.connected():
                self._drop_client()
                try:
                    self._connect()
                    self.problem = ""
                    log.info("job engine: connected to %s", self.where)
                except Exception as e:  # noqa: BLE001 - any failure to connect is said in one line, then retried
                    what = f"no scheduler answers at {self.address}" if self.address else \
                        "the embedded Dask cluster could not start"
                    self.problem = f"{what}: {type(e).__name__}: {str(e)[:120]}"
                    log.warning("job engine: %s", self.problem)
                    self._drop_client()
                self._tried.set()
            if self.connected():
                self._probe_workers()
            self._closed.wait(RECONNECT_S if self.problem else LOOK_S)

    def _connect(self) -> None:
        import dask
        from distributed import Client, LocalCluster

        from .worker import EVENTS, WarmUp

        dask.config.set(DASK_CONFIG)
        quiet = logging.getLogger("distributed")  # Dask's INFO lines are not for our terminal; our log says what failed
        quiet.setLevel(max(quiet.getEffectiveLevel(), logging.WARNING))
        if self.embedded:
            if self.cluster is None:
                self.cluster = LocalCluster(  # loopback only; Dask's web dashboard is not needed (the Workers panel)
                    n_workers=self.n_workers, threads_per_worker=self.threads, processes=True, host="127.0.0.1",
                    dashboard_address="127.0.0.1:0", resources={RESOURCE: 1}, silence_logs=logging.ERROR,
                    scheduler_kwargs={"dashboard": False},
                )
            client = Client(self.cluster, timeout=CONNECT_TIMEOUT_S)
        else:
            client = Client(self.address, timeout=CONNECT_TIMEOUT_S)
        client.register_plugin(WarmUp(self.data_folder, redirect=self.embedded), name=WarmUp.name)
        client.subscribe_topic(EVENTS, lambda event: self.on_event(event[1]))
        with self._lock:
            self.client = client
            self._probes.clear()
            self._known = {}

    def _drop_client(self) -> None:
        with self._lock:
            client, self.client = self.client, None
        if client is not None:
            try:
                client.close(timeout=2)
            except Exception:  # noqa: BLE001 - a client whose scheduler is gone may fail to close cleanly
                log.debug("closing the Dask client failed", exc_info=True)

    def close(self) -> None:
        """Close the client, and the embedded cluster with its worker processes."""
        self._closed.set()
        self._thread.join(10)
        self._drop_client()
        if self.cluster is not None:
            try:
                self.cluster.close(timeout=10)
            except Exception:  # noqa: BLE001 - its processes end with ours in any case
                log.debug("closing the embedded cluster failed", exc_info=True)
            self.cluster = None

    # --- workers ---

    def _probe_workers(self) -> None:
        """Ask each worker still warming (or new) what it holds; final answers are kept."""
        from .worker import describe

        client = self.client
        try:
            known = dict(client.scheduler_info(n_workers=-1)["workers"])
        except Exception:  # noqa: BLE001 - the scheduler went away between two looks
            return
        addresses = list(known)
        now = time.monotonic()
        with self._lock:
            self._known = known
            for gone in (set(self._probes) | set(self._probed)) - set(addresses):
                self._probes.pop(gone, None)
                self._probed.pop(gone, None)  # a restarted worker has a new address: forget the old one
            ask = [a for a in addresses if self._probes.get(a, {}).get("state", "starting") == "starting"
                   and now - self._probed.get(a, 0.0) >= PROBE_S]
            for a in ask:
                self._probed[a] = now
        if not ask:
            return
        try:
            answers = client.run(describe, workers=ask, on_error="return")
        except Exception:  # noqa: BLE001 - a worker left meanwhile; asked again next time
            return
        with self._lock:
            for address, answer in answers.items():
                if isinstance(answer, dict):
                    self._probes[address] = answer

    def workers(self, busy: dict[str, str] | None = None) -> list[WorkerInfo]:
        """Every worker the scheduler knows (as of LOOK_S ago), with its fingerprint check; `busy`: address -> job id."""
        busy = busy or {}
        if self.client is None:
            return []
        out = []
        with self._lock:
            known, probes = self._known, dict(self._probes)
        for address, info in sorted(known.items()):
            probe = probes.get(address, {})
            state, error = probe.get("state", "starting"), probe.get("error", "")
            if state == "ready":
                state = "training" if address in busy else "idle"
                if probe.get("fingerprint") != self.fingerprint:
                    state, error = "other data", "it holds other KMNIST data than the server"
            out.append(WorkerInfo(address, info.get("host", ""), probe.get("pid") or info.get("pid"), state,
                                  int(info.get("nthreads", 0)), busy.get(address), probe.get("import_seconds"),
                                  error))
        return out

    # --- jobs ---

    def submit(self, run_id: str, config: dict[str, Any], runs_root: str, meta: bytes,
               workers: list[str] | None) -> Any:
        """Start one training on a free worker (one of `workers`, if given); returns its Dask future."""
        from .worker import train_task

        return self.client.submit(train_task, run_id, config, self.fingerprint, runs_root,
                                  None if self.shares_runs else meta, key=f"train-{run_id}", pure=False,
                                  workers=workers, allow_other_workers=False, resources={RESOURCE: 1})

    def stop(self, run_id: str, status: str, worker: str | None) -> None:
        """Ask a run to stop on its worker (cooperative), without waiting for the answer."""
        from .worker import request_stop

        client = self.client
        if client is None or worker is None:
            return
        threading.Thread(target=_quietly, args=(client.run, request_stop, run_id, status),
                         kwargs={"workers": [worker], "on_error": "ignore"}, daemon=True).start()

    def restart(self, worker: str, then: Callable[[], None]) -> None:
        """Restart a worker that does not answer (its nanny kills and replaces the process), then call `then`."""
        client = self.client

        def restart() -> None:
            if client is not None:
                _quietly(client.restart_workers, [worker], timeout=RESTART_TIMEOUT_S, raise_for_error=False)
            then()

        threading.Thread(target=restart, name="kmnist-restart", daemon=True).start()

    def cancel(self, future: Any) -> None:
        """Release a job's task: a queued one never starts, a running one stops (worker._watch_release)."""
        client = self.client
        if client is not None:
            _quietly(client.cancel, future)


def _quietly(function: Callable, *args: Any, **kwargs: Any) -> None:
    try:
        function(*args, **kwargs)
    except Exception:  # noqa: BLE001 - best effort; the job's own state says what happened
        log.debug("%s failed", getattr(function, "__name__", function), exc_info=True)


def check_connected(engine: Engine) -> None:
    """Raise one line when a remote scheduler does not answer (the embedded one only takes time to start).

    Raises:
        KmnistError: 'no scheduler answers at tcp://…: …; runs already stored can still be browsed'.
    """
    if engine.embedded:
        return
    engine._tried.wait(CONNECT_TIMEOUT_S + 5)  # a queue made a moment ago: let its first attempt finish
    if not engine.connected():
        raise KmnistError(f"{engine.problem or 'no scheduler answers at ' + engine.address}; "
                          "runs already stored can still be browsed")


def _run_dask_command(command: Any, argv: list[str], prog: str) -> int:
    try:
        command.main(args=argv, prog_name=prog, standalone_mode=False)
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def run_scheduler(host: str | None = None, port: int = 8786) -> int:
    """`python -m kmnist_core scheduler`: Dask's own `dask scheduler`, with DASK_CONFIG and this package importable.

    The scheduler unpickles the tasks it is sent, so it must be able to import kmnist_core: run it
    from the repo. Returns when it ends (Ctrl-C); its exit code.
    """
    import dask
    from distributed.cli.dask_scheduler import main as dask_scheduler

    dask.config.set(DASK_CONFIG)
    argv = ["--port", str(port), "--no-dashboard", "--no-show"] + (["--host", host] if host else [])
    return _run_dask_command(dask_scheduler, argv, "python -m kmnist_core scheduler")


def run_worker(scheduler: str, host: str | None = None, threads: int | None = None, name: str | None = None,
               data_dir: str | None = None) -> int:
    """`python -m kmnist_core worker`: Dask's own `dask worker`, with one training slot and this package importable.

    The scheduler's client sends the WarmUp plugin, which imports TensorFlow and loads the data
    (the server's folder if this machine has it, else `data_dir` / $KMNIST_DATA_DIR). Returns when
    the worker ends (Ctrl-C, or the scheduler gone for 60 s); its exit code.
    """
    from distributed.cli.dask_worker import main as dask_worker

    if data_dir:
        os.environ["KMNIST_DATA_DIR"] = str(data_dir)
    argv = [scheduler, "--nworkers", "1", "--nthreads", str(threads or cpu_count()), "--resources", f"{RESOURCE}=1",
            "--death-timeout", "60", "--no-dashboard"]
    argv += ["--host", host] if host else []
    argv += ["--name", name] if name else []
    return _run_dask_command(dask_worker, argv, "python -m kmnist_core worker")
