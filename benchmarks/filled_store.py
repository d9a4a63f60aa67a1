"""A store that sweeps have filled: 1,000 runs, and how fast Compare and Train paint on it in Chromium."""

from __future__ import annotations

import time
from typing import Any

from .browsing import TRAIN_BUTTON, nav, timed, wait_painted
from .context import Context
from .stats import median, series
from .stores import TRAIN_PRESET, fill_store

STORE_TIMEOUT_MS = 300_000  # a page of a thousand runs on a loaded machine: generous, bounded
NEW_SEED = 50_000  # a seed no copy has: the Train page's rerun to a configuration without a run


def _train_painted(page: Any) -> None:
    """The Train page with the default preset's stored run shown (its curves drawn)."""
    wait_painted(page, charts=["train_cached_curves"], present=[TRAIN_BUTTON, ".st-key-train_cached_result"],
                 timeout_ms=STORE_TIMEOUT_MS)


def _compare_painted(page: Any) -> None:
    wait_painted(page, frames=1, present=[".st-key-compare_csv"], timeout_ms=STORE_TIMEOUT_MS)


def section_store_1000(ctx: Context) -> None:
    """One real completed run copied into a store of `store_runs` runs (other seeds, so other keys); on it, per round
    in a fresh tab: Train's full load, Train -> Compare, Compare -> Train, and a Train rerun (Seed -> a config
    without a run: the cached panel goes). The first round is not timed: the server's first read of the store."""
    sizes = ctx.sizes
    data = ctx.folder()
    src, run_id = ctx.reference_run()
    server = ctx.server("store-1000", estimate=False)
    t = time.perf_counter()
    ids = fill_store(src, server.runs_dir, sizes.store_runs, data.fingerprint)
    ctx.log(f"a store of {len(ids):,} runs ({TRAIN_PRESET} run {run_id} and copies with other seeds, binary files"
            f" hard-linked) made in {time.perf_counter() - t:.1f} s")
    loads, compares, trains, reruns = [], [], [], []
    first_compare = 0.0
    with server:
        for rep in range(sizes.page_repeats + 1):
            with ctx.tabs(1) as [page]:
                load = timed(lambda page=page: page.goto(server.url), lambda page=page: _train_painted(page))
                compare = timed(lambda page=page: nav(page, "Compare"), lambda page=page: _compare_painted(page))
                train = timed(lambda page=page: nav(page, "Train"), lambda page=page: _train_painted(page))
                page.get_by_text("Advanced", exact=True).click()
                seed = page.get_by_label("Seed", exact=True)
                seed.fill(str(NEW_SEED + rep))
                rerun = timed(lambda seed=seed: seed.press("Enter"),
                              lambda page=page: wait_painted(page, present=[TRAIN_BUTTON],
                                                             absent=[".st-key-train_cached"],
                                                             timeout_ms=STORE_TIMEOUT_MS))
            if rep == 0:
                first_compare = compare
                ctx.log(f"  first round (not timed: the server reads the store): Train load {load:.2f} s, Compare"
                        f" {compare:.2f} s, Train {train:.2f} s, rerun {rerun:.2f} s")
                continue
            for sink, value in ((loads, load), (compares, compare), (trains, train), (reruns, rerun)):
                sink.append(value)
    ctx.log(f"  Train load {series(loads, 2)} s; Train -> Compare {series(compares, 2)} s; Compare -> Train"
            f" {series(trains, 2)} s; Train rerun {series(reruns, 2)} s")
    n = len(compares)
    ctx.record({"store_1000_compare_paint_s": median(compares), "store_1000_train_paint_s": median(trains),
                "store_1000_train_rerun_s": median(reruns), "store_1000_train_load_s": median(loads),
                "store_1000_compare_first_s": first_compare, "store_1000_runs": len(ids)},
               f"{len(ids):,} runs of {ctx.describe_folder()}", {
                   "store_1000_compare_paint_s": f"median of {n}: sidebar Train -> Compare, its table drawn and the"
                                                 " script run ended",
                   "store_1000_train_paint_s": f"median of {n}: sidebar Compare -> Train, the stored run's curves"
                                               " drawn and the script run ended",
                   "store_1000_train_rerun_s": f"median of {n}: Seed changed (Enter) -> the rerun ended with the"
                                               " cached panel gone",
                   "store_1000_train_load_s": f"median of {n}: a new tab's goto -> Train painted as above"})
