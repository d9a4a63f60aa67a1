"""The dashboard in headless Chromium: cold start, server and worker memory, cache hit and first live point."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from .context import Context
from .harness import (
    StreamlitServer,
    count_points,
    draw_strokes,
    enter_number,
    go_to,
    plotly_traces,
    shown_run_id,
    submit_training,
)
from .stats import median, series

# The page's own title: the first page is rendered (the sidebar's title comes earlier).
FIRST_RENDER = '[data-testid="stMain"] h1'
TRAIN_BUTTON = ".st-key-train_submit button"
TRAIN_RESULT = ".st-key-train_result"  # a finished run's numbers on the Train page
CACHED_PANEL = ".st-key-train_cached"  # the stored result a trained config shows before any click
CACHED_JOB = ".st-key-train_job .st-key-train_result"  # ... and after clicking Train on it
PREDICTION = ".st-key-prediction"  # the Draw page's predicted class
LIVE_CHART = "train_curves"  # the key of the job panel's plotly chart
# Streamlit's floor for the cold start: the smallest page, served the same way as ours.
MINIMAL_PAGE = 'import streamlit as st\n\nst.title("KMNIST Lab")\n'
RUN_TIMEOUT_S = 600.0
PAGE_TIMEOUT_MS = 120_000


# --- the Train page, as a user drives it ---


def open_train(page: Any, server: StreamlitServer) -> None:
    """Open the server's first page (Train) and wait until its Train button shows."""
    page.goto(server.url)
    page.wait_for_selector(TRAIN_BUTTON, state="visible", timeout=PAGE_TIMEOUT_MS)


def configure(page: Any, epochs: int, seed: int) -> None:
    """On the Train page: the default preset ([128, 64] relu Adam, batch 128) with these epochs and seed."""
    if not page.get_by_label("Epochs", exact=True).is_visible():
        page.get_by_text("Advanced", exact=True).click()
    enter_number(page, "Epochs", epochs)
    enter_number(page, "Seed", seed)


def click_train(page: Any, run_id: str | None = None) -> str:
    """Press Train; returns the run id the job panel shows, which must be run_id when one is given.

    A second session pressing Train on a config that is training gets that same job: it watches it.
    """
    shown = submit_training(page)
    if run_id is not None and shown != run_id:
        raise RuntimeError(f"a watching session got run {shown}, not the run {run_id} being watched")
    return shown


def run_status(server: StreamlitServer, run_id: str) -> tuple[str, str]:
    """(status, reason) of a run as its status.json says on disk."""
    record = json.loads((server.runs_dir / run_id / "status.json").read_text())
    return record["status"], record.get("reason", "")


def wait_run(server: StreamlitServer, run_id: str, timeout: float = RUN_TIMEOUT_S) -> None:
    """Wait until the run has ended on disk.

    Raises:
        RuntimeError: it ended other than completed, or did not end in time.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, reason = run_status(server, run_id)
        if status == "completed":
            return
        if status not in ("queued", "running"):
            raise RuntimeError(f"run {run_id} ended {status}: {reason}")
        time.sleep(0.1)
    raise RuntimeError(f"run {run_id} did not end within {timeout:.0f} s")


def epoch_seconds(server: StreamlitServer, run_id: str) -> list[float]:
    """The epoch times of a stored run, from its history.json."""
    return [r["epoch_seconds"] for r in json.loads((server.runs_dir / run_id / "history.json").read_text())]


# --- sections ---


def _cold_start(ctx: Context, script: str | Path = "dashboard.py") -> float:
    """Seconds from spawning the server to the page title visible in a fresh browser context."""
    with ctx.tabs(1) as [page]:  # the browser is open before the server starts, as a user's is
        with ctx.server("cold-start", script) as server:
            page.goto(server.url)
            page.wait_for_selector(FIRST_RENDER, state="visible", timeout=60_000)
            return time.monotonic() - server.started_at


def section_cold_start(ctx: Context) -> None:
    """Ours (`streamlit run dashboard.py` -> the first page's title) alternating with a minimal Streamlit page.

    The minimal page is Streamlit's floor on this machine at this moment, measured the same way
    (same config, same browser); the difference is what our app adds.
    """
    repeats = ctx.sizes.cold_repeats
    ctx.log(f"cold start: ours and a minimal Streamlit page, alternating, {repeats} pair(s) (logs: {ctx.log_dir})")
    ours, floor = [], []
    with tempfile.TemporaryDirectory(prefix="kmnist-bench-minimal-") as tmp:
        minimal = Path(tmp) / "minimal.py"
        minimal.write_text(MINIMAL_PAGE)
        for rep in range(repeats):
            pair = [("ours", "dashboard.py", ours), ("minimal", minimal, floor)]
            for _, script, sink in pair if rep % 2 == 0 else pair[::-1]:
                sink.append(_cold_start(ctx, script))
            ctx.log(f"  cold start {rep + 1}: ours {ours[-1]:.2f} s, minimal Streamlit page {floor[-1]:.2f} s")
    added = median([a - b for a, b in zip(ours, floor, strict=True)])
    ctx.record({"cold_start_s": median(ours), "cold_start_minimal_s": median(floor), "cold_start_added_s": added},
               ctx.describe_folder(), {
                   "cold_start_s": f"median of {repeats}: streamlit run -> the page title visible",
                   "cold_start_added_s": f"ours minus a minimal Streamlit page measured alternately"
                                         f" ({median(floor):.2f} s), median of the paired differences"})


def _first_live_point(ctx: Context, page: Any, server: StreamlitServer, seed: int) -> float:
    """Click Train on a new config in a fresh session -> the first point on the live chart; the run then ends."""
    page.reload()  # a new session: no chart of an earlier run on the page, whatever is read is this run's
    page.wait_for_selector(TRAIN_BUTTON, state="visible", timeout=PAGE_TIMEOUT_MS)
    configure(page, epochs=3, seed=seed)
    page.click(TRAIN_BUTTON, trial=True)  # wait until it takes a click: the figure is the request, not the settling
    t = time.perf_counter()
    page.click(TRAIN_BUTTON)
    deadline = t + 60
    while count_points(plotly_traces(page, LIVE_CHART), "loss") == 0:
        if time.perf_counter() > deadline:
            raise RuntimeError("no live point on the chart within 60 s of clicking Train")
        time.sleep(0.02)
    first = time.perf_counter() - t
    wait_run(server, shown_run_id(page))  # let it end before the next one
    return first


def section_server(ctx: Context) -> None:
    """One server's life: data loaded, one training through the UI watched by two sessions, the cache hit in
    the UI, click Train -> first live point on a warm worker, a drawing on the Draw page; then peak memory."""
    sizes = ctx.sizes
    ctx.log(f"dashboard session scenario (server log in {ctx.log_dir})")
    with ctx.server("server") as server, ctx.tabs(2) as (first, second):
        for page in (first, second):
            open_train(page, server)
        t = time.perf_counter()
        run_id = click_train(first)
        click_train(second, run_id)  # the same config: the second session watches the same job
        wait_run(server, run_id)
        first.wait_for_selector(TRAIN_RESULT, state="visible", timeout=PAGE_TIMEOUT_MS)
        ctx.log(f"  one run with the Train page's defaults, two sessions watching: {time.perf_counter() - t:.1f} s")

        hits = []
        for _ in range(sizes.ui_cache_repeats):
            second.reload()
            second.wait_for_selector(CACHED_PANEL, state="visible", timeout=PAGE_TIMEOUT_MS)
            second.click(TRAIN_BUTTON, trial=True)
            t = time.perf_counter()
            second.click(TRAIN_BUTTON)
            second.wait_for_selector(CACHED_JOB, state="visible", timeout=60_000)
            hits.append(time.perf_counter() - t)
        ctx.log(f"  cache hit in the UI (click Train on a trained config -> its stored result): {series(hits, 2)} s")
        ctx.record({"cache_hit_ui_s": median(hits), "cache_hit_s": median(hits)}, ctx.describe_folder(),
                   {"cache_hit_s": "UI: click Train on a trained config -> its stored result shown"})

        lives = [_first_live_point(ctx, first, server, seed=500 + rep) for rep in range(sizes.live_repeats)]
        ctx.log(f"  click Train -> first live point, warm worker, 3-epoch runs: {series(lives, 2)} s")
        ctx.record({"first_live_point_s": median(lives)}, ctx.describe_folder(),
                   {"first_live_point_s": f"median of {len(lives)}; the worker had trained already"})

        go_to(second, "Draw")
        t = time.perf_counter()
        draw_strokes(second)
        second.wait_for_selector(PREDICTION, state="visible", timeout=60_000)
        ctx.log(f"  a drawing on the Draw page -> its prediction shown: {time.perf_counter() - t:.2f} s")

        server_mib = server.peak_rss_mib()
        workers = server.worker_peak_rss_mib()
        if not workers:
            raise RuntimeError("the server has no worker process to measure")
        ctx.log(f"  peak RSS: server {server_mib:.0f} MiB; workers "
                + ", ".join(f"{pid}: {mib:.0f} MiB" for pid, mib in workers.items()))
        ctx.record({"server_peak_rss_mib": server_mib, "worker_peak_rss_mib": max(workers.values()),
                    "worker_count": len(workers)}, ctx.describe_folder(), {
                        "server_peak_rss_mib": "VmHWM of the server alone: data, runs through the UI,"
                                               " two sessions, a drawing",
                        "worker_peak_rss_mib": f"VmHWM of the largest of {len(workers)} worker process(es)"})
