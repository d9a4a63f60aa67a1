"""Sweeps through kmnist_core.sweeps: what pruning saves, trials per minute on PostgreSQL, overhead per trial."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from kmnist_core.config import TINY

from .context import Context
from .queueing import run_all, wait_idle
from .stats import median, series

SAMPLER_SEED = 13  # every sweep's sampler: the same draws on every run of the benchmark
CPU_POLL_S = 0.25


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no INFO line per trial in the benchmark's output


def same_cost_space(epochs: int) -> dict[str, Any]:
    """A space whose trials all cost the same: [128, 64] relu Adam for `epochs`, only the seed searched."""
    from kmnist_core.sweeps import validate_space

    return validate_space({"hidden_layers": {"value": [128, 64]}, "epochs": epochs,
                           "seed": {"low": 0, "high": 2**31 - 1}})


class WorkerCpu:
    """CPU seconds (user + system) a JobQueue's worker processes spend between enter and exit.

    Sampled every CPU_POLL_S, so a worker replaced meanwhile (one that did not stop in time is
    killed) is counted up to its last sample, and its replacement from its start (its TensorFlow
    import included: compute the sweep caused).
    """

    def __init__(self, queue: Any):
        self.queue = queue
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="bench-worker-cpu", daemon=True)
        self.pids: set[int] = set()

    def _sample(self, baseline: bool = False) -> None:
        for worker in self.queue.workers():
            if worker.pid is None:
                continue
            try:
                times = psutil.Process(worker.pid).cpu_times()
            except psutil.Error:
                continue
            seconds = times.user + times.system
            self._first.setdefault(worker.pid, seconds if baseline else 0.0)
            self._last[worker.pid] = seconds
            self.pids.add(worker.pid)

    def _poll(self) -> None:
        while not self._stop.wait(CPU_POLL_S):
            self._sample()

    def __enter__(self) -> WorkerCpu:
        self._sample(baseline=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def seconds(self) -> float:
        return sum(self._last[pid] - self._first[pid] for pid in self._last)


def _run_sweep(sweep: Any, queue: Any, parallel: int) -> float:
    """run_trials until the study has its budget; returns the wall time.

    Raises:
        RuntimeError: it ended for another reason (failed trials, stopped).
    """
    from kmnist_core.sweeps import run_trials

    t = time.perf_counter()
    reason = run_trials(sweep, queue, parallel=parallel)
    wall = time.perf_counter() - t
    if reason != "trial budget reached":
        raise RuntimeError(f"sweep {sweep.name} ended: {reason}")
    return wall


def trial_times(sweep: Any, store: Any) -> list[dict[str, float]]:
    """Per finished trial, from trials_table and its run folder: where its time went.

    Returns:
        [{trial, duration_s (datetime_complete - datetime_start), train_s (metrics.json wall_seconds),
          overhead_s (the difference), before_s (trial start -> run folder created), after_s (run's
          status written -> trial complete)}].
    """
    from kmnist_core.sweeps import trials_table

    out = []
    for row in trials_table(sweep):
        if row["status"] not in ("completed", "pruned") or not row["run_id"] or row["duration_s"] is None:
            continue
        info = store.get(row["run_id"])
        train_s = info.metrics.get("wall_seconds")
        if train_s is None:
            continue
        trial = sweep.study.get_trials(deepcopy=False)[row["trial"]]
        start, end = trial.datetime_start.timestamp(), trial.datetime_complete.timestamp()
        ended = json.loads((info.path / "status.json").read_text())["time"]
        out.append({"trial": row["trial"], "duration_s": row["duration_s"], "train_s": float(train_s),
                    "overhead_s": row["duration_s"] - float(train_s), "before_s": info.created - start,
                    "after_s": end - ended})
    return out


def _describe_overhead(times: list[dict[str, float]]) -> str:
    return (f"median over {len(times)} trials: trial {median([t['duration_s'] for t in times]):.2f} s, training"
            f" {median([t['train_s'] for t in times]):.2f} s; trial start -> run created"
            f" {median([t['before_s'] for t in times]):.2f} s, run ended -> trial complete"
            f" {median([t['after_s'] for t in times]):.2f} s (the rest: queue hand-off, model save)")


# --- sections ---


def section_sweep_pruning(ctx: Context) -> None:
    """A sweep of the default space at one epoch budget: TPE with the median pruner against random search, no pruning.

    Each sweep has a fresh run store (nothing cached), local SQLite storage, a seeded sampler, one
    worker with all cores and one trial at a time; its compute is its worker's CPU time.
    """
    from kmnist_core.jobs import JobQueue
    from kmnist_core.store import RunStore
    from kmnist_core.sweeps import (
        DEFAULT_SPACE,
        Budget,
        SweepSettings,
        open_storage,
        start_sweep,
        trials_table,
        validate_space,
    )

    _quiet_optuna()
    sizes = ctx.sizes
    data, label = ctx.folder(), ctx.describe_folder()
    space = validate_space({**DEFAULT_SPACE, "epochs": sizes.sweep_epochs})
    setups = {"tpe_pruned": SweepSettings(space, sampler="tpe", pruner="median"),
              "random": SweepSettings(space, sampler="random", pruner="none")}
    ctx.log(f"sweeps of {sizes.sweep_trials} trials, default space, {sizes.sweep_epochs} epochs each, on {label}:"
            " TPE + median pruner, then random search without pruning")
    roots = {name: ctx.runs_folder(f"sweep-{name}") for name in setups}
    queues = {name: JobQueue(RunStore(roots[name]), data, workers=1) for name in setups}
    figures: dict[str, Any] = {}
    notes: dict[str, str] = {}
    try:
        for queue in queues.values():
            wait_idle(queue)
        for name, settings in setups.items():
            sweep = start_sweep(open_storage(None, roots[name]), f"bench-{name}", settings,
                                Budget.make(trials=sizes.sweep_trials), data, sampler_seed=SAMPLER_SEED)
            with WorkerCpu(queues[name]) as cpu:
                wall = _run_sweep(sweep, queues[name], parallel=1)
            rows = trials_table(sweep)
            done = [r for r in rows if r["status"] == "completed"]
            if not done:
                raise RuntimeError(f"sweep {sweep.name}: no trial completed")
            store = queues[name].store
            train_s = sum(store.get(r["run_id"]).metrics.get("wall_seconds") or 0.0 for r in rows if r["run_id"])
            epochs = sum(r["epochs"] for r in rows)
            pruned = sum(r["status"] == "pruned" for r in rows)
            best = max(r["val_accuracy"] for r in done)
            figures |= {f"sweep_{name}_best_val": best, f"sweep_{name}_cpu_s": cpu.seconds,
                        f"sweep_{name}_wall_s": wall, f"sweep_{name}_train_s": train_s,
                        f"sweep_{name}_epochs": epochs, f"sweep_{name}_pruned": pruned}
            notes[f"sweep_{name}_cpu_s"] = (f"{len(cpu.pids)} worker process(es); {epochs} epochs trained,"
                                            f" {pruned} of {len(rows)} trials pruned; runs' wall_seconds sum"
                                            f" {train_s:.1f} s; sweep wall {wall:.1f} s")
            ctx.log(f"  {name}: best val {best:.4f}, worker CPU {cpu.seconds:.1f} s, wall {wall:.1f} s,"
                    f" {len(done)} completed / {pruned} pruned, {epochs} epochs")
    finally:
        for queue in queues.values():
            queue.close()
    tpe, rnd = figures["sweep_tpe_pruned_cpu_s"], figures["sweep_random_cpu_s"]
    figures["sweep_compute_saved"] = 1 - tpe / rnd
    lost = figures["sweep_random_best_val"] - figures["sweep_tpe_pruned_best_val"]
    figures["sweep_best_val_loss_points"] = lost * 100
    notes["sweep_compute_saved"] = (f"1 - TPE's worker CPU / random's ({tpe:.1f} s / {rnd:.1f} s); sampler seed"
                                    f" {SAMPLER_SEED}, one trial at a time, one worker")
    ctx.record(figures, label, notes)


def section_sweep_throughput(ctx: Context) -> None:
    """Trials per minute on a private PostgreSQL: one worker of 2 threads against two workers of 1 thread.

    The same short trials (only the seed differs), run_trials with `parallel` = the queue's workers,
    a fresh store per setup; both queues live through the section, started (and, full size, warmed)
    first, and the batches alternate.
    """
    from kmnist_core.jobs import JobQueue
    from kmnist_core.store import RunStore
    from kmnist_core.sweeps import Budget, SweepSettings, open_storage, start_sweep, trials_table

    from .postgres import private_postgres

    _quiet_optuna()
    sizes = ctx.sizes
    data, label = ctx.folder(), ctx.describe_folder()
    settings = SweepSettings(same_cost_space(sizes.sweep_pg_epochs), sampler="random", pruner="none")
    ctx.log(f"sweep throughput on PostgreSQL: batches of {sizes.sweep_pg_trials} trials ([128, 64],"
            f" {sizes.sweep_pg_epochs} epochs) on {label}")
    per_min: dict[int, list[float]] = {1: [], 2: []}
    overheads: list[dict[str, float]] = []
    with private_postgres() as url:
        queues = {w: JobQueue(RunStore(ctx.runs_folder(f"pg-{w}-workers", estimate=w == 1)), data, workers=w)
                  for w in (1, 2)}
        try:
            for queue in queues.values():
                wait_idle(queue)
            threads = {w: q.workers()[0].threads for w, q in queues.items()}
            if sizes.worker_warmup:
                for w, queue in queues.items():
                    run_all(queue, [TINY.replace(seed=900 + i) for i in range(w)])
            for rep in range(sizes.sweep_pg_repeats):
                for w in (1, 2) if rep % 2 == 0 else (2, 1):
                    sweep = start_sweep(open_storage(url, queues[w].store.root), f"throughput-{w}w-{rep}", settings,
                                        Budget.make(trials=sizes.sweep_pg_trials), data,
                                        sampler_seed=SAMPLER_SEED + rep)
                    wall = _run_sweep(sweep, queues[w], parallel=w)
                    if any(r["cached"] for r in trials_table(sweep)):
                        raise RuntimeError(f"sweep {sweep.name}: a trial was answered from the store")
                    per_min[w].append(sizes.sweep_pg_trials / wall * 60)
                    if w == 1:
                        overheads += trial_times(sweep, queues[w].store)
                    ctx.log(f"  {w} worker(s) x {threads[w]} thread(s), batch {rep + 1}: {wall:.1f} s,"
                            f" {per_min[w][-1]:.1f} trials/min")
        finally:
            for queue in queues.values():
                queue.close()
    one, two = median(per_min[1]), median(per_min[2])
    figures = {"sweep_pg_1x2_trials_per_min": one, "sweep_pg_2x1_trials_per_min": two,
               "sweep_pg_2x1_over_1x2": two / one}
    notes = {"sweep_pg_1x2_trials_per_min": f"1 worker x {threads[1]} threads, parallel=1; median of"
                                            f" {len(per_min[1])} batch(es)",
             "sweep_pg_2x1_trials_per_min": f"2 workers x {threads[2]} thread each, parallel=2"}
    if overheads:
        figures["sweep_pg_trial_overhead_s"] = median([t["overhead_s"] for t in overheads])
        notes["sweep_pg_trial_overhead_s"] = "1 worker: " + _describe_overhead(overheads)
    ctx.record(figures, f"{label}, private PostgreSQL on loopback", notes)


def section_sweep_overhead(ctx: Context) -> None:
    """Per trial, its duration in Optuna minus its run's training wall time: storage round-trips, hand-off, save.

    Short identical trials on the default local storage (SQLite in the runs folder), one worker,
    one trial at a time.
    """
    from kmnist_core.jobs import JobQueue
    from kmnist_core.store import RunStore
    from kmnist_core.sweeps import Budget, SweepSettings, open_storage, start_sweep

    _quiet_optuna()
    sizes = ctx.sizes
    data, label = ctx.folder(), ctx.describe_folder()
    root = ctx.runs_folder("sweep-overhead")
    ctx.log(f"overhead per trial: {sizes.overhead_trials} trials ([128, 64], {sizes.overhead_epochs} epoch(s)),"
            f" local storage, on {label}")
    queue = JobQueue(RunStore(root), data, workers=1)
    try:
        wait_idle(queue)
        if sizes.worker_warmup:
            run_all(queue, [TINY.replace(seed=901)])
        settings = SweepSettings(same_cost_space(sizes.overhead_epochs), sampler="random", pruner="none")
        sweep = start_sweep(open_storage(None, root), "bench-overhead", settings,
                            Budget.make(trials=sizes.overhead_trials), data, sampler_seed=SAMPLER_SEED)
        _run_sweep(sweep, queue, parallel=1)
        times = trial_times(sweep, queue.store)
    finally:
        queue.close()
    if not times:
        raise RuntimeError("no trial finished with a training time")
    overhead = [t["overhead_s"] for t in times]
    ctx.log(f"  per trial: overhead {series(overhead, 2)} s; {_describe_overhead(times)}")
    ctx.record({"sweep_trial_overhead_s": median(overhead), "sweep_trial_overhead_max_s": max(overhead)},
               f"{label}, {Path(root).name}/sweeps.db",
               {"sweep_trial_overhead_s": _describe_overhead(times)})
