"""Classic baselines on the real subset: README figures, the run-store cache, the CLI; best-mlp beats 4-NN."""

import io
import json
import re
import time

import numpy as np
import pytest
from helpers import SHARED_SUBSET, SUBSET

from kmnist_core import evaluate
from kmnist_core.baselines import BASELINES, baselines_path, load_or_compute_baselines
from kmnist_core.cli import main
from kmnist_core.config import PRESETS, REFERENCE_PRESETS
from kmnist_core.data import Dataset, load_kmnist
from kmnist_core.store import RunStore

SUBSET_FINGERPRINT = "b25569f31cfceaae"  # kmnist-subset, whose README gives 0.9055 and 0.9335
README_FIGURES = {"knn4": 0.9055, "pca50-knn4": 0.9335}


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    """One run store for the whole module, so later tests can use what earlier ones cached."""
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def computed(runs_dir, data):
    """(results, seconds) of the first, computing call."""
    started = time.perf_counter()
    results = load_or_compute_baselines(RunStore(runs_dir), data)
    return results, time.perf_counter() - started


def _small(data, n_train=1500, n_test=400):
    """A real but smaller dataset: the first images of each split."""
    return Dataset(data.x_train[:n_train], data.y_train[:n_train], data.x_test[:n_test], data.y_test[:n_test],
                   f"first {n_train} of {data.source}")


def test_subset_figures_match_the_readme(computed, runs_dir):
    """The README's figures are kmnist-subset's, whatever KMNIST_DATA_DIR the suite runs on.

    `computed` goes first, so that on the subset this reads its cached results.
    """
    subset = load_kmnist(SHARED_SUBSET)
    assert subset.fingerprint == SUBSET_FINGERPRINT
    results = load_or_compute_baselines(RunStore(runs_dir), subset)
    assert list(results) == list(BASELINES)
    assert {name: round(b.test_accuracy, 4) for name, b in results.items()} == README_FIGURES


def test_results_are_whole(computed, data):
    for b in computed[0].values():
        assert b.test_pred.shape == data.y_test.shape and b.test_proba.shape == (len(data.y_test), 10)
        assert np.allclose(b.test_proba.sum(axis=1), 1) and set(np.unique(b.test_proba * 4)) <= {0, 1, 2, 3, 4}
        assert np.array_equal(b.test_proba.argmax(1), b.test_pred)
        assert b.confusion.shape == (10, 10) and np.trace(b.confusion) / len(data.y_test) == b.test_accuracy
        assert b.test_accuracy == evaluate.accuracy(data.y_test, b.test_pred)
        assert len(b.per_class["f1"]) == 10 and sum(b.per_class["support"]) == len(data.y_test)
        # the Confusion page's cell gallery works on baselines too
        cell = evaluate.cell_indices(data.y_test, b.test_pred, 0, 1)
        assert len(cell) == b.confusion[0, 1]


def test_second_call_reads_the_cache_and_does_not_recompute(computed, runs_dir, data):
    first, compute_s = computed
    path = baselines_path(RunStore(runs_dir), data)
    assert path.parent == runs_dir and path.is_file() and path.with_suffix(".npz").is_file()
    doc = json.loads(path.read_text())
    assert doc["fingerprint"] == data.fingerprint and [b["name"] for b in doc["baselines"]] == list(BASELINES)
    stamps = (path.stat().st_mtime_ns, path.with_suffix(".npz").stat().st_mtime_ns)
    started = time.perf_counter()
    again = load_or_compute_baselines(RunStore(runs_dir), data)  # a new store object, as a new process has
    read_s = time.perf_counter() - started
    assert (path.stat().st_mtime_ns, path.with_suffix(".npz").stat().st_mtime_ns) == stamps  # nothing rewritten
    assert read_s < min(0.5, compute_s / 4), (read_s, compute_s)
    for name, b in first.items():
        assert again[name].test_accuracy == b.test_accuracy
        assert np.array_equal(again[name].test_pred, b.test_pred)
        assert np.array_equal(again[name].test_proba, b.test_proba)
        assert np.array_equal(again[name].confusion, b.confusion) and again[name].per_class == b.per_class
    # the cache files are not runs
    assert RunStore(runs_dir).list_runs() == []


def test_cache_is_per_dataset_and_a_damaged_cache_is_recomputed(tmp_path, data):
    store = RunStore(tmp_path / "new" / "runs")  # the folder does not exist yet
    small = _small(data)
    results = load_or_compute_baselines(store, small)
    path = baselines_path(store, small)
    assert path.name == f"baselines-{small.fingerprint}.json" and small.fingerprint != data.fingerprint
    assert 0.7 < results["knn4"].test_accuracy < 1.0
    for damage in (b"{not json", b'{"version": 1}'):
        path.write_bytes(damage)
        again = load_or_compute_baselines(store, small)
        assert again["pca50-knn4"].test_accuracy == results["pca50-knn4"].test_accuracy
        assert json.loads(path.read_text())["fingerprint"] == small.fingerprint  # rewritten whole
    path.with_suffix(".npz").write_bytes(b"PK\x03\x04 torn")
    assert np.array_equal(load_or_compute_baselines(store, small)["knn4"].test_pred, results["knn4"].test_pred)


def test_unwritable_store_still_gives_baselines(tmp_path, data):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    store = RunStore(tmp_path / "file" / "runs")  # cannot be created: its parent is a file
    results = load_or_compute_baselines(store, _small(data, 600, 100))
    assert set(results) == set(BASELINES)


def test_cli_baselines_prints_both(computed, runs_dir, data):
    code, out, err = run("--data-dir", str(SUBSET), "--runs-dir", str(runs_dir), "baselines")
    assert code == 0, err
    for name, b in computed[0].items():
        line = next(line for line in out.splitlines() if line.startswith(BASELINES[name][0]))
        assert f"test accuracy {b.test_accuracy:.4f}" in line
    if data.fingerprint == SUBSET_FINGERPRINT:
        assert "0.9055" in out and "0.9335" in out


@pytest.mark.slow
def test_best_mlp_beats_4nn_within_budget(computed, runs_dir, data):
    code, out, err = run("--data-dir", str(SUBSET), "--runs-dir", str(runs_dir), "train", "--preset", "best-mlp")
    assert code == 0, err
    info = next(i for i in RunStore(runs_dir).list_runs() if i.config == PRESETS["best-mlp"].config)
    test_accuracy = info.metrics["test_accuracy"]
    assert test_accuracy > computed[0]["knn4"].test_accuracy, test_accuracy  # 0.9055 on the subset
    assert info.metrics["wall_seconds"] < 180
    assert out.splitlines()[-1] == f"test accuracy: {test_accuracy:.4f}"


@pytest.mark.slow
def test_reproduce_prints_reference_best_mlp_and_baseline_rows(computed, runs_dir, data):
    # best-mlp comes from the cache when the test above ran first; the four reference presets train here
    code, out, err = run("--data-dir", str(SUBSET), "--runs-dir", str(runs_dir), "reproduce")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("data: ") and lines[1].split()[:2] == ["preset", "config"]
    rows = lines[3:]
    names = [*REFERENCE_PRESETS, "best-mlp", *(label for label, _ in BASELINES.values())]
    assert len(rows) == len(names) and all(row.startswith(name) for row, name in zip(rows, names, strict=True))
    for row, b in zip(rows[-2:], computed[0].values(), strict=True):
        assert re.search(rf"\s{b.test_accuracy:.4f}\s+-$", row), row
