"""Real Keras training on the real KMNIST subset: accuracy, history, determinism, weight decay, cancel."""

import json
import threading

import numpy as np
import pytest
from helpers import wait_done, wait_until

from kmnist_core.config import TINY, TrainConfig, count_params
from kmnist_core.model import build_model, load_model
from kmnist_core.records import EPOCH_KEYS
from kmnist_core.train import predict_proba, train


def test_reference_model_reaches_80_percent_and_stores_every_file(queue, store, data):
    config = TrainConfig((128, 64), "relu", "adam", 0.0, epochs=5)
    job_id = queue.submit(config)
    snap = wait_done(queue, job_id)
    assert snap.status == "completed", snap.error
    info = store.get(job_id)
    assert info.completed and info.metrics["test_accuracy"] >= 0.80
    assert [h["epoch"] for h in info.history] == [1, 2, 3, 4, 5]
    assert all(tuple(h) == EPOCH_KEYS for h in info.history)  # one record shape, records.EpochRecord
    assert json.loads((info.path / "history.json").read_text()) == info.history
    assert info.history[-1]["loss"] < info.history[0]["loss"]
    assert info.metrics["best_val_accuracy"] == max(h["val_accuracy"] for h in info.history)
    cm = np.array(info.metrics["confusion"])
    assert cm.shape == (10, 10) and cm.sum() == len(data.y_test)
    assert np.trace(cm) / cm.sum() == pytest.approx(info.metrics["test_accuracy"])
    assert len(info.metrics["per_class"]["f1"]) == 10
    pred, proba = store.load_predictions(job_id)
    assert pred.shape == (2000,) and proba.shape == (2000, 10)
    assert np.allclose(proba.sum(axis=1), 1, atol=1e-4)
    # the stored model is the best-validation model that produced the stored predictions
    model = load_model(store.model_path(job_id))
    assert np.array_equal(predict_proba(model, data.x_test).argmax(1), pred)
    assert json.loads((info.path / "config.json").read_text())["config"]["hidden_layers"] == [128, 64]


def test_same_config_same_history(data):
    a, b = train(TINY, data), train(TINY, data)
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    assert a.test_accuracy == b.test_accuracy


def test_count_params_matches_keras():
    for config in (TrainConfig((128, 64)), TrainConfig((16, 32, 8), batch_norm=True), TrainConfig((5,))):
        assert count_params(config) == build_model(config).count_params()
    assert count_params(TrainConfig((128, 64))) == 784 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10


def _kernel_norm(model):
    return sum(float(np.sum(w.numpy() ** 2)) for w in model.weights if "kernel" in w.path)


def test_weight_decay_shrinks_weights(data):
    base = TINY.replace(epochs=3)
    plain = train(base, data)
    decayed = train(base.replace(weight_decay=0.01), data)
    assert _kernel_norm(decayed.model) < 0.7 * _kernel_norm(plain.model)


def test_progress_within_epoch_is_throttled_and_epoch_records_are_complete(data):
    records = []
    train(TINY.replace(epochs=3, batch_size=16), data, on_progress=records.append)
    ends = [r for r in records if r["record"] is not None]
    assert [r["epoch"] for r in ends] == [r["record"]["epoch"] for r in ends] == [1, 2, 3]
    assert all(r["record"]["val_accuracy"] is not None and tuple(r["record"]) == EPOCH_KEYS for r in ends)
    elapsed = [r["record"]["elapsed_seconds"] for r in ends]
    assert elapsed == sorted(elapsed) and all(r["record"]["epoch_seconds"] > 0 for r in ends)
    inner = [r for r in records if r["record"] is None]
    assert inner, "no progress within an epoch"
    assert all(0 < r["step"] <= r["steps"] for r in inner)
    times = [r["elapsed_seconds"] for r in inner]
    gaps = np.diff(times)
    assert len(gaps) == 0 or gaps.min() >= 0.09  # at most ~10 reports a second


def test_stop_ends_training_fast_and_keeps_finished_epochs(data):
    stop = threading.Event()
    seen = []

    def on_progress(p):
        seen.append(p)
        if p["record"] is not None and p["epoch"] == 2:
            stop.set()

    result = train(TINY.replace(epochs=50, batch_size=16), data, on_progress=on_progress, stop=stop)
    assert result.status == "cancelled"
    assert len(result.history) == 2
    assert result.test_accuracy is None


def test_cancel_running_job_in_queue(queue, store):
    job_id = queue.submit(TINY.replace(epochs=100, batch_size=16))
    wait_until(lambda: queue.progress(job_id).epoch >= 1)
    assert queue.cancel(job_id)
    snap = wait_done(queue, job_id, timeout=10)
    assert snap.status == "cancelled"
    info = store.get(job_id)
    assert info.status == "cancelled" and len(info.history) < 100
    assert store.find_completed(info.key) is None
