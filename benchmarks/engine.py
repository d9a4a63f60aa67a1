"""The job engine: Dask against the home-made pool it replaced, side by side in one run; two loopback nodes against one.

The pool is the package as it was at POOL_COMMIT (`git archive` into a temp folder): the same
probe script runs in a subprocess on either tree, alternating, so both see the same load.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

from .cluster import DaskNodes
from .context import QUICK, Context
from .harness import ROOT
from .stats import median

POOL_COMMIT = "c12580a"  # the last commit whose kmnist_core trained on its own worker pool
PROBE_TIMEOUT_S = 900.0

# Runs in a subprocess with one tree or the other first on sys.path; prints one JSON line.
PROBE = r"""
import json, sys, time
from kmnist_core.config import TINY
from kmnist_core.data import load_kmnist
from kmnist_core.jobs import JobQueue
from kmnist_core.store import RunStore

def main():
    runs, data_dir, workers, jobs, firsts = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    scheduler = sys.argv[6] if len(sys.argv) > 6 else None
    kwargs = {"scheduler": scheduler} if scheduler else {}
    store = RunStore(runs)
    q = JobQueue(store, load_kmnist(data_dir), workers=workers, **kwargs)
    try:
        want = workers if not scheduler else int(sys.argv[7])
        while not ((ws := q.workers()) and len(ws) >= want and all(w.state == "idle" for w in ws)):
            time.sleep(0.05)
        def run_all(configs):
            t = time.perf_counter()
            ids = [q.submit(c) for c in configs]
            while any(q.progress(i).active for i in ids):
                time.sleep(0.01)
            bad = [q.progress(i) for i in ids if q.progress(i).status != "completed"]
            assert not bad, bad[0].error
            return time.perf_counter() - t, ids
        seed = int(time.time() * 1000) % 100000
        run_all([TINY.replace(seed=seed + i) for i in range(want)])  # every worker traced once
        first, overhead = [], []
        for i in range(firsts):  # one job at a time: submit -> first live point, and time beyond train()
            t = time.perf_counter()
            job = q.submit(TINY.replace(seed=seed + 100 + i, epochs=2))
            point = None
            while (s := q.progress(job)).active:
                if point is None and s.live:
                    point = time.perf_counter() - t
                time.sleep(0.005)
            wall = time.perf_counter() - t
            first.append(point)
            overhead.append(wall - store.get(job).metrics["wall_seconds"])
        wall, _ = run_all([TINY.replace(seed=seed + 1000 + i, hidden_layers=(128, 64), epochs=1)
                           for i in range(jobs)])
        print(json.dumps({"first_point_s": first, "overhead_s": overhead, "jobs_per_min": jobs / wall * 60,
                          "batch_s": wall}), flush=True)
    finally:
        q.close()

if __name__ == "__main__":
    main()
"""


def _pool_tree(dest: Path) -> Path:
    """The package as it was at POOL_COMMIT, extracted under dest."""
    archive = subprocess.run(["git", "archive", POOL_COMMIT, "kmnist_core"], cwd=ROOT, check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def _probe(tree: Path, runs: Path, data: Path, workers: int, jobs: int, firsts: int, script: Path,
           scheduler: str | None = None, nodes: int = 0) -> dict:
    args = [sys.executable, str(script), str(runs), str(data), str(workers), str(jobs), str(firsts)]
    if scheduler:
        args += [scheduler, str(nodes)]
    env = {**os.environ, "PYTHONPATH": str(tree), "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run(args, cwd=tree, env=env, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode or not lines:
        raise RuntimeError(f"the probe on {tree.name} failed ({out.returncode}): {out.stderr[-600:]}")
    return json.loads(lines[-1])


def section_engine(ctx: Context) -> None:
    """Dask (embedded) against the pool, 2 workers x 1 thread each, alternating rounds; then 1 node against 2."""
    data, label, quick = ctx.data_dir, ctx.describe_folder(), ctx.sizes == QUICK
    rounds = 2 if quick else 3
    jobs, firsts = (4, 2) if quick else (12, 5)
    ctx.log(f"job engine: Dask against the pool of {POOL_COMMIT}, 2 workers x 1 thread, {jobs} one-epoch [128, 64]"
            f" jobs and {firsts} single jobs a round, {rounds} rounds on {label}")
    with tempfile.TemporaryDirectory(prefix="kmnist-bench-engine-") as tmp:
        tmp = Path(tmp)
        script = tmp / "probe.py"
        script.write_text(PROBE)
        trees = {"dask": ROOT, "pool": _pool_tree(tmp / "pool")}
        results: dict[str, list[dict]] = {"dask": [], "pool": []}
        for r in range(rounds):
            for name in ("dask", "pool") if r % 2 == 0 else ("pool", "dask"):
                t = time.perf_counter()
                results[name].append(_probe(trees[name], tmp / f"{name}-{r}", data, 2, jobs, firsts, script))
                got = results[name][-1]
                ctx.log(f"  {name}, round {r + 1}: {got['jobs_per_min']:.1f} jobs/min, first point "
                        f"{median(got['first_point_s']):.2f} s, overhead {median(got['overhead_s']):.2f} s "
                        f"({time.perf_counter() - t:.0f} s with start-up)")

        def pooled(name: str, key: str) -> float:
            return median([v for res in results[name] for v in (res[key] if isinstance(res[key], list)
                                                                else [res[key]])])

        figures = {f"{name}_{key}": pooled(name, src) for name in ("dask", "pool")
                   for key, src in (("jobs_per_min", "jobs_per_min"), ("first_point_s", "first_point_s"),
                                    ("job_overhead_s", "overhead_s"))}
        figures["dask_over_pool_jobs"] = figures["dask_jobs_per_min"] / figures["pool_jobs_per_min"]
        node_jobs = 8 if quick else 20
        ctx.log(f"  two loopback nodes against one, 1 thread each: {node_jobs} jobs a batch")
        per_min: dict[int, list[float]] = {1: [], 2: []}
        for r in range(1 if quick else 2):
            for count in (1, 2) if r % 2 == 0 else (2, 1):
                with DaskNodes(tmp / f"nodes-{r}-{count}") as nodes:
                    nodes.start_scheduler()
                    for i in range(count):
                        nodes.add_worker(f"node-{i}", f"127.0.0.{i + 2}")
                    got = _probe(ROOT, tmp / f"nodes-{r}-{count}" / "runs", data, 1, node_jobs, 1, script,
                                 scheduler=nodes.address, nodes=count)
                per_min[count].append(got["jobs_per_min"])
                ctx.log(f"  {count} node(s), round {r + 1}: {got['jobs_per_min']:.1f} jobs/min")
        figures["two_nodes_speedup"] = median(per_min[2]) / median(per_min[1])
    ctx.record(figures, label, {"two_nodes_speedup": f"{node_jobs} tiny jobs; nodes on 127.0.0.2/3, 1 thread each"})
