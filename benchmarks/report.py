"""Targets, pass/MISS, and the table printed at the end of a run: each figure beside its target and its data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .training import LOOP_DOC_EPOCH_S, SAME_ORDER_TOLERANCE

# key -> (comparison, target, unit, the part of the tool the target holds to account)
TARGETS: dict[str, tuple[str, float, str, str]] = {
    "server_peak_rss_mib": ("<=", 300.0, "MiB", "the job engine"),
    "dask_over_pool_jobs": (">=", 0.95, "x", "the job engine"),
    "dask_job_overhead_s": ("<=", 0.2, "s", "the job engine"),
    "two_nodes_speedup": (">=", 1.6, "x", "the job engine"),
    "watched_epoch_ratio": ("<=", 1.10, "x", "worker processes"),
    "six_tabs_epoch_ratio": ("<=", 1.25, "x", "worker processes"),
    "six_tabs_new_tab_paint_s": ("<=", 3.5, "s", "worker processes"),
    "first_live_point_s": ("<=", 1.0, "s", "the job engine"),
    "predict_p50_ms": ("<=", 5.0, "ms", "worker processes"),
    "predict_p99_ms": ("<=", 20.0, "ms", "worker processes"),
    "cold_start_added_s": ("<=", 0.3, "s", "worker processes"),
    "train_b128_epoch_s": ("<=", LOOP_DOC_EPOCH_S, "s", "kmnist_core/loop.py's figure"),
    "train_b128_bound_ratio": ("<=", 2.0, "x", "worker processes"),
    "train_b128_speedup": (">=", 2.5, "x", "training speed"),
    "train_b32_speedup": (">=", 2.5, "x", "training speed"),
    "cache_hit_s": ("<=", 0.5, "s", "training speed"),
    "sweep_compute_saved": (">=", 0.40, "share", "sweeps and a full store"),
    "sweep_best_val_loss_points": ("<=", 0.5, "pt", "sweeps and a full store"),
    "sweep_trial_overhead_s": ("<=", 0.5, "s", "sweeps and a full store"),
    "store_1000_compare_paint_s": ("<=", 2.5, "s", "sweeps and a full store"),
    "store_1000_train_paint_s": ("<=", 1.2, "s", "sweeps and a full store"),
    "store_1000_train_rerun_s": ("<=", 0.5, "s", "sweeps and a full store"),
    "inspect_view_max_s": ("<=", 2.0, "s", "look inside"),
    "data_page_paint_s": ("<=", 1.0, "s", "look inside"),
    "evidence_ms": ("<=", 50.0, "ms", "look inside"),
    "tsne_s": ("<=", 30.0, "s", "look inside"),
    "live_first_point_s": ("<=", 1.5, "s", "live mode"),
    "live_burst_jobs": ("==", 1, "", "live mode"),
}

Note = Callable[[dict[str, Any]], str]


@dataclass(frozen=True)
class Row:
    """One line of the table: a figure of one section."""

    label: str
    key: str
    unit: str  # s, ms, x, MiB, /min, % (a percentage), share (a fraction shown as %), acc, pt, or "" for a count
    section: str
    note: Note | str = ""


def _b(b: int) -> list[Row]:
    s = f"train_b{b}"
    rows = [
        Row(f"train b{b}: ours, s/epoch", f"{s}_epoch_s", "s", "training",
            lambda r: f"first epoch {r[f'{s}_first_epoch_s']:.2f} s (traces/compiles); steady epochs, validation"
                      f" included ({'XLA' if r[f'{s}_xla'] else 'no XLA'} for a {r['train_epochs']}-epoch run)"),
    ]
    if b == 128:
        rows += [
            Row("train b128: model.fit tuned, s/epoch", "train_b128_fit_tuned_epoch_s", "s", "training",
                lambda r: f"best of {_variants(r)}: {r['train_b128_fit_tuned_variant']}; build_model, uint8,"
                          " our callback, validation every epoch"),
            Row("train b128: speed-up over fit tuned", "train_b128_fit_tuned_speedup", "x", "training",
                lambda r: f"per steady epoch; a whole run: {r['train_b128_fit_tuned_run_speedup']:.2f}x;"
                          " loop.py keeps the loop while it is >= 1.15x"),
        ]
    rows += [
        Row(f"train b{b}: plain fit, s/epoch", f"{s}_plain_epoch_s", "s", "training",
            lambda r: f"first epoch {r[f'{s}_plain_first_epoch_s']:.2f} s; float32 arrays, default compile,"
                      " no validation (ours validates every epoch)"),
        Row(f"train b{b}: speed-up over plain fit", f"{s}_speedup", "x", "training",
            lambda r: f"per steady epoch; a whole {r['train_epochs']}-epoch run: {r[f'{s}_run_speedup']:.2f}x"),
    ]
    if b == 128:
        rows += [
            Row("train b128: matmul bound, s/epoch", "train_bound_epoch_s", "s", "training",
                lambda r: f"{r['train_flops_per_epoch'] / 1e9:.1f} GFLOP at {r['matmul_gflops']:.0f} GFLOP/s, the"
                          f" best of {r['matmul_samples']} matmul runs (median {r['matmul_gflops_median']:.0f})"),
            Row("train b128: ours / bound", "train_b128_bound_ratio", "x", "training"),
        ]
    return rows


def _variants(r: dict[str, Any]) -> str:
    names = [k[len("train_b128_fit_"):-len("_epoch_s")] for k in r
             if k.startswith("train_b128_fit_spe") and k.endswith("_epoch_s") and r[k] is not None]
    return ", ".join(f"{n} {r[f'train_b128_fit_{n}_epoch_s']:.3f}" for n in names)


ROWS: list[Row] = [
    *_b(128),
    *_b(32),
    Row("Stop -> train() returns", "stop_latency_s", "s", "stop", "set from another thread in epoch 2"),
    Row("progress gap within an epoch", "progress_max_gap_s", "s", "stop", "longest, epoch 2; throttled to 0.1 s"),
    Row("short run: 5 epochs, wall", "short_run_s", "s", "short",
        lambda r: f"fixed {r['short_run_fixed_s']:.2f} s + {r['short_run_epoch_s']:.3f} s/epoch"),
    Row("draw -> prediction p50", "predict_p50_ms", "ms", "predict",
        lambda r: f"preprocess {r['predict_preprocess_p50_ms']:.2f} ms + model {r['predict_model_p50_ms']:.2f} ms;"
                  f" opaque {r['predict_opaque_p50_ms']:.2f}, transparent {r['predict_transparent_p50_ms']:.2f}"),
    Row("draw -> prediction p99", "predict_p99_ms", "ms", "predict",
        lambda r: f"opaque {r['predict_opaque_p99_ms']:.2f}, transparent {r['predict_transparent_p99_ms']:.2f}"),
    Row("  via model.predict p50", "predict_baseline_p50_ms", "ms", "predict",
        lambda r: f"{r['predict_baseline_p50_ms'] / r['predict_p50_ms']:.0f}x slower"),
    Row("cache hit", "cache_hit_s", "s", "cache"),
    Row("cache hit: core path", "cache_hit_core_s", "s", "cache", "fresh JobQueue.submit + stored run + predictions"),
    Row("workers=1 x 2 threads: jobs/min", "workers_1x2_jobs_per_min", "/min", "workers"),
    Row("workers=2 x 1 thread: jobs/min", "workers_2x1_jobs_per_min", "/min", "workers",
        lambda r: f"{r['workers_2x1_over_1x2']:.2f}x the throughput of one worker"),
    Row("engine: Dask, small jobs/min (2 x 1 thread)", "dask_jobs_per_min", "/min", "engine"),
    Row("engine: old pool, small jobs/min (2 x 1 thread)", "pool_jobs_per_min", "/min", "engine",
        "the pool of the last commit that had it, alternating rounds in the same run"),
    Row("engine: Dask over the old pool, jobs/min", "dask_over_pool_jobs", "x", "engine"),
    Row("engine: Dask, submit -> first live point", "dask_first_point_s", "s", "engine", "core level, warm worker"),
    Row("engine: old pool, submit -> first live point", "pool_first_point_s", "s", "engine"),
    Row("engine: Dask, per-job overhead beyond train()", "dask_job_overhead_s", "s", "engine",
        "submit -> ended, less train()'s own wall time"),
    Row("engine: old pool, per-job overhead beyond train()", "pool_job_overhead_s", "s", "engine"),
    Row("engine: two loopback nodes / one", "two_nodes_speedup", "x", "engine"),
    Row("cold start to first page", "cold_start_s", "s", "cold_start"),
    Row("cold start added to Streamlit's floor", "cold_start_added_s", "s", "cold_start"),
    Row("server peak RSS (server alone)", "server_peak_rss_mib", "MiB", "server"),
    Row("worker peak RSS", "worker_peak_rss_mib", "MiB", "server"),
    Row("cache hit in the UI", "cache_hit_ui_s", "s", "server", "click Train on a trained config -> its numbers"),
    Row("click Train -> first live point", "first_live_point_s", "s", "server"),
    Row("epoch time, 2 tabs watching / none", "watched_epoch_ratio", "x", "watched",
        lambda r: f"{r['watched_watched_epoch_s']:.3f} s vs {r['watched_unwatched_epoch_s']:.3f} s per epoch"),
    Row("epoch time, 6 tabs watching / none", "six_tabs_epoch_ratio", "x", "six_tabs",
        lambda r: f"{r['six_tabs_watched_epoch_s']:.3f} s vs {r['six_tabs_unwatched_epoch_s']:.3f} s per epoch"),
    Row("new tab paint while 6 watch", "six_tabs_new_tab_paint_s", "s", "six_tabs"),
    Row("sweep: TPE + median pruner, best val", "sweep_tpe_pruned_best_val", "acc", "sweep_pruning",
        lambda r: f"{r['sweep_tpe_pruned_pruned']} trials pruned, {r['sweep_tpe_pruned_epochs']} epochs trained"),
    Row("sweep: random search, best val", "sweep_random_best_val", "acc", "sweep_pruning",
        lambda r: f"no pruning, {r['sweep_random_epochs']} epochs trained"),
    Row("sweep: TPE + median pruner, CPU", "sweep_tpe_pruned_cpu_s", "s", "sweep_pruning"),
    Row("sweep: random search, CPU", "sweep_random_cpu_s", "s", "sweep_pruning"),
    Row("sweep: compute that pruning saves", "sweep_compute_saved", "share", "sweep_pruning"),
    Row("sweep: best val lost to pruning", "sweep_best_val_loss_points", "pt", "sweep_pruning",
        "random's best minus TPE's, in accuracy points"),
    Row("sweep on PostgreSQL: 1 worker x 2 threads", "sweep_pg_1x2_trials_per_min", "/min", "sweep_throughput"),
    Row("sweep on PostgreSQL: 2 workers x 1 thread", "sweep_pg_2x1_trials_per_min", "/min", "sweep_throughput",
        lambda r: f"{r['sweep_pg_2x1_over_1x2']:.2f}x the trials of one worker"),
    Row("sweep on PostgreSQL: 2x1 over 1x2", "sweep_pg_2x1_over_1x2", "x", "sweep_throughput",
        "stands in for adding a machine"),
    Row("sweep on PostgreSQL: overhead per trial", "sweep_pg_trial_overhead_s", "s", "sweep_throughput"),
    Row("sweep: overhead per trial beyond training", "sweep_trial_overhead_s", "s", "sweep_overhead",
        lambda r: f"Optuna's trial duration minus the run's wall_seconds; worst"
                  f" {r['sweep_trial_overhead_max_s']:.2f} s"),
    Row("1,000 runs: Compare paint", "store_1000_compare_paint_s", "s", "store_1000"),
    Row("1,000 runs: Train paint", "store_1000_train_paint_s", "s", "store_1000"),
    Row("1,000 runs: Train rerun", "store_1000_train_rerun_s", "s", "store_1000"),
    Row("1,000 runs: Train, full page load", "store_1000_train_load_s", "s", "store_1000"),
    Row("1,000 runs: first Compare after start", "store_1000_compare_first_s", "s", "store_1000",
        "the server's first listing of the store (its reads are cached after)"),
    Row("Inspect: slowest view, cached", "inspect_view_max_s", "s", "insight_views",
        lambda r: ", ".join(f"{v} {r[f'inspect_{v}_s']:.2f} s" for v in ("weights", "embedding", "calibration",
                                                                          "mistakes"))),
    Row("Data page paint, cached", "data_page_paint_s", "s", "insight_views"),
    Row("evidence on top of a prediction", "evidence_ms", "ms", "insight_views",
        lambda r: f"the prediction itself {r['evidence_prediction_ms']:.2f} ms"),
    Row("draw -> evidence shown", "draw_evidence_shown_s", "s", "insight_views"),
    Row("Inspect: t-SNE, first computation", "tsne_s", "s", "insight_views",
        lambda r: f"{r['tsne_points']:,} test images, wall clock in-process; cached in the run folder after"),
    Row("Live: widget change -> first live point", "live_first_point_s", "s", "live_mode"),
    Row("Live: jobs a burst of changes starts", "live_burst_jobs", "", "live_mode"),
    Row("estimate error: median", "estimate_error_median_pct", "%", "live_mode",
        lambda r: f"over {r['estimate_runs']} runs"),
    Row("estimate error: worst", "estimate_error_worst_pct", "%", "live_mode"),
    Row("postScriptGC=true: watched ratio", "postscriptgc_true_watched_epoch_ratio", "x", "postscriptgc",
        lambda r: f"unwatched {r['postscriptgc_true_unwatched_epoch_s']:.3f} s/epoch"),
    Row("postScriptGC=false: watched ratio", "postscriptgc_false_watched_epoch_ratio", "x", "postscriptgc",
        lambda r: f"unwatched {r['postscriptgc_false_unwatched_epoch_s']:.3f} s/epoch"),
]


def section_keys(section: str) -> list[str]:
    """The figures of the table that a section produces."""
    return [row.key for row in ROWS if row.section == section]


def status(key: str, value: Any) -> str:
    """pass or MISS against the key's target; "" for a figure without one, "-" for one not measured."""
    if key not in TARGETS:
        return ""
    if value is None:
        return "-"
    op, target, _, _ = TARGETS[key]
    met = {">=": value >= target, "<=": value <= target, "==": value == target}[op]
    return "pass" if met else "MISS"


# How each unit is printed; any other unit (s, ms, pt) gets 3 decimals below 10, else 1.
UNIT_FORMATS = {"x": "{:.2f}x", "MiB": "{:.0f} MiB", "/min": "{:.1f} /min", "share": "{:.0%}", "%": "{:.1f} %",
                "acc": "{:.4f}", "": "{:g}"}


def fmt(value: Any, unit: str) -> str:
    """A figure as the table shows it: 0.412 s, 1.08x, 287 MiB, 41.3 /min."""
    if value is None:
        return "-"
    if unit in UNIT_FORMATS:
        return UNIT_FORMATS[unit].format(value)
    return f"{value:.3f} {unit}" if value < 10 else f"{value:.1f} {unit}"


def _note(row: Row, results: dict[str, Any]) -> str:
    extra = results.get("notes", {}).get(row.key, "")
    try:
        own = row.note(results) if callable(row.note) else row.note
    except (KeyError, TypeError, ZeroDivisionError):  # a figure the note needs was not measured
        own = ""
    return "; ".join(n for n in (extra, own) if n)


def rows(results: dict[str, Any], sections: list[str]) -> list[tuple[str, ...]]:
    """(figure, measured, target, status, data, notes) for every figure of the sections run."""
    out = []
    errors, skipped = results.get("errors", {}), results.get("skipped", {})
    for row in ROWS:
        if row.section not in sections:
            continue
        value = results.get(row.key)
        target = ""
        if row.key in TARGETS:
            op, t, unit, _ = TARGETS[row.key]
            target = f"{op} {fmt(t, unit)}"
        if value is not None:
            state, note = status(row.key, value), _note(row, results)
        elif row.section in skipped:
            state, note = "SKIPPED", skipped[row.section]
        elif row.section in errors:
            state, note = "error", errors[row.section]
        else:
            state, note = "-", "not measured"
        data = results.get("data", {}).get(row.key, "")
        out.append((row.label, fmt(value, row.unit), target, state, data, note))
    for b in (128, 32):
        loss, base = results.get(f"train_b{b}_loss1"), results.get(f"train_b{b}_plain_loss1")
        if "training" in sections and loss is not None and base is not None:
            tol = results[f"train_b{b}_loss_tolerance"]
            diff = results[f"train_b{b}_same_order_loss_rel_diff"]
            data = results["data"].get(f"train_b{b}_loss1", "")
            out.append((f"train b{b}: loss after epoch 1", f"{loss:.4f}", f"= {base:.4f}",
                        "pass" if abs(loss - base) <= tol else "MISS", data,
                        f"plain fit's (medians over seeds); tolerance {tol:.4f}"))
            out.append((f"train b{b}: same order, same init", f"{diff:.1e}", f"<= {SAME_ORDER_TOLERANCE:.0e}",
                        "pass" if diff <= SAME_ORDER_TOLERANCE else "MISS", data,
                        "relative loss difference after epoch 1 against plain fit: the same math"))
    return out


def render(results: dict[str, Any], sections: list[str]) -> str:
    """The table: each figure, its target, pass/MISS (or SKIPPED, error), what data it was measured on, notes."""
    table = rows(results, sections)
    head = ("figure", "measured", "target", "status", "data")
    widths = [max(len(x[i]) for x in [*table, head]) for i in range(len(head))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + "  notes"]
    lines.append("-" * (sum(widths) + 2 * len(widths) + 30))
    for cells in table:
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells[:5], widths, strict=True)) + "  " + cells[5])
    return "\n".join(lines)
