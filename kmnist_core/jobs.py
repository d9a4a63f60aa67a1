"""The background job queue: one worker thread trains FIFO; any thread reads progress snapshots."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .config import TrainConfig
from .data import Dataset
from .errors import KmnistError, RunNotFoundError
from .store import RunStore

log = logging.getLogger(__name__)

MAX_LIVE_POINTS = 4000  # within-epoch points kept per job for live curves


@dataclass(frozen=True)
class JobSnapshot:
    """A copy of one job's state, safe to read from any thread. `job_id` is the run id."""

    job_id: str
    config: TrainConfig
    status: str  # queued | running | completed | cancelled | failed
    cached: bool = False  # answered from the store without training
    epoch: int = 0  # current epoch, 1-based; 0 before the first
    epochs: int = 0
    step: int = 0
    steps: int = 0
    history: tuple[dict[str, float], ...] = ()  # finished epochs
    live: tuple[dict[str, float], ...] = ()  # within-epoch points: x (epochs done, fractional), loss, accuracy
    elapsed_s: float = 0.0
    eta_s: float | None = None
    error: str = ""
    position: int = 0  # place in the queue, 1 = next; 0 when not queued
    submitted: float = 0.0

    @property
    def fraction(self) -> float:
        """Share of all epochs done, 0..1."""
        if self.status == "completed":
            return 1.0
        if not self.epochs:
            return 0.0
        done = len(self.history) + (self.step / self.steps if self.steps and self.epoch > len(self.history) else 0)
        return min(1.0, done / self.epochs)

    @property
    def active(self) -> bool:
        return self.status in ("queued", "running")


@dataclass
class _Job:
    job_id: str
    config: TrainConfig
    key: str
    status: str = "queued"
    cached: bool = False
    stop: threading.Event = field(default_factory=threading.Event)
    epoch: int = 0
    step: int = 0
    steps: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    live: deque = field(default_factory=lambda: deque(maxlen=MAX_LIVE_POINTS))
    started: float | None = None
    finished: float | None = None
    error: str = ""
    submitted: float = field(default_factory=time.time)


class JobQueue:
    """Thread-safe FIFO of training jobs with one worker thread; holds no UI object.

    Args:
        store: where every job's run is recorded.
        data: the dataset all jobs train on (loaded once by the caller).
    """

    def __init__(self, store: RunStore, data: Dataset):
        self.store, self.data = store, data
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._jobs: dict[str, _Job] = {}
        self._queue: deque[_Job] = deque()
        self._closed = False
        try:
            store.mark_interrupted()
        except KmnistError as e:  # an unreadable store must not stop the dashboard from starting
            log.warning("could not mark interrupted runs: %s", e)
        self._worker = threading.Thread(target=self._work, name="kmnist-trainer", daemon=True)
        self._worker.start()

    # --- commands ---

    def submit(self, config: TrainConfig, force: bool = False) -> str:
        """Queue a training run; returns its job id (= run id).

        A config that already has a completed run on this dataset returns that run at once
        (status "completed", cached=True), and one already queued or running returns that
        job, unless force=True.

        Raises:
            StoreError: if the run store cannot be written.
        """
        key = config.key(self.data.fingerprint)
        if not force:
            with self._lock:
                for job in self._jobs.values():
                    if job.key == key and job.status in ("queued", "running"):
                        return job.job_id
            run_id = self.store.find_completed(key)
            if run_id is not None:
                info = self.store.get(run_id)
                job = _Job(run_id, config, key, status="completed", cached=True, history=list(info.history))
                job.epoch = job.steps = job.step = len(info.history)
                with self._lock:
                    self._jobs[run_id] = job
                return run_id
        run_id = self.store.create(config, key, self.data.source)
        with self._wake:
            job = _Job(run_id, config, key)
            self._jobs[run_id] = job
            self._queue.append(job)
            self._wake.notify()
        return run_id

    def cancel(self, job_id: str) -> bool:
        """Stop a queued or running job; True if it was active. A running one ends within a second."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.status not in ("queued", "running"):
                return False
            job.stop.set()
            if job.status == "queued":
                self._queue.remove(job)
                job.status = "cancelled"
                job.finished = time.time()
            else:
                return True
        self.store.set_status(job_id, "cancelled", "cancelled before it started")
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Cancel everything and stop the worker thread."""
        with self._wake:
            self._closed = True
            for job in self._jobs.values():
                job.stop.set()
            self._wake.notify()
        self._worker.join(timeout)

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

    def status(self, job_id: str) -> str:
        """The job's status, or the stored run's status for runs this queue never ran."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None:
                return job.status
        return self.store.get(job_id).status

    def jobs(self) -> list[JobSnapshot]:
        """Snapshots of every job this queue knows, oldest first."""
        with self._lock:
            return [self._snapshot(j) for j in sorted(self._jobs.values(), key=lambda j: j.submitted)]

    def active(self) -> list[JobSnapshot]:
        """Running then queued jobs, in the order they will train."""
        return [s for s in self.jobs() if s.active]

    def _snapshot(self, job: _Job) -> JobSnapshot:
        now = time.time()
        elapsed = ((job.finished or now) - job.started) if job.started else 0.0
        done = len(job.history) + (job.step / job.steps if job.steps and job.epoch > len(job.history) else 0)
        eta = None
        if job.status == "running" and done > 0:
            eta = elapsed / done * (job.config.epochs - done)
        position = next((i for i, j in enumerate(self._queue, start=1) if j is job), 0)
        return JobSnapshot(
            job_id=job.job_id, config=job.config, status=job.status, cached=job.cached,
            epoch=job.epoch, epochs=job.config.epochs, step=job.step, steps=job.steps,
            history=tuple(job.history), live=tuple(job.live), elapsed_s=elapsed, eta_s=eta,
            error=job.error, position=position, submitted=job.submitted,
        )

    # --- the worker ---

    def _work(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                job = self._queue.popleft()
                job.status, job.started = "running", time.time()
            self._run(job)

    def _run(self, job: _Job) -> None:
        from .train import train

        try:
            self.store.set_status(job.job_id, "running")
            result = train(job.config, self.data, on_progress=lambda p: self._on_progress(job, p), stop=job.stop)
            self.store.save_result(job.job_id, result)
            status, error = result.status, ""
        except Exception as e:  # noqa: BLE001 - the worker must survive any one failed run
            log.exception("run %s failed", job.job_id)
            status, error = "failed", f"{e.__class__.__name__}: {e}"
            try:
                self.store.save_history(job.job_id, job.history)
                self.store.set_status(job.job_id, "failed", error)
            except Exception:  # noqa: BLE001
                log.exception("could not record the failure of %s", job.job_id)
        with self._lock:
            job.status, job.error, job.finished = status, error, time.time()

    def _on_progress(self, job: _Job, p: dict[str, Any]) -> None:
        with self._lock:
            job.epoch, job.step, job.steps = p["epoch"], p["step"], p["steps"]
            x = p["epoch"] - 1 + p["step"] / p["steps"]
            job.live.append({"x": x, "loss": p["loss"], "accuracy": p["accuracy"]})
            if p["end_of_epoch"]:
                job.history.append({
                    "epoch": p["epoch"], "loss": p["loss"], "accuracy": p["accuracy"],
                    "val_loss": p["val_loss"], "val_accuracy": p["val_accuracy"],
                })
