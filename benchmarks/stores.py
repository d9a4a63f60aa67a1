"""Run stores for the sections: the reference run trained once, copies of a run (a store of 1,000), estimate errors."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kmnist_core.config import PRESETS, TrainConfig

from .queueing import run_all, wait_idle

if TYPE_CHECKING:
    from kmnist_core.data import Dataset

    from .context import Context

# The Train page's default preset (pages/config_form.py's DEFAULT_PRESET; that module imports Streamlit):
# a run of it is what the Train page shows as cached on first paint.
TRAIN_PRESET = "ref-relu-adam"
# Files the Inspect and Draw pages cache in a run folder: a copy leaves them out, so its views compute afresh.
INSIGHT_CACHES = ("embedding-*.npz", "train-hidden.npz")


def new_run_id(when: float) -> str:
    """A run id in the product's format, YYYYMMDD-HHMMSS-xxxxxx, for a run created at `when` (time.time())."""
    return time.strftime("%Y%m%d-%H%M%S", time.localtime(when)) + "-" + secrets.token_hex(3)


def train_reference(ctx: Context) -> tuple[Path, str]:
    """Train the Train page's default preset once through a JobQueue on the data folder.

    Returns:
        (the run's folder, its run id).

    Raises:
        RuntimeError: the run did not complete.
    """
    from kmnist_core.jobs import JobQueue
    from kmnist_core.store import RunStore

    store = RunStore(ctx.runs_folder("reference"))
    queue = JobQueue(store, ctx.folder(), workers=1)
    try:
        wait_idle(queue)
        wall, [run_id] = run_all(queue, [PRESETS[TRAIN_PRESET].config])
    finally:
        queue.close()
    ctx.log(f"  the reference run ({TRAIN_PRESET}, {PRESETS[TRAIN_PRESET].config.describe()}) trained in {wall:.1f} s:"
            f" {run_id}")
    return store.folder(run_id), run_id


def copy_run(src: Path, root: Path, run_id: str | None = None, config: TrainConfig | None = None,
             fingerprint: str | None = None, created: float | None = None, link: bool = False) -> str:
    """Copy a completed run folder into a store, as another run if asked; returns its run id.

    Args:
        src: the run folder.
        root: the store's folder (made if missing).
        run_id: the copy's id; default the original's.
        config: the copy's configuration (config.json's config and key are rewritten; needs fingerprint).
        fingerprint: the dataset fingerprint the key is made of.
        created: config.json's creation time of the copy.
        link: hard-link the binary files (model, predictions, weights, events) instead of copying them.
    """
    run_id = run_id or src.name
    dst = root / run_id
    root.mkdir(parents=True, exist_ok=True)

    def copy_file(a: str, b: str) -> None:
        if link and not a.endswith(".json"):
            os.link(a, b)
        else:
            shutil.copy2(a, b)

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*INSIGHT_CACHES), copy_function=copy_file)
    if config is not None or created is not None:
        meta = json.loads((src / "config.json").read_text())
        if config is not None:
            meta.update(config=config.to_dict(), key=config.key(fingerprint))
        if created is not None:
            meta["created"] = created
        (dst / "config.json").write_text(json.dumps(meta))
    return run_id


def fill_store(src: Path, root: Path, count: int, fingerprint: str) -> list[str]:
    """A store of `count` completed runs: the original and copies differing in their seed (so in their key).

    The copies are dated one second apart before the original, and their binary files are hard links.

    Returns:
        The run ids, the original's first.
    """
    meta = json.loads((src / "config.json").read_text())
    config = TrainConfig.from_dict(meta["config"])
    ids = [copy_run(src, root)]
    now = time.time()
    for i in range(1, count):
        when = now - i
        ids.append(copy_run(src, root, new_run_id(when), config.replace(seed=config.seed + i), fingerprint,
                            created=when, link=True))
    return ids


def estimate_errors(stores: list[Path], data: Dataset) -> list[dict[str, Any]]:
    """The Train page's estimate against each completed run's measured wall time, leave one out.

    Each run's estimate is service.estimate of its config from the other completed runs on this
    data in `stores`, newest first (the estimate itself uses the newest ESTIMATE_RUNS), as the
    Train page would show it with those runs in its store.

    Returns:
        [{run_id, config, predicted_s, measured_s, error_pct}] (error_pct: |predicted - measured| / measured).
    """
    from kmnist_core import service
    from kmnist_core.store import RunStore

    runs = [info for root in stores if root.is_dir() for info in RunStore(root).list_runs()]
    done = [r for r in runs if r.completed and service.same_data(r, data) and len(r.history) >= 2
            and r.metrics.get("wall_seconds")]
    done.sort(key=lambda r: r.created, reverse=True)
    out = []
    for run in done:
        others = [r for r in done if r is not run]
        predicted = service.estimate(run.config, data, others).total_s
        measured = float(run.metrics["wall_seconds"])
        out.append({"run_id": run.run_id, "config": run.config.summary(), "predicted_s": predicted,
                    "measured_s": measured, "error_pct": abs(predicted - measured) / measured * 100})
    return out


def error_figures(errors: list[dict[str, Any]]) -> tuple[float, float]:
    """(median, worst) error in percent."""
    pct = [e["error_pct"] for e in errors]
    return float(statistics.median(pct)), float(max(pct))
