"""The bench's smoke test: `--quick` runs every section at its smallest size and writes its JSON."""

import json
import math
import subprocess
import sys

import pytest
from helpers import ROOT, SUBSET

from kmnist_core import bench

REQUIRED = (
    "train_b128_epoch_s", "train_b128_speedup", "train_b128_bound_ratio", "train_b32_epoch_s", "train_b32_speedup",
    "predict_p50_ms", "predict_p99_ms", "cold_start_s", "server_peak_rss_mib", "cache_hit_s",
)
SKIPPED_WHEN_QUICK = ("server_peak_rss_mib",)  # needs a whole training run in the dashboard


def test_flops_of_the_reference_model_match_the_issue():
    # issue 5: "about 39 GFLOP per epoch" for [128, 64] on 60,000 samples
    assert bench.train_flops_per_epoch(bench.REFERENCE, 60_000) / 1e9 == pytest.approx(39.3, abs=0.1)


def test_synthetic_data_leaves_the_asked_training_size_after_validation():
    from kmnist_core.data import split_validation

    data = bench.synthetic_dataset(6_000)
    train_idx, _ = split_validation(data.y_train, bench.REFERENCE.val_fraction, 0)
    assert len(train_idx) == 6_000
    assert data.x_train.dtype == bench.np.uint8 and data.x_train.shape[1:] == (28, 28)


def test_quick_bench_measures_every_figure_and_writes_json(tmp_path):
    # In its own process, as a user runs it: the e2e tests' Playwright session in this process
    # would otherwise clash with the bench's own (one sync Playwright per asyncio loop).
    path = tmp_path / "bench-results.json"
    proc = subprocess.run([sys.executable, "-m", "kmnist_core.bench", "--quick", "--data-dir", str(SUBSET),
                           "--out", str(path)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(path.read_text())
    for key in REQUIRED:
        assert key in results
        if key in SKIPPED_WHEN_QUICK:
            assert results[key] is None and results["notes"][key].startswith("SKIPPED")
        else:
            value = results[key]
            assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, (key, value)
    # the same samples in the same order from the same weights: the product does plain fit's math
    assert results["train_b128_same_order_loss_rel_diff"] <= bench.SAME_ORDER_TOLERANCE
    assert results["train_b32_same_order_loss_rel_diff"] <= bench.SAME_ORDER_TOLERANCE
    assert set(results["status"]) == set(bench.TARGETS)
    text = proc.stdout
    for label in ("train b128: speed-up", "train b32: speed-up", "ours / bound", "draw -> prediction p99",
                  "cold start", "server peak RSS", "SKIPPED", "cache hit", str(path)):
        assert label in text
