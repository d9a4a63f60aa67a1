"""The job queue: our policy above the Dask engine (dedup, order, stop, faults) and the snapshots pages read; no TF.

One code path carries every job from start to end: submit() -> this queue -> kmnist_core.engine
(Dask) -> a worker's train_task -> the run store. The dashboard, the CLI's train, reproduce and
repeat, and sweeps all use it. Dask runs the workers; this queue decides which job goes next,
joins a config already queued or running, answers a completed one from the store, turns worker
events into thread-safe job state, stops jobs, and records how each one ended.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .config import TrainConfig
from .data import Dataset
from .engine import Engine, WorkerInfo, check_connected, worker_count
from .errors import KmnistError, RunNotFoundError
from .records import ACTIVE, EpochRecord, LivePoint, Status, live_point
from .store import RunStore

log = logging.getLogger(__name__)

MAX_LIVE_POINTS = 4000  # within-epoch points kept per job for live curves
TICK_S = 0.1  # how often the dispatcher looks at the queue, the workers and the stop requests
STOP_CHECK_S = 0.2  # how often a running job's stop file (the `cancel` command) is looked at
STOP_GRACE_S = 5.0  # a stopped job whose worker has not answered by then has its worker restarted
_DISPATCHING = object()  # a job's future while the dispatcher hands it to the engine


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
    worker: str | None = None  # the Dask worker's address, e.g. tcp://127.0.0.2:40123

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


def _epochs_done(finished: int, epoch: int, step: int, steps: int) -> float:
    return finished + (step / steps if steps and epoch > finished else 0)


@dataclass
class _Job:
    job_id: str
    config: TrainConfig
    key: str
    status: Status = Status.QUEUED
    cached: bool = False
    stop: Status | None = None  # asked to stop, and what it then reads (cancelled, pruned)
    stop_sent: float | None = None  # when the stop went to its worker
    next_stop_check: float = 0.0
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
    worker: str | None = None
    future: Any = None  # its Dask future once dispatched (_DISPATCHING while it is being handed over)
    pinned: list[str] | None = None  # the worker it was handed to
    dispatched: float = 0.0  # when it was handed to Dask (time.monotonic)
    ending: bool = False  # _finish is recording its end
    forced: bool = False  # its worker did not answer Stop and is being restarted


class JobQueue:
    """Thread-safe queue of training jobs, trained on Dask workers in the order this queue decides.

    The engine connects (or starts the embedded cluster and warms its workers) in the background,
    so the first job does not wait for a TensorFlow import. close() stops it.

    Args:
        store: where every job's run is recorded.
        data: the dataset all jobs train on; each worker loads the same files (data.folder).
        workers: embedded workers; default $KMNIST_WORKERS, else 1.
        scheduler: a Dask scheduler's address; default $KMNIST_SCHEDULER; empty embeds a LocalCluster.

    Raises:
        ConfigError: KMNIST_WORKERS is not a valid number.
        KmnistError: the dataset has no folder a worker could load it from.
    """

    def __init__(self, store: RunStore, data: Dataset, workers: int | None = None, scheduler: str | None = None):
        if data.folder is None:
            raise KmnistError(f"the data ({data.source}) has no folder a training worker could read it from")
        self.store, self.data = store, data
        count = worker_count() if workers is None else workers
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._jobs: dict[str, _Job] = {}
        self._queue: deque[_Job] = deque()
        self._done: deque[tuple[_Job, Any]] = deque()  # futures that ended, handled by the dispatcher thread
        self._closed = False
        try:
            store.mark_interrupted()
        except KmnistError as e:  # an unreadable store must not stop the dashboard from starting
            log.warning("could not mark interrupted runs: %s", e)
        self.engine = Engine(str(data.folder), data.fingerprint, self._on_event, scheduler=scheduler, workers=count)
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name="kmnist-dispatcher", daemon=True)
        self._dispatcher.start()

    # --- commands ---

    def submit(self, config: TrainConfig, force: bool = False, first: bool = False) -> str:
        """Queue a training run; returns its job id (= run id).

        A config that already has a completed run on this dataset returns that run at once
        (status completed, cached=True), and one already queued or running returns that
        job, unless force=True. first=True puts a new job at the head of the queue (live mode's
        replacement of a job it stopped).

        Raises:
            StoreError: if the run store cannot be written.
            KmnistError: a remote scheduler does not answer (one line naming it).
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
        check_connected(self.engine)
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
                if job.status == Status.QUEUED and job.future is None and not job.stop:
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
        with self._wake:
            job = self._jobs.get(job_id)
            if job is None or job.status not in ACTIVE:
                return False
            job.stop = Status(status)
            if job.status == Status.RUNNING or job.future is _DISPATCHING:
                self._wake.notify_all()
                return True
            if job.future is None:
                self._queue.remove(job)
            future = job.future
        if future is not None:
            self.engine.cancel(future)  # dispatched, not yet started: its task never runs
        self._finish(job, status, f"{status} before it started", record=True)
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Cancel everything, and close the engine (the embedded cluster's processes end with it)."""
        with self._wake:
            self._closed = True
            running = [j for j in self._jobs.values() if j.status == Status.RUNNING]
            for job in self._jobs.values():
                job.stop = job.stop or Status.CANCELLED
            self._wake.notify_all()
        for job in running:
            self.engine.stop(job.job_id, str(job.stop), job.worker)
        deadline = time.monotonic() + min(timeout, STOP_GRACE_S)
        while time.monotonic() < deadline and any(j.status in ACTIVE and j.future is not None for j in running):
            self._handle_done()
            time.sleep(TICK_S)
        self._dispatcher.join(max(0.1, deadline - time.monotonic()))
        self._handle_done()
        self.engine.close()
        for job in [j for j in self._jobs.values() if j.status in ACTIVE]:
            self._finish(job, job.stop or Status.CANCELLED, "the server closed its job queue", record=True)

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
        """The Dask workers: host, threads, busy or not, and whether their data matches the server's."""
        with self._lock:
            busy = {j.worker: j.job_id for j in self._jobs.values() if j.status == Status.RUNNING and j.worker}
        return self.engine.workers(busy)

    def capacity(self) -> int:
        """How many jobs can train at once: the usable workers, or the embedded workers still starting."""
        usable = sum(1 for w in self.workers() if w.usable)
        return max(1, usable if usable or not self.engine.embedded else self.engine.n_workers)

    def engine_problem(self) -> str:
        """One line while no scheduler answers, else ""."""
        return self.engine.problem

    def _snapshot(self, job: _Job) -> JobSnapshot:
        now = time.time()
        elapsed = ((job.finished or now) - job.started) if job.started else 0.0
        done = _epochs_done(len(job.history), job.epoch, job.step, job.steps)
        eta = None
        if job.status == Status.RUNNING and done > 0:
            eta = elapsed / done * (job.config.epochs - done)
        position = next((i for i, j in enumerate(self._waiting(), start=1) if j is job), 0)
        return JobSnapshot(
            job_id=job.job_id, config=job.config, status=job.status, cached=job.cached,
            epoch=job.epoch, epochs=job.config.epochs, step=job.step, steps=job.steps,
            history=tuple(job.history), live=tuple(job.live), elapsed_s=elapsed, eta_s=eta,
            error=job.error, position=position, submitted=job.submitted, worker_pid=job.worker_pid,
            worker=job.worker,
        )

    def _waiting(self) -> list[_Job]:
        """Jobs not started, in the order they will start: those handed to Dask already, then our queue."""
        handed = sorted((j for j in self._jobs.values() if j.status == Status.QUEUED and j.future is not None),
                        key=lambda j: j.dispatched)
        return handed + list(self._queue)

    # --- the dispatcher thread: hand jobs to free workers, watch the running ones ---

    def _dispatch_loop(self) -> None:
        while True:
            with self._wake:
                if self._closed:
                    return
                self._wake.wait(TICK_S)
            try:
                self._handle_done()
                self._watch_running()
                self._dispatch()
            except Exception:  # noqa: BLE001 - the dispatcher must outlive any one bad moment
                log.exception("the job dispatcher hit an error; it goes on")

    def _dispatch(self) -> None:
        """Give queued jobs, in our order, each to a usable worker that has none of ours: the queue's order stays ours.

        The job is pinned to that worker, so the sidebar can say where it runs before it starts.
        """
        if not self._queue or not self.engine.connected():
            return
        usable = [w.address for w in self.workers() if w.usable]
        while usable:
            with self._lock:
                load = dict.fromkeys(usable, 0)
                for j in self._jobs.values():
                    if j.status in ACTIVE and j.future is not None:
                        where = j.worker or (j.pinned[0] if j.pinned else None)
                        if where in load:
                            load[where] += 1
                target = min(usable, key=load.__getitem__)
                if self._closed or not self._queue or load[target] > 0:
                    return
                job = self._queue.popleft()
                config, job.future, job.dispatched = job.config, _DISPATCHING, time.monotonic()
                job.pinned = [target]
            try:
                meta = (self.store.folder(job.job_id) / "config.json").read_bytes()
                future = self.engine.submit(job.job_id, config.to_dict(), str(self.store.root.absolute()), meta,
                                            [target])
            except Exception as e:  # noqa: BLE001 - a dispatch that fails fails its job in one line, not the queue
                self._finish(job, Status.FAILED, f"could not hand the job to {self.engine.where}: "
                                                 f"{type(e).__name__}: {e}", record=True)
                continue
            with self._lock:
                job.future = future
                stopped = job.stop
            future.add_done_callback(lambda f, job=job: self._ended(job, f))
            if stopped:  # Stop came while it was being handed over
                self.engine.cancel(future)
                self._finish(job, stopped, f"{stopped} before it started", record=True)

    def _ended(self, job: _Job, future: Any) -> None:
        """Dask's done callback (its event loop): only note it; the dispatcher thread does the writing."""
        with self._wake:
            self._done.append((job, future))
            self._wake.notify_all()

    def _handle_done(self) -> None:
        while True:
            with self._lock:
                if not self._done:
                    return
                job, future = self._done.popleft()
                if job.status not in ACTIVE or future is not job.future:
                    continue  # already ended here (stopped by force, its worker or scheduler lost), or requeued
            self._record_outcome(job, future)

    def _record_outcome(self, job: _Job, future: Any) -> None:
        if job.forced:
            self._finish_forced(job)  # its worker was restarted: the task's end says nothing more
        elif future.status == "finished":
            result = future.result()
            status, error = Status(result["status"]), result["error"]
            if result["files"] is not None:
                try:
                    self.store.save_files(job.job_id, result["files"], status, error)
                except KmnistError as e:
                    status, error = Status.FAILED, str(e)
                self._finish(job, status, error)
            else:  # it wrote into our runs folder; a run that did not complete is recorded here too
                self._finish(job, status, error, record=status != Status.COMPLETED)
        elif future.status == "cancelled":
            if job.stop:
                self._finish(job, job.stop, "", record=True)
            else:  # not by us: the scheduler lost it (it went away), or another client of it cancelled it
                lost = "went away mid-run" if not self.engine.connected() else "dropped its task"
                self._finish(job, Status.FAILED, f"{self.engine.where} {lost}", record=True)
        else:
            exc = future.exception()
            killed = type(exc).__name__ == "KilledWorker"
            if killed and job.status == Status.QUEUED:
                self._requeue(job)  # its worker died before the run started there: nothing was lost, it goes again
                return
            where = f"worker {job.worker}" if job.worker else "its worker"
            if killed:
                error = f"{where} died mid-run ({type(exc).__name__})"
            else:
                error = f"the training task on {where} failed: {type(exc).__name__}: {str(exc)[:160]}"
            log.warning("run %s: %s", job.job_id, error)
            self._finish(job, Status.FAILED, error, record=True)

    def _watch_running(self) -> None:
        """Stop requests, stops not answered in time, and workers or a scheduler lost mid-run."""
        with self._lock:
            dispatched = [j for j in self._jobs.values()
                          if j.status in ACTIVE and j.future is not None and j.future is not _DISPATCHING]
        if not dispatched:
            return
        if not self.engine.connected():
            for job in dispatched:
                if job.status == Status.QUEUED:
                    self._requeue(job)  # not started: it waits for the scheduler to answer again
                else:
                    self._finish(job, Status.FAILED, f"{self.engine.where} went away mid-run", record=True)
            return
        alive = {w.address for w in self.engine.workers()}
        now = time.monotonic()
        for job in dispatched:
            if job.status == Status.QUEUED and job.pinned and not alive & set(job.pinned):
                self._requeue(job)  # every worker it was given to left before it started
                continue
            if job.status != Status.RUNNING:
                continue
            if job.worker not in alive:
                self.engine.cancel(job.future)
                self._finish(job, Status.FAILED, f"worker {job.worker} died mid-run (it left the scheduler)",
                             record=True)
            elif job.stop_sent is None and (stop := self._stop_asked(job, now)):
                job.stop_sent = now
                self.engine.stop(job.job_id, str(stop), job.worker)
            elif job.stop_sent is not None and now - job.stop_sent > STOP_GRACE_S and not job.forced:
                log.warning("worker %s did not stop run %s within %.0f s: restarting it", job.worker, job.job_id,
                            STOP_GRACE_S)
                job.forced = True  # recorded once the worker is gone, so that it cannot write after us
                self.engine.restart(job.worker, then=lambda job=job: self._finish_forced(job))

    def _finish_forced(self, job: _Job) -> None:
        self._finish(job, job.stop or Status.CANCELLED,
                     f"stopped by force: its worker did not answer within {STOP_GRACE_S:.0f} s", record=True)

    def _requeue(self, job: _Job) -> None:
        """Take back a dispatched job that has not started, to the head of the queue."""
        with self._lock:
            if job.status != Status.QUEUED or job.ending:
                return
            future, job.future, job.pinned = job.future, None, None
            self._queue.appendleft(job)
        if future.status == "pending":
            self.engine.cancel(future)

    def _stop_asked(self, job: _Job, now: float) -> Status | None:
        """The status a stop of this job asks for, once one was asked for here or in the run store."""
        if job.stop is not None:
            return job.stop
        if now >= job.next_stop_check:
            job.next_stop_check = now + STOP_CHECK_S
            if self.store.stop_requested(job.job_id):  # `python -m kmnist_core cancel RUN`, from another process
                with self._lock:
                    job.stop = Status.CANCELLED
                return job.stop
        return None

    # --- the workers' events (Dask's event loop: memory only, no I/O but the one status write) ---

    def _on_event(self, message: dict[str, Any]) -> None:
        with self._lock:
            job = self._jobs.get(message.get("run_id", ""))
            if job is None or job.status not in ACTIVE:
                return  # another client's job on a shared cluster, or one that ended here
            if message["type"] == "started":
                job.status, job.started = Status.RUNNING, time.time()
                job.worker, job.worker_pid = message["worker"], message["pid"]
                self._wake.notify_all()
            elif message["type"] == "progress":
                job.epoch, job.step, job.steps = message["epoch"], message["step"], message["steps"]
                job.live.append(live_point(message))
                if message["record"] is not None:
                    job.history.append(message["record"])
                return
        try:  # owned by this process from now on: a dead server's runs read interrupted
            self.store.set_status(job.job_id, Status.RUNNING, only_from=Status.QUEUED)
        except (OSError, KmnistError) as e:
            log.warning("could not record that run %s started: %s", job.job_id, e)

    def _finish(self, job: _Job, status: str, error: str = "", record: bool = False) -> None:
        """Mark a job ended, once; with record=True first write its history and status (its worker could not).

        The store is written before the job reads ended, so whoever sees the end also finds it on disk.
        """
        with self._lock:
            if job.status not in ACTIVE or job.ending:
                return
            job.ending = True
            history = list(job.history)
        if record:
            try:
                self.store.save_history(job.job_id, history)
                self.store.set_status(job.job_id, status, error)
            except (OSError, KmnistError) as e:
                log.warning("could not record the end of run %s: %s", job.job_id, e)
        with self._wake:
            job.status, job.error, job.finished = Status(status), error, time.time()
            self._wake.notify_all()
