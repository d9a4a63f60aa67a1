"""The command line: pick the sections, run them (a failure is a result), print the table, write the JSON."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from kmnist_core.data import ENV_DATA_DIR

from .context import FULL, QUICK, REPEAT_FIELDS, Context, Section
from .harness import ROOT, SUBSET
from .report import TARGETS, render, section_keys, status
from .stats import load_avg

RESULTS_FILE = ROOT / "bench-results.json"


@dataclass(frozen=True)
class SectionSpec:
    """A section of the benchmark and what it needs to run."""

    run: str  # "module:function" in this package, imported when the section runs
    folder: bool = False  # needs the data folder
    browser: bool = False  # needs Chromium and a dashboard server
    ui_training: bool = False  # trains through the dashboard: skipped in quick mode
    default: bool = True  # part of a plain `python -m benchmarks`
    quick_skip: str = ""  # why quick mode leaves it out (it still runs small when named with --only)


SECTIONS: dict[str, SectionSpec] = {
    "training": SectionSpec("training:section_training"),
    "stop": SectionSpec("training:section_stop"),
    "short": SectionSpec("training:section_short", folder=True),
    "predict": SectionSpec("predict:section_predict"),
    "cache": SectionSpec("queueing:section_cache", folder=True),
    "workers": SectionSpec("queueing:section_workers", folder=True),
    "engine": SectionSpec("engine:section_engine", folder=True,
                          quick_skip="the old pool and two loopback clusters take minutes"),
    "cold_start": SectionSpec("dashboard:section_cold_start", folder=True, browser=True),
    "server": SectionSpec("dashboard:section_server", folder=True, browser=True, ui_training=True),
    "watched": SectionSpec("watching:section_watched", folder=True, browser=True, ui_training=True),
    "six_tabs": SectionSpec("watching:section_six_tabs", folder=True, browser=True, ui_training=True),
    "sweep_pruning": SectionSpec("sweeping:section_sweep_pruning", folder=True,
                                 quick_skip="two sweeps with their own workers take minutes"),
    "sweep_throughput": SectionSpec("sweeping:section_sweep_throughput", folder=True,
                                    quick_skip="a PostgreSQL cluster and three workers take minutes"),
    "sweep_overhead": SectionSpec("sweeping:section_sweep_overhead", folder=True),
    "store_1000": SectionSpec("filled_store:section_store_1000", folder=True, browser=True,
                              quick_skip="filling a store and timing its pages in Chromium takes minutes"),
    "insight_views": SectionSpec("looking:section_insight_views", folder=True, browser=True,
                                 quick_skip="a trained run and its pages in Chromium take minutes"),
    "live_mode": SectionSpec("live:section_live_mode", folder=True, browser=True,
                             quick_skip="training runs and live mode in Chromium take minutes"),
    "postscriptgc": SectionSpec("watching:section_postscriptgc", folder=True, browser=True, ui_training=True,
                                default=False),
}


def _function(spec: SectionSpec) -> Section:
    import importlib

    module, name = spec.run.split(":")
    return getattr(importlib.import_module(f"benchmarks.{module}"), name)


def _skip_reason(spec: SectionSpec, quick: bool, browser: bool, data_dir: Path | None) -> str:
    """Why a section cannot run here, or "". `quick` is False when the section was named with --only."""
    if spec.folder and data_dir is None:
        return "no data folder (--data-dir or $KMNIST_DATA_DIR)"
    if spec.browser and not browser:
        return "--no-browser"
    if spec.ui_training and quick:
        return "quick mode: needs training runs through the dashboard; name it with --only to run it small"
    if spec.quick_skip and quick:
        return f"quick mode: {spec.quick_skip}; name it with --only to run it small"
    return ""


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300] if text else ''}"


def run(ctx: Context, sections: Sequence[str], quick: bool, browser: bool, named: Sequence[str] = ()) -> dict[str, Any]:
    """Run the sections in order; a section that fails or is skipped leaves its figures None, saying why.

    Quick mode skips the sections that train through the dashboard unless they are `named`.

    Returns:
        The results dict that the JSON file holds.
    """
    errors: dict[str, str] = {}
    skipped: dict[str, str] = {}
    seconds: dict[str, float] = {}
    unmeasured: dict[str, str] = {}  # figure -> SKIPPED or error
    r = ctx.results
    r.update({"quick": quick, "sections": list(sections), "cpus": os.cpu_count(),
              "python": platform.python_version(), "load_avg_start": load_avg(),
              "started": time.strftime("%Y-%m-%d %H:%M:%S")})
    for name in sections:
        spec = SECTIONS[name]
        reason = _skip_reason(spec, quick and name not in named, browser, ctx.data_dir)
        t = time.perf_counter()
        if reason:
            skipped[name] = f"SKIPPED ({reason})"
            ctx.log(f"[{name}] {skipped[name]}")
        else:
            ctx.log(f"[{name}]")
            try:
                _function(spec)(ctx)
            except Exception as e:  # noqa: BLE001 - a failure is a result: say it, go on to the next section
                errors[name] = _one_line(e)
                ctx.log(f"[{name}] ERROR {errors[name]}")
                ctx.log("".join(traceback.format_exception(e)[-6:]).rstrip())
        seconds[name] = time.perf_counter() - t
        for key in section_keys(name):
            if r.get(key) is None:
                r[key] = None
                unmeasured[key] = "SKIPPED" if name in skipped else "error"
                ctx.notes[key] = skipped.get(name) or f"ERROR: {errors.get(name, 'not measured')}"
    r.update({"notes": ctx.notes, "data": ctx.data, "errors": errors, "skipped": skipped,
              "section_seconds": seconds, "load_avg_end": load_avg(),
              "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
    r["status"] = {k: unmeasured.get(k) or status(k, r[k]) for k in TARGETS if k in r}
    return r


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the benchmark, print the table, write the JSON; exit 0 (misses and errors are results, reported)."""
    out = out or sys.stdout
    parser = argparse.ArgumentParser(prog="python -m benchmarks",
                                     description="KMNIST Lab's speed and memory figures beside their targets.")
    parser.add_argument("--quick", action="store_true",
                        help="smallest sizes, for the smoke test (not the targets' conditions); skips the sections"
                             " that train through the dashboard")
    parser.add_argument("--no-browser", action="store_true", help="skip the sections that need Chromium")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help=f"KMNIST folder for the sections on real data and the dashboard (default ${ENV_DATA_DIR},"
                             f" else {SUBSET} if it exists)")
    parser.add_argument("--out", type=Path, default=RESULTS_FILE, help="where to write the JSON results")
    parser.add_argument("--only", nargs="+", choices=list(SECTIONS), metavar="SECTION",
                        help=f"run only these sections, of: {', '.join(SECTIONS)} (postscriptgc runs only when named)")
    parser.add_argument("--repeats", type=int, default=None, metavar="N",
                        help="every section's repeat count (pairs, tabs, runs) set to N: to try a section quickly")
    args = parser.parse_args(argv)
    data_dir = args.data_dir or (Path(os.environ[ENV_DATA_DIR]) if os.environ.get(ENV_DATA_DIR) else None)
    if data_dir is None and SUBSET.is_dir():
        data_dir = SUBSET
    sections = [n for n in SECTIONS if (n in args.only if args.only else SECTIONS[n].default)]
    log_dir = Path(tempfile.gettempdir()) / "kmnist-bench" / time.strftime("%Y%m%d-%H%M%S")
    log_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("KMNIST_LOG_DIR", str(log_dir))  # the training workers' log, beside the servers'
    sizes = QUICK if args.quick else FULL
    if args.repeats is not None:
        sizes = dataclasses.replace(sizes, **dict.fromkeys(REPEAT_FIELDS, max(1, args.repeats)))
    ctx = Context(sizes, data_dir.resolve() if data_dir else None, out, log_dir)
    ctx.log(f"KMNIST Lab benchmark ({'quick: smallest sizes, not the targets conditions' if args.quick else 'full'});"
            f" sections {', '.join(sections)}; {os.cpu_count()} CPUs, load average {load_avg():.2f}; logs in {log_dir}")
    try:
        results = run(ctx, sections, args.quick, not args.no_browser, named=args.only or ())
    finally:
        ctx.close()
    ctx.log("")
    ctx.log(render(results, sections))
    ctx.log(f"load average {results['load_avg_start']:.2f} at start, {results['load_avg_end']:.2f} at end "
            f"(the CPU is shared: figures are medians, ratios come from the same run)")
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    ctx.log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":  # a spawn'd training worker imports this module as __mp_main__: nothing may run then
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    sys.exit(main())
