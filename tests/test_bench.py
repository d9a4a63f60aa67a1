"""The benchmark's smoke test: `python -m benchmarks --quick` measures what it can, says SKIPPED for the rest."""

import json
import math
import subprocess
import sys

import pytest
from helpers import ROOT, SUBSET

from benchmarks import report, training
from kmnist_core.config import train_flops_per_epoch

# Every figure with a target, and those the benchmark reported before the worker processes.
REQUIRED = (
    "server_peak_rss_mib", "worker_peak_rss_mib", "watched_epoch_ratio", "six_tabs_epoch_ratio",
    "six_tabs_new_tab_paint_s", "first_live_point_s", "predict_p50_ms", "predict_p99_ms", "cold_start_added_s",
    "train_b128_epoch_s", "train_b128_fit_tuned_epoch_s", "train_b128_fit_tuned_speedup", "train_b128_bound_ratio",
    "workers_1x2_jobs_per_min", "workers_2x1_jobs_per_min",
    "train_b128_speedup", "train_b128_plain_epoch_s", "train_b32_epoch_s", "train_b32_speedup", "cold_start_s",
    "cold_start_minimal_s", "cache_hit_s", "cache_hit_core_s", "cache_hit_ui_s", "stop_latency_s", "short_run_s",
    "predict_baseline_p50_ms", "matmul_gflops", "train_bound_epoch_s",
)
# They train through the dashboard, which quick mode leaves out.
SKIPPED_WHEN_QUICK = (
    "server_peak_rss_mib", "worker_peak_rss_mib", "first_live_point_s", "cache_hit_ui_s", "watched_epoch_ratio",
    "six_tabs_epoch_ratio", "six_tabs_new_tab_paint_s",
)
SYNTHETIC = ("train_b128_epoch_s", "train_b128_fit_tuned_epoch_s", "train_b32_epoch_s", "train_b128_bound_ratio",
             "stop_latency_s")


def test_flops_of_the_reference_model_match_a_count_by_hand():
    # [128, 64]: 109,184 multiply-adds per sample forward, x2 FLOPs, x3 for forward + backward,
    # x60,000 samples: about 39 GFLOP per epoch
    assert train_flops_per_epoch(training.REFERENCE, 60_000) / 1e9 == pytest.approx(39.3, abs=0.1)


def test_synthetic_data_leaves_the_asked_training_size_after_validation():
    from kmnist_core.data import split_validation

    data = training.synthetic_dataset(6_000)
    train_idx, _ = split_validation(data.y_train, training.REFERENCE.val_fraction, 0)
    assert len(train_idx) == 6_000
    assert data.x_train.dtype == training.np.uint8 and data.x_train.shape[1:] == (28, 28)


def test_the_table_says_pass_miss_skipped_and_error_with_the_reason():
    results = {
        "predict_p50_ms": 4.0, "predict_p99_ms": 25.0, "predict_preprocess_p50_ms": 3.0, "predict_model_p50_ms": 1.0,
        "predict_baseline_p50_ms": 120.0, "data": {"predict_p50_ms": "synthetic 280x280 drawings"},
        "skipped": {"watched": "SKIPPED (quick mode)"}, "errors": {"server": "RuntimeError: run x ended failed"},
    }
    table = report.render(results, ["predict", "server", "watched"])
    lines = {line.split("  ")[0]: line for line in table.splitlines()}
    p50, p99 = lines["draw -> prediction p50"], lines["draw -> prediction p99"]
    rss = lines["server peak RSS (server alone)"]
    assert "pass" in p50 and "synthetic 280x280 drawings" in p50
    assert "MISS" in p99
    assert "error" in rss and "run x ended failed" in rss
    assert "SKIPPED (quick mode)" in lines["epoch time, 2 tabs watching / none"]
    assert not any(line.startswith("cold start") for line in lines)  # a section not run is not in the table


def test_quick_benchmark_measures_every_figure_and_writes_json(tmp_path):
    # In its own process, as a user runs it: the e2e tests' Playwright session in this process
    # would otherwise clash with the benchmark's own (one sync Playwright per asyncio loop).
    path = tmp_path / "bench-results.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--data-dir", str(SUBSET),
                           "--out", str(path)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(path.read_text())
    assert results["errors"] == {}, results["errors"]
    for key in REQUIRED:
        assert key in results, key
        if key in SKIPPED_WHEN_QUICK:
            assert results[key] is None and results["notes"][key].startswith("SKIPPED"), (key, results[key])
        else:
            value = results[key]
            assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, (key, value)
    assert results["progress_max_gap_s"] >= 0  # 0 when the quick run's short epoch had one progress record
    for key in SYNTHETIC:
        assert results["data"][key].startswith("synthetic"), (key, results["data"][key])
    # the same samples in the same order from the same weights: the product does plain fit's math
    assert results["train_b128_same_order_loss_rel_diff"] <= training.SAME_ORDER_TOLERANCE
    assert results["train_b32_same_order_loss_rel_diff"] <= training.SAME_ORDER_TOLERANCE
    assert set(results["status"]) == set(report.TARGETS)
    assert results["status"]["watched_epoch_ratio"] == "SKIPPED"
    text = proc.stdout
    for row in report.ROWS:
        if row.section != "postscriptgc":  # a one-off measurement, run only when named
            assert row.label in text, row.label
    assert "SKIPPED" in text and str(path) in text
