"""The server-side job queue: FIFO training jobs run by worker processes; snapshots, cancel, worker health; no TF.

One code path carries every job from start to end: submit() -> this queue -> a worker process
(kmnist_core.worker) -> the run store. The dashboard, the CLI's train and reproduce, and sweeps
all use it. Each worker process has a thread here (a slot) that hands it jobs, reads its
messages into thread-safe job state, stops it, and replaces it when it dies.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .config import TrainConfig
from .data import Dataset
from .errors import ConfigError, KmnistError, RunNotFoundError
from .records import ACTIVE, EpochRecord, LivePoint, Status, live_point
from .store import RunStore

log = logging.getLogger(__name__)

ENV_WORKERS = "KMNIST_WORKERS"
MAX_LIVE_POINTS = 4000  # within-epoch points kept per job for live curves
POLL_S = 0.1  # how often a slot looks at its worker when no message arrives
STOP_CHECK_S = 0.2  # how often a slot looks for a stop request (in memory, then the run's stop file)
STOP_GRACE_S = 5.0  # a stopped job whose worker has not answered by then is killed (e.g. inside an XLA compile)
READY_TIMEOUT_S = 300.0  # a worker that has not imported TensorFlow and loaded the data by then is replaced


def cpu_count() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def worker_count(value: str | None = None) -> int:
    """The number of worker processes: $KMNIST_WORKERS, default 1.

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
    """TensorFlow threads each worker may use, so that workers x threads does not exceed the cores."""
    return max(1, cpu_count() // workers)


def describe_exit(exitcode: int | None) -> str:
    """'worker process died: signal 9 (SIGKILL)' or 'worker process exited with code 1'."""
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = "unknown signal"
        return f"worker process died: signal {-exitcode} ({name})"
    return f"worker process exited with code {exitcode}"


@dataclass(frozen=True)
class JobSnapshot:
    """A copy of one job's state, safe to read from any thread. `job_id` is the run id."""

    job_id: str
    config: TrainConfig
    status: Status
    cached: bool = False  # answered from the store without training
    epoch: int = 0  # current epoch, 1-based; 0 before the first
    epochs: int = 0
    step: int = 0
    steps: int = 0
    history: tuple[EpochRecord, ...] = ()  # finished epochs
    live: tuple[LivePoint, ...] = ()  # within-epoch points
    elapsed_s: float = 0.0
    eta_s: float | None = None
    error: str = ""
    position: int = 0  # place in the queue, 1 = next; 0 when not queued
    submitted: float = 0.0
    worker_pid: int | None = None  # the process training it

    @property
    def fraction(self) -> float:
        """Share of all epochs done, 0..1."""
        if self.status == Status.COMPLETED:
            return 1.0
        if not self.epochs:
            return 0.0
        return min(1.0, _epochs_done(len(self.history), self.epoch, self.step, self.steps) / self.epochs)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


@dataclass(frozen=True)
class WorkerInfo:
    """One worker slot as the sidebar and tests see it."""

    slot: int
    pid: int | None
    state: str  # starting | idle | training | failed
    threads: int
    job_id: str | None = None
    import_seconds: float | None = None  # TensorFlow import + data load at its start
    error: str = ""  # why it could not start
    restarts: int = 0


def _epochs_done(finished: int, epoch: int, step: int, steps: int) -> float:
    return finished + (step / steps if steps and epoch > finished else 0)


@dataclass
class _Job:
    job_id: str
    config: TrainConfig
    key: str
    status: Status = Status.QUEUED
    cached: bool = False
    stop: Status | None = None  # asked to stop, and what it then reads (cancelled, pruned); the slot tells the worker
    epoch: int = 0
    step: int = 0
    steps: int = 0
    history: list[EpochRecord] = field(default_factory=list)
    live: deque = field(default_factory=lambda: deque(maxlen=MAX_LIVE_POINTS))
    started: float | None = None
    finished: float | None = None
    error: str = ""
    submitted: float = field(default_factory=time.time)
    worker_pid: int | None = None


class JobQueue:
    """Thread-safe FIFO of training jobs, trained by `workers` worker processes; holds no UI object.

    The workers start at once, in the background, so the first job does not wait for their
    TensorFlow import. close() stops them.

    Args:
        store: where every job's run is recorded.
        data: the dataset all jobs train on; each worker loads the same files (data.folder).
        workers: how many worker processes; default $KMNIST_WORKERS, else 1.

    Raises:
        ConfigError: KMNIST_WORKERS is not a valid number.
        KmnistError: the dataset has no folder a worker could load it from.
    """

    def __init__(self, store: RunStore, data: Dataset, workers: int | None = None):
        if data.folder is None:
            raise KmnistError(f"the data ({data.source}) has no folder a training worker could read it from")
        self.store, self.data = store, data
        count = worker_count() if workers is None else workers
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._jobs: dict[str, _Job] = {}
        self._queue: deque[_Job] = deque()
        self._closed = False
        try:
            store.mark_interrupted()
        except KmnistError as e:  # an unreadable store must not stop the dashboard from starting
            log.warning("could not mark interrupted runs: %s", e)
        from .worker import WorkerSpec

        spec = WorkerSpec(str(data.folder), data.fingerprint, str(store.root.absolute()), threads_per_worker(count))
        self._slots = [_Slot(self, i, spec) for i in range(count)]
        for slot in self._slots:
            slot.start()

    # --- commands ---

    def submit(self, config: TrainConfig, force: bool = False, first: bool = False) -> str:
        """Queue a training run; returns its job id (= run id).

        A config that already has a completed run on this dataset returns that run at once
        (status completed, cached=True), and one already queued or running returns that
        job, unless force=True. first=True puts a new job at the head of the queue (live mode's
        replacement of a job it stopped).

        Raises:
            StoreError: if the run store cannot be written.
        """
        key = config.key(self.data.fingerprint)
        if not force:
            with self._lock:
                for job in self._jobs.values():
                    if job.key == key and job.status in ACTIVE:
                        return job.job_id
            run_id = self.store.find_completed(key)
            if run_id is not None:
                info = self.store.get(run_id)
                job = _Job(run_id, config, key, status=Status.COMPLETED, cached=True, history=list(info.history))
                job.epoch = job.steps = job.step = len(info.history)
                with self._lock:
                    self._jobs[run_id] = job
                return run_id
        run_id = self.store.create(config, key, self.data.source)
        with self._wake:
            job = _Job(run_id, config, key)
            self._jobs[run_id] = job
            if first:
                self._queue.appendleft(job)
            else:
                self._queue.append(job)
            self._wake.notify_all()
        return run_id

    def replace(self, job_id: str | None, config: TrainConfig) -> str:
        """Put `config` in the place of a job (live mode): what the next widget change does to the last one.

        A queued job gets the new configuration in place and keeps its place in the queue; a
        running one is stopped (it reads cancelled, as with Stop) and the new configuration takes
        the next place. A configuration with a completed run comes from the store at once (and the
        old job is stopped). Any other job, or None, is left alone and the config is submitted.

        Returns:
            The job id that now stands for `config`.

        Raises:
            StoreError: if the run store cannot be written.
        """
        key = config.key(self.data.fingerprint)
        with self._lock:
            job = self._jobs.get(job_id) if job_id else None
            if job is not None and job.key == key and job.status in ACTIVE:
                return job.job_id  # the same configuration: nothing to replace
        if job is not None and job.status == Status.QUEUED and self.store.find_completed(key) is None:
            with self._lock:
                if job.status == Status.QUEUED and not job.stop:
                    self.store.reconfigure(job.job_id, config, key)
                    job.config, job.key = config, key
                    return job.job_id
        if job is not None:
            self.cancel(job.job_id)
        return self.submit(config, first=True)

    def cancel(self, job_id: str, status: Status = Status.CANCELLED) -> bool:
        """Stop a queued or running job; True if it was active. A running one ends within a second or so.

        Args:
            job_id: the job (= run id).
            status: what the stopped run reads: cancelled (Stop), or pruned (a sweep's pruner).
        """
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.status not in ACTIVE:
                return False
            job.stop = Status(status)
            if job.status == Status.RUNNING:
                return True
            self._queue.remove(job)
            job.status, job.finished = job.stop, time.time()
        self.store.set_status(job_id, status, f"{status} before it started")
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Cancel everything and stop the worker processes."""
        with self._wake:
            self._closed = True
            for job in self._jobs.values():
                job.stop = job.stop or Status.CANCELLED
            self._wake.notify_all()
        deadline = time.monotonic() + timeout
        for slot in self._slots:
            slot.join(max(0.1, deadline - time.monotonic()))

    # --- reads: each takes the lock for a copy and nothing more ---

    def progress(self, job_id: str) -> JobSnapshot:
        """A snapshot of one job.

        Raises:
            RunNotFoundError: if this queue has no such job.
        """
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise RunNotFoundError(f"no job {job_id} in this session's queue")
            return self._snapshot(job)

    def jobs(self) -> list[JobSnapshot]:
        """Snapshots of every job this queue knows, oldest first."""
        with self._lock:
            return [self._snapshot(j) for j in sorted(self._jobs.values(), key=lambda j: j.submitted)]

    def active(self) -> list[JobSnapshot]:
        """Running then queued jobs, in the order they will train."""
        return [s for s in self.jobs() if s.active]

    def workers(self) -> list[WorkerInfo]:
        """The worker processes, one per slot."""
        with self._lock:
            return [slot.info() for slot in self._slots]

    def _snapshot(self, job: _Job) -> JobSnapshot:
        now = time.time()
        elapsed = ((job.finished or now) - job.started) if job.started else 0.0
        done = _epochs_done(len(job.history), job.epoch, job.step, job.steps)
        eta = None
        if job.status == Status.RUNNING and done > 0:
            eta = elapsed / done * (job.config.epochs - done)
        position = next((i for i, j in enumerate(self._queue, start=1) if j is job), 0)
        return JobSnapshot(
            job_id=job.job_id, config=job.config, status=job.status, cached=job.cached,
            epoch=job.epoch, epochs=job.config.epochs, step=job.step, steps=job.steps,
            history=tuple(job.history), live=tuple(job.live), elapsed_s=elapsed, eta_s=eta,
            error=job.error, position=position, submitted=job.submitted, worker_pid=job.worker_pid,
        )

    # --- what the slots call ---

    def _take(self, pid: int | None) -> _Job | None:
        """The next queued job, now running on the worker with this pid; None once the queue is closed."""
        with self._wake:
            while not self._queue and not self._closed:
                self._wake.wait()
            if self._closed:
                return None
            job = self._queue.popleft()
            job.status, job.started, job.worker_pid = Status.RUNNING, time.time(), pid
            return job

    def _stop_asked(self, job: _Job) -> Status | None:
        """The status a stop of this job asks for, once one was asked for here or in the run store."""
        with self._lock:
            if job.stop is not None:
                return job.stop
        if self.store.stop_requested(job.job_id):  # `python -m kmnist_core cancel RUN`, from another process
            with self._lock:
                job.stop = Status.CANCELLED
            return job.stop
        return None

    def _on_progress(self, job: _Job, progress: dict[str, Any]) -> None:
        with self._lock:
            job.epoch, job.step, job.steps = progress["epoch"], progress["step"], progress["steps"]
            job.live.append(live_point(progress))
            if progress["record"] is not None:
                job.history.append(progress["record"])

    def _finish(self, job: _Job, status: str, error: str = "", record: bool = False) -> None:
        """Mark a job ended; with record=True also write its history and status (its worker could not)."""
        if record:
            try:
                self.store.save_history(job.job_id, job.history)
                self.store.set_status(job.job_id, status, error)
            except (OSError, KmnistError) as e:
                log.warning("could not record the end of run %s: %s", job.job_id, e)
        with self._lock:
            job.status, job.error, job.finished = Status(status), error, time.time()


class _Slot(threading.Thread):
    """One worker process and the server thread that feeds it jobs and reads its messages."""

    def __init__(self, queue: JobQueue, index: int, spec: Any):
        super().__init__(name=f"kmnist-worker-slot-{index}", daemon=True)
        self.queue, self.index, self.spec = queue, index, spec
        self.process: Any = None
        self.conn: Any = None
        self.state, self.job_id, self.error = "starting", None, ""
        self.import_seconds: float | None = None
        self.restarts = 0

    def info(self) -> WorkerInfo:
        pid = self.process.pid if self.process is not None else None
        return WorkerInfo(self.index, pid, self.state, self.spec.threads, self.job_id, self.import_seconds,
                          self.error, self.restarts)

    def run(self) -> None:
        try:
            while not self.queue._closed:
                if self.process is None or not self.process.is_alive():
                    self._start_worker()
                job = self.queue._take(self.process.pid if self.process is not None else None)
                if job is None:
                    break
                if self.state == "failed":  # the worker cannot start: say why on the job, try again for the next
                    self.queue._finish(job, Status.FAILED, self.error, record=True)
                    self._discard_worker()
                    continue
                self._train(job)
        finally:
            self._stop_worker()

    # --- the worker process ---

    def _start_worker(self) -> None:
        from . import worker

        if self.process is not None:
            self.restarts += 1
        context = multiprocessing.get_context("spawn")  # never fork a process that may hold TensorFlow
        self.conn, child = context.Pipe()
        process = context.Process(target=worker.main, args=(child, self.spec), daemon=True,
                                  name=f"kmnist-worker-{self.index}")
        self.state, self.error, self.job_id = "starting", "", None
        process.start()
        self.process = process
        child.close()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self.queue._closed:
            try:
                if self.conn.poll(POLL_S):
                    message = self.conn.recv()
                    if message["type"] == "ready":
                        self.state, self.import_seconds = "idle", message["import_seconds"]
                        log.info("worker %s ready in %.1f s", self.process.pid, self.import_seconds)
                    else:
                        self.state, self.error = "failed", message["error"]
                    return
            except (EOFError, OSError):
                pass
            if not self.process.is_alive() or time.monotonic() > deadline:
                self.process.join(1)
                reason = describe_exit(self.process.exitcode) if not self.process.is_alive() else "did not start"
                self.state, self.error = "failed", f"the training worker could not start: {reason}"
                return

    def _train(self, job: _Job) -> None:
        self.state, self.job_id = "training", job.job_id
        stop_sent: float | None = None
        next_check = 0.0
        try:
            self.conn.send({"type": "train", "run_id": job.job_id, "config": job.config.to_dict()})
            while True:
                if self.conn.poll(POLL_S):
                    message = self.conn.recv()
                    if message["type"] == "progress":
                        self.queue._on_progress(job, message)
                    elif message["type"] == "done":
                        self.queue._finish(job, message["status"], message["error"])
                        return
                elif not self.process.is_alive():
                    raise EOFError
                if stop_sent is None and time.monotonic() >= next_check:
                    next_check = time.monotonic() + STOP_CHECK_S
                    if stop := self.queue._stop_asked(job) or (Status.CANCELLED if self.queue._closed else None):
                        self.conn.send({"type": "stop", "run_id": job.job_id, "status": str(stop)})
                        stop_sent = time.monotonic()
                elif stop_sent is not None and time.monotonic() - stop_sent > STOP_GRACE_S:
                    log.warning("worker %s did not stop run %s within %.0f s: killing it",
                                self.process.pid, job.job_id, STOP_GRACE_S)
                    self._discard_worker()
                    self.queue._finish(job, self.queue._stop_asked(job) or Status.CANCELLED,
                                       f"stopped by force: its worker did not answer within {STOP_GRACE_S:.0f} s",
                                       record=True)
                    return
        except (EOFError, OSError):  # the pipe ended: the worker died
            self.process.join(5)
            reason = describe_exit(self.process.exitcode)
            log.warning("run %s: %s", job.job_id, reason)
            self.queue._finish(job, Status.FAILED, reason, record=True)
            self._discard_worker()
        finally:
            if self.state == "training":
                self.state, self.job_id = "idle", None

    def _discard_worker(self) -> None:
        """Kill this slot's worker (if alive); the next job starts a fresh one."""
        if self.process is not None and self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        if self.conn is not None:
            self.conn.close()
        self.state, self.job_id = "starting", None

    def _stop_worker(self) -> None:
        """Ask the worker to exit, and make sure it has."""
        if self.process is None:
            return
        try:
            self.conn.send({"type": "shutdown"})
            self.conn.close()
        except (OSError, ValueError):
            pass
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
