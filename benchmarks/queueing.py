"""Through kmnist_core.jobs.JobQueue: the cache hit of a repeated request, and workers x threads throughput."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from kmnist_core.config import TINY

from .context import Context
from .stats import median
from .training import REFERENCE

IDLE_TIMEOUT_S = 300.0  # a worker imports TensorFlow and loads the data before it takes jobs
JOB_TIMEOUT_S = 600.0


def wait_idle(queue, timeout: float = IDLE_TIMEOUT_S) -> None:
    """Until every worker of the queue has started (imported TensorFlow, loaded the data).

    Raises:
        RuntimeError: a worker failed to start, or none was ready in time.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = queue.workers()
        failed = [w for w in workers if w.state == "failed"]
        if failed:
            raise RuntimeError(f"a training worker could not start: {failed[0].error}")
        if workers and all(w.state == "idle" for w in workers):  # none yet: the engine is still connecting
            return
        time.sleep(0.05)
    raise RuntimeError(f"the training workers were not ready within {timeout:.0f} s")


def run_all(queue, configs) -> tuple[float, list[str]]:
    """Submit every config at once, wait until all have ended; returns the wall time and the run ids.

    Raises:
        RuntimeError: a job did not complete (its status and error in the message).
    """
    t = time.perf_counter()
    ids = [queue.submit(c) for c in configs]
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while any(queue.progress(i).active for i in ids):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(ids)} jobs did not end within {JOB_TIMEOUT_S:.0f} s")
        time.sleep(0.02)
    wall = time.perf_counter() - t
    for i in ids:
        snap = queue.progress(i)
        if snap.status != "completed":
            raise RuntimeError(f"job {i} ended {snap.status}: {snap.error}")
    return wall, ids


def section_cache(ctx: Context) -> None:
    """A repeated identical request in a fresh queue: submit, snapshot, stored run and predictions."""
    from kmnist_core.jobs import JobQueue
    from kmnist_core.store import RunStore

    data, label = ctx.folder(), ctx.describe_folder()
    ctx.log(f"cache hit in the core (one TINY run through the JobQueue on {label}, then repeated requests)")
    with tempfile.TemporaryDirectory(prefix="kmnist-bench-runs-") as tmp:
        store = RunStore(Path(tmp))
        queue = JobQueue(store, data, workers=1)
        try:
            wall, _ = run_all(queue, [TINY])
        finally:
            queue.close()
        ctx.log(f"  the first request trained: {wall:.1f} s (the worker's TensorFlow import included)")
        # A fresh queue, as after a server restart: nothing in memory knows the run. Each repeat takes
        # the same path (submit looks in memory for active jobs only, then in the store).
        fresh = JobQueue(store, data, workers=1)
        times = []
        try:
            for _ in range(ctx.sizes.cache_repeats):
                t = time.perf_counter()
                run_id = fresh.submit(TINY)
                snap = fresh.progress(run_id)
                info = store.get(run_id)
                store.load_predictions(run_id)
                times.append(time.perf_counter() - t)
                if not (snap.cached and info.completed):
                    raise RuntimeError(f"the repeated request was not answered from the store: {snap.status}")
        finally:
            fresh.close()
    ctx.log(f"  core path (fresh JobQueue.submit + stored run + predictions): {median(times) * 1e3:.1f} ms")
    ctx.record({"cache_hit_core_s": median(times), "cache_hit_s": median(times)}, label,
               {"cache_hit_s": "core path: fresh JobQueue.submit + stored run + predictions"})


def section_workers(ctx: Context) -> None:
    """The same batch of short jobs through a JobQueue of 1 worker (all cores) and of 2 (half each), alternating.

    Both queues live through the section, their workers started (and, full size, warmed by one tiny
    job each) first, so the batches time training alone; an idle worker waits on its pipe, costing nothing.
    """
    from kmnist_core.jobs import JobQueue
    from kmnist_core.store import RunStore

    sizes = ctx.sizes
    data, label = ctx.folder(), ctx.describe_folder()
    ctx.log(f"workers x threads: batches of {sizes.worker_jobs} jobs ([128, 64], {sizes.worker_epochs} epochs)"
            f" on {label}")
    per_min: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory(prefix="kmnist-bench-runs-") as tmp:
        t = time.perf_counter()
        queues = {w: JobQueue(RunStore(Path(tmp) / f"workers-{w}"), data, workers=w) for w in (1, 2)}
        try:
            for queue in queues.values():
                wait_idle(queue)
            ctx.log(f"  3 worker processes ready (TensorFlow imported, data loaded) in {time.perf_counter() - t:.1f} s")
            threads = {w: [i.threads for i in q.workers()] for w, q in queues.items()}
            for w, queue in queues.items():  # warm every worker: one tiny job each, at once
                if sizes.worker_warmup:
                    run_all(queue, [TINY.replace(seed=900 + i) for i in range(w)])
            for rep in range(sizes.worker_repeats):
                configs = [REFERENCE.replace(epochs=sizes.worker_epochs, seed=1000 + 10 * rep + j)
                           for j in range(sizes.worker_jobs)]
                for w in (1, 2) if rep % 2 == 0 else (2, 1):
                    wall, _ = run_all(queues[w], configs)
                    per_min[w].append(len(configs) / wall * 60)
                    ctx.log(f"  workers={w} x {threads[w][0]} thread(s), batch {rep + 1}: {wall:.2f} s,"
                            f" {per_min[w][-1]:.1f} jobs/min")
        finally:
            for queue in queues.values():
                queue.close()
    one, two = median(per_min[1]), median(per_min[2])
    ctx.record({"workers_1x2_jobs_per_min": one, "workers_2x1_jobs_per_min": two, "workers_2x1_over_1x2": two / one},
               label, {"workers_1x2_jobs_per_min": f"1 worker x {threads[1][0]} threads",
                       "workers_2x1_jobs_per_min": f"2 workers x {threads[2][0]} thread each"})
