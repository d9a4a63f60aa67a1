"""Training while browser tabs watch its live curves: epoch-time ratios to nobody watching, a new tab's paint."""

from __future__ import annotations

import time
from typing import Any

from .context import Context
from .dashboard import (
    FIRST_RENDER,
    LIVE_CHART,
    PAGE_TIMEOUT_MS,
    click_train,
    configure,
    epoch_seconds,
    open_train,
    run_status,
    wait_run,
)
from .harness import StreamlitServer, count_points, plotly_traces, wait_for
from .stats import median, series, steady

PAINT_AFTER_S = 1.0  # the new tab opens this long after the last watcher joined


def _watched_run(ctx: Context, server: StreamlitServer, tabs: int, epochs: int, seed: int,
                 paints: list[float] | None = None) -> list[float]:
    """One run submitted from `tabs` sessions, all showing its live curves until it ends; its epoch times.

    With `paints`, new tabs open one after another while it trains, and each one's time to its
    painted Train page title is appended (only those that painted while the run was still training).
    """
    with ctx.tabs(tabs) as pages:
        for page in pages:
            open_train(page, server)
            configure(page, epochs, seed)
        run_id = click_train(pages[0])
        for page in pages[1:]:
            click_train(page, run_id)
        if paints is not None:
            time.sleep(PAINT_AFTER_S)
            for _ in range(ctx.sizes.paint_tabs):
                painted = _new_tab_paint(pages[0].context, server)
                if run_status(server, run_id)[0] != "running":
                    break  # it painted, at least partly, with nothing training: not the figure asked for
                paints.append(painted)
        wait_run(server, run_id)
        for i, page in enumerate(pages, start=1):  # each was on the run's live chart (it may be redrawing: wait)
            try:
                wait_for(lambda page=page: count_points(plotly_traces(page, LIVE_CHART), "loss"), 30, 0.2)
            except AssertionError:
                shot = ctx.log_dir / f"{run_id}-tab{i}.png"
                page.screenshot(path=str(shot), full_page=True)
                raise RuntimeError(f"watching tab {i} of {tabs} shows no curve of run {run_id} (see {shot})") from None
    return epoch_seconds(server, run_id)


def _new_tab_paint(browser_context: Any, server: StreamlitServer) -> float:
    """A new tab opening the dashboard -> the Train page's title painted, in seconds.

    The tab opens in a watcher's browser context, as a user's new tab shares the browser's
    cache; it is a Streamlit session of its own all the same (one per page connection).
    """
    page = browser_context.new_page()
    try:
        t = time.perf_counter()
        page.goto(server.url)
        page.wait_for_selector(FIRST_RENDER, state="visible", timeout=PAGE_TIMEOUT_MS)
        return time.perf_counter() - t
    finally:
        page.close()


def _unwatched_run(ctx: Context, server: StreamlitServer, epochs: int, seed: int) -> list[float]:
    """One run submitted through the UI from a tab that then leaves for about:blank: nobody watches it."""
    with ctx.tabs(1) as [page]:
        open_train(page, server)
        configure(page, epochs, seed)
        run_id = click_train(page)
        page.goto("about:blank")
        wait_run(server, run_id)
    return epoch_seconds(server, run_id)


def _pair(ctx: Context, server: StreamlitServer, tabs: int, rep: int, seed: int) -> tuple[float, float]:
    """A watched run and an unwatched one of the same config (seeds differ), in alternating order.

    Returns:
        (steady epoch time watched, the same unwatched).
    """
    epochs = ctx.sizes.watch_epochs
    order = ("watched", "unwatched") if rep % 2 == 0 else ("unwatched", "watched")
    steady_s: dict[str, float] = {}
    for kind in order:
        if kind == "watched":
            seconds = _watched_run(ctx, server, tabs, epochs, seed)
        else:
            seconds = _unwatched_run(ctx, server, epochs, seed + 1)
        steady_s[kind] = steady(seconds)
        ctx.log(f"  {tabs} tab(s), pair {rep + 1}, {kind:9s}: steady epoch {steady_s[kind]:.3f} s"
                f" (epochs 1-3: {series(seconds[:3])} s)")
    return steady_s["watched"], steady_s["unwatched"]


def _ratio(pairs: list[tuple[float, float]]) -> float:
    """The median over pairs of watched / unwatched."""
    return median([w / u for w, u in pairs])


def _watch_figures(ctx: Context, server: StreamlitServer, tabs: int, prefix: str, seed: int) -> dict[str, Any]:
    pairs = [_pair(ctx, server, tabs, rep, seed + 10 * rep) for rep in range(ctx.sizes.watch_repeats)]
    return {f"{prefix}_epoch_ratio": _ratio(pairs), f"{prefix}_watched_epoch_s": median([w for w, _ in pairs]),
            f"{prefix}_unwatched_epoch_s": median([u for _, u in pairs])}


def _describe_runs(ctx: Context) -> str:
    return (f"[128, 64] relu Adam, batch 128, {ctx.sizes.watch_epochs} epochs; median over"
            f" {ctx.sizes.watch_repeats} pair(s) of steady-epoch ratios, order alternating")


def section_watched(ctx: Context) -> None:
    """Two tabs watching a run's live curves against nobody watching the same config."""
    ctx.log("watched training: two tabs watching its live curves vs nobody watching")
    with ctx.server("watched") as server:
        figures = _watch_figures(ctx, server, 2, "watched", seed=2000)
    ctx.record(figures, ctx.describe_folder(), {"watched_epoch_ratio": _describe_runs(ctx)})


def section_six_tabs(ctx: Context) -> None:
    """Six tabs watching one run against nobody watching; then a new tab's paint while six watch."""
    ctx.log("six tabs watching one training vs nobody watching; a new tab's first paint meanwhile")
    with ctx.server("six-tabs") as server:
        ctx.record(_watch_figures(ctx, server, 6, "six_tabs", seed=3000), ctx.describe_folder(),
                   {"six_tabs_epoch_ratio": _describe_runs(ctx)})
        paints: list[float] = []
        for rep in range(ctx.sizes.watch_repeats):
            epochs = min(200, 3 * ctx.sizes.watch_epochs)  # long enough to outlast the new tabs
            _watched_run(ctx, server, 6, epochs, seed=3500 + rep, paints=paints)
            if len(paints) >= ctx.sizes.paint_tabs:
                break
        if not paints:
            raise RuntimeError("the run ended before a new tab painted: no paint measured while six tabs watched")
        ctx.log(f"  a new tab while six watch -> the Train page's title painted: {series(paints, 2)} s")
    ctx.record({"six_tabs_new_tab_paint_s": median(paints)}, ctx.describe_folder(), {
        "six_tabs_new_tab_paint_s": f"median of {len(paints)}: goto -> h1 visible, a new tab beside a watcher"})


def section_postscriptgc(ctx: Context) -> None:
    """A config decision, not a target: the watched-epoch ratio with runner.postScriptGC true and false.

    Both servers run at once (each with its own idle worker), and the pairs alternate between them.
    """
    ctx.log("runner.postScriptGC true vs false: the watched-epoch ratio (two tabs) on each")
    with ctx.server("gc-true", options=("--runner.postScriptGC", "true")) as on, \
            ctx.server("gc-false", options=("--runner.postScriptGC", "false")) as off:
        pairs: dict[str, list[tuple[float, float]]] = {"true": [], "false": []}
        servers = [("true", on), ("false", off)]
        for rep in range(ctx.sizes.watch_repeats):
            for name, server in servers if rep % 2 == 0 else servers[::-1]:
                ctx.log(f"  postScriptGC={name}:")
                pairs[name].append(_pair(ctx, server, 2, rep, seed=4000 + 10 * rep))
    ctx.record({f"postscriptgc_{name}_watched_epoch_ratio": _ratio(p) for name, p in pairs.items()}
               | {f"postscriptgc_{name}_unwatched_epoch_s": median([u for _, u in p]) for name, p in pairs.items()},
               ctx.describe_folder(), {"postscriptgc_true_watched_epoch_ratio": _describe_runs(ctx)})
