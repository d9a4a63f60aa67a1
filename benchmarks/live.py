"""Live mode in Chromium: widget change -> the new configuration's first live point, a burst starts one job; and
the Train page's time estimate against the measured wall time of this benchmark run's trainings."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from kmnist_core.config import TrainConfig

from .context import Context
from .dashboard import LIVE_CHART, configure, open_train
from .harness import RUN_ID, StreamlitServer, plotly_traces, text_of, wait_for
from .queueing import run_all, wait_idle
from .stats import median, series
from .stores import error_figures, estimate_errors

LIVE_EPOCHS = 40  # each live job's length: it is still training when the next change replaces it
FIRST_SEED = 7000
BURST_SEED = 9000
BURST_SPAN_S = 1.8  # the burst's changes are spread over this long (within 2 s)
SETTLE_AFTER_BURST_S = 3.0  # after the burst's job appeared: long enough for the debounce to start another
POINT_TIMEOUT_S = 60.0
# Short runs of varied cost, trained one at a time for the estimate's error (beside the run's other trainings).
ESTIMATE_CONFIGS = (
    TrainConfig((32,), epochs=4, batch_size=256),
    TrainConfig((128, 64), epochs=5),
    TrainConfig((512,), epochs=3, batch_size=64),
    TrainConfig((256, 128), epochs=3),
    TrainConfig((64, 64, 64), epochs=3, batch_size=32),
    TrainConfig((1024, 256), epochs=2, batch_size=256),
)


def _run_config(server: StreamlitServer, run_id: str) -> TrainConfig:
    return TrainConfig.from_dict(json.loads((server.runs_dir / run_id / "config.json").read_text())["config"])


def _status(server: StreamlitServer, run_id: str) -> str:
    try:
        return json.loads((server.runs_dir / run_id / "status.json").read_text())["status"]
    except (OSError, ValueError, KeyError):
        return ""


def _shown_job(page: Any) -> str | None:
    """The run id in the job panel's heading, or None."""
    match = RUN_ID.search(text_of(page, ".st-key-train_job h3"))
    return match.group(0) if match else None


def _points(traces: list[dict[str, Any]], name: str) -> int:
    return sum(len(t.get("x") or []) for t in traces if t.get("name") == name)


def _runs(server: StreamlitServer) -> set[str]:
    if not server.runs_dir.is_dir():
        return set()
    return {p.name for p in server.runs_dir.iterdir() if RUN_ID.fullmatch(p.name)}


def _training_with_history(page: Any, server: StreamlitServer, run_id: str) -> bool:
    """The job panel shows run_id running, with a finished epoch on its chart and most of its epochs ahead."""
    return (_shown_job(page) == run_id and _status(server, run_id) == "running"
            and 0 < _points(plotly_traces(page, LIVE_CHART), "train loss") <= LIVE_EPOCHS // 2)


def _change_seed(page: Any, value: int) -> float:
    """Type a seed and press Enter; returns perf_counter() just before Enter (the change)."""
    box = page.get_by_label("Seed", exact=True)
    box.fill(str(value))
    t = time.perf_counter()
    box.press("Enter")
    return t


def _first_point(page: Any, server: StreamlitServer, old: str, seed: int) -> tuple[float, str, str]:
    """Change the seed while `old` trains; seconds until the new configuration's first point is on the chart.

    The new job's chart is told from the old one by its faded curve of the old configuration ("before: ...").
    """
    before = f"before: {_run_config(server, old).summary()} (val loss)"
    t = _change_seed(page, seed)
    deadline = t + POINT_TIMEOUT_S
    while True:
        traces = plotly_traces(page, LIVE_CHART)
        if any(tr.get("name") == before for tr in traces) and (
                _points(traces, "train loss (within epoch)") or _points(traces, "train loss")):
            first = time.perf_counter() - t
            break
        if time.perf_counter() > deadline:
            raise RuntimeError(f"no live point of the seed {seed} configuration within {POINT_TIMEOUT_S:.0f} s")
        time.sleep(0.02)
    new = wait_for(lambda: (job := _shown_job(page)) != old and job, 30, 0.05, "the new job's run id")
    if _run_config(server, new).seed != seed:
        raise RuntimeError(f"the job panel shows run {new}, not the seed {seed} configuration")
    ended = wait_for(lambda: (status := _status(server, old)) in ("cancelled", "completed") and status, 30, 0.1,
                     f"the replaced run {old} ending")
    return first, new, ended


def _burst(ctx: Context, page: Any, server: StreamlitServer, old: str) -> dict[str, Any]:
    """`live_burst` seed changes spread over BURST_SPAN_S while `old` trains; the runs that burst created."""
    count = ctx.sizes.live_burst
    existing = _runs(server)
    start = time.perf_counter()
    for i in range(count):
        _change_seed(page, BURST_SEED + i)
        time.sleep(max(0.0, start + (i + 1) * BURST_SPAN_S / count - time.perf_counter()))
    span = time.perf_counter() - start
    wait_for(lambda: _runs(server) - existing, 30, 0.1, "a job started by the burst")
    time.sleep(SETTLE_AFTER_BURST_S)
    created = sorted(_runs(server) - existing)
    seeds = [_run_config(server, r).seed for r in created]
    ctx.log(f"  a burst of {count} seed changes in {span:.2f} s started {len(created)} job(s), seed(s)"
            f" {', '.join(map(str, seeds))} (the last change: {BURST_SEED + count - 1}); the job before reads"
            f" {_status(server, old)}")
    return {"live_burst_jobs": len(created), "live_burst_span_s": span,
            "live_burst_last_seed_started": float(seeds == [BURST_SEED + count - 1])}


def _estimate_runs(ctx: Context) -> None:
    """Train ESTIMATE_CONFIGS one at a time through a JobQueue into a store the estimate's error counts."""
    from kmnist_core.jobs import JobQueue
    from kmnist_core.store import RunStore

    configs = ESTIMATE_CONFIGS[: ctx.sizes.estimate_configs]
    queue = JobQueue(RunStore(ctx.runs_folder("estimate")), ctx.folder(), workers=1)
    try:
        wait_idle(queue)
        walls = [run_all(queue, [config])[0] for config in configs]
    finally:
        queue.close()
    ctx.log(f"  {len(configs)} runs of varied cost for the estimate: {series(walls, 1)} s")


def section_live_mode(ctx: Context) -> None:
    """Live mode on the Train page, on a warm worker with the previous live job training: a seed change -> the new
    configuration's first live point (debounce, replacement and the panel's polling included), and a burst of
    changes -> jobs started; then the estimate's error over the completed runs of this benchmark run."""
    sizes = ctx.sizes
    data, label = ctx.folder(), ctx.describe_folder()
    ctx.log(f"live mode ([128, 64] relu Adam wd 0.0005, {LIVE_EPOCHS}-epoch live jobs) and the estimate, on {label}")
    _estimate_runs(ctx)
    firsts: list[float] = []
    ends: list[str] = []
    with ctx.server("live") as server, ctx.tabs(1) as [page]:
        open_train(page, server)
        configure(page, epochs=LIVE_EPOCHS, seed=FIRST_SEED)
        page.locator(".st-key-train_live").get_by_text("Live", exact=True).click()
        job = wait_for(lambda: _shown_job(page), 60, 0.1, "the first live job")
        for rep in range(sizes.live_mode_repeats):
            wait_for(lambda job=job: _training_with_history(page, server, job), 120, 0.1,
                     f"live job {job} training, an epoch on its chart")
            first, job, ended = _first_point(page, server, job, FIRST_SEED + 1 + rep)
            firsts.append(first)
            ends.append(ended)
        ctx.log(f"  seed changed -> the new configuration's first live point: {series(firsts, 2)} s; the jobs"
                f" replaced: {', '.join(ends)}")
        wait_for(lambda: _training_with_history(page, server, job), 120, 0.1, f"live job {job} training")
        burst = _burst(ctx, page, server, job)
    errors = estimate_errors(ctx.estimate_stores, data)
    if not errors:
        raise RuntimeError("no completed run of 2+ epochs to compare the estimate with")
    mid, worst = error_figures(errors)
    bad = max(errors, key=lambda e: e["error_pct"])
    ctx.log(f"  estimate vs measured wall time over {len(errors)} runs: median {mid:.0f} %, worst {worst:.0f} %"
            f" ({bad['config']}: {bad['predicted_s']:.1f} s predicted, {bad['measured_s']:.1f} s measured)")
    stores = [Path(s).name for s in ctx.estimate_stores if Path(s).is_dir()]
    ctx.record({"live_first_point_s": median(firsts), **burst, "estimate_error_median_pct": mid,
                "estimate_error_worst_pct": worst, "estimate_runs": len(errors)}, label, {
        "live_first_point_s": f"median of {len(firsts)}: Seed + Enter with Live on -> a point of the new"
                              " configuration on the job panel's chart (debounce, the stop of the running job and"
                              f" the panel's 1 s polling included); {ends.count('cancelled')} of {len(ends)}"
                              " replaced jobs were stopped while training",
        "live_burst_jobs": f"run folders the burst created; {burst['live_burst_span_s']:.2f} s from the first change"
                           " to the last",
        "estimate_error_median_pct": "service.estimate from the other completed runs (leave one out) against"
                                     " metrics.json wall_seconds; runs of: " + ", ".join(stores),
        "estimate_error_worst_pct": f"{bad['config']}: {bad['predicted_s']:.1f} s predicted,"
                                    f" {bad['measured_s']:.1f} s measured"})
