"""train(config, data, on_progress, stop): one Keras fit with one callback for progress and Stop."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import evaluate
from .config import TrainConfig
from .data import Dataset, split_validation
from .model import build_model, make_loss, make_optimizer

# Measured on this 2-core machine for [128, 64] at batch 128 on 60k samples: plain fit
# 1.3 s/epoch, steps_per_execution=16 0.8 s, plus jit_compile 0.63 s; but XLA compiles for
# about 5 s per run, which costs more than it saves on short runs (see bench).
STEPS_PER_EXECUTION = 16
JIT_COMPILE = False
PROGRESS_INTERVAL_S = 0.1  # within-epoch progress at most ~10 times a second

Progress = dict[str, Any]
"""One progress record, the only shape on_progress receives:
{"epoch": int (1-based, current), "epochs": int, "step": int, "steps": int,
 "loss": float, "accuracy": float, "val_loss": float | None, "val_accuracy": float | None,
 "end_of_epoch": bool, "seconds": float (since training began)}.
Within an epoch loss/accuracy are Keras' running means and val_* are None."""


@dataclass
class TrainResult:
    """What one training run produced; `status` is "completed" or "cancelled"."""

    config: TrainConfig
    status: str
    history: list[dict[str, float]]  # per epoch: epoch, loss, accuracy, val_loss, val_accuracy, seconds
    best_val_accuracy: float | None = None
    best_epoch: int | None = None
    test_accuracy: float | None = None
    test_pred: np.ndarray | None = None  # (N_test,) uint8
    test_proba: np.ndarray | None = None  # (N_test, 10) float32
    confusion: np.ndarray | None = None  # (10, 10) int
    per_class: dict[str, list[float]] | None = None
    wall_seconds: float = 0.0
    params: int = 0
    model: Any = field(default=None, repr=False)

    def metrics(self) -> dict[str, Any]:
        """JSON-ready summary: what metrics.json holds."""
        return {
            "status": self.status,
            "best_val_accuracy": self.best_val_accuracy,
            "best_epoch": self.best_epoch,
            "test_accuracy": self.test_accuracy,
            "epochs_done": len(self.history),
            "confusion": None if self.confusion is None else self.confusion.tolist(),
            "per_class": self.per_class,
            "wall_seconds": self.wall_seconds,
            "params": self.params,
        }


def _progress_callback_class():
    import keras

    class ProgressCallback(keras.callbacks.Callback):
        """Reports progress, honours Stop, and keeps the best-validation weights."""

        def __init__(self, epochs, steps, on_progress, stop):
            super().__init__()
            self.epochs, self.steps = epochs, steps
            self.on_progress, self.stop = on_progress, stop

        def on_train_begin(self, logs=None):
            self.start = time.perf_counter()
            self.last_report = 0.0
            self.history: list[dict[str, float]] = []
            self.best_val, self.best_epoch, self.best_weights = -1.0, None, None
            self.epoch_start = self.start
            self.cancelled = False

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch + 1
            self.epoch_start = time.perf_counter()
            self._check_stop()

        def on_train_batch_end(self, batch, logs=None):
            self._check_stop()
            now = time.perf_counter()
            if self.on_progress is not None and now - self.last_report >= PROGRESS_INTERVAL_S:
                self.last_report = now
                self._emit(batch + 1, logs or {}, end=False)

        def on_epoch_end(self, epoch, logs=None):
            logs = {k: float(v) for k, v in (logs or {}).items()}
            if self.stop is not None and self.stop.is_set() and "val_loss" not in logs:
                return  # interrupted mid-epoch: this epoch did not finish
            record = {
                "epoch": epoch + 1,
                "loss": logs.get("loss"),
                "accuracy": logs.get("accuracy"),
                "val_loss": logs.get("val_loss"),
                "val_accuracy": logs.get("val_accuracy"),
                "seconds": time.perf_counter() - self.epoch_start,
            }
            self.history.append(record)
            val = record["val_accuracy"]
            if val is not None and val > self.best_val:
                self.best_val, self.best_epoch = val, epoch + 1
                self.best_weights = self.model.get_weights()
            if self.on_progress is not None:
                self._emit(self.steps, logs, end=True)
            self._check_stop()

        def _check_stop(self):
            if self.stop is not None and self.stop.is_set():
                self.cancelled = True
                self.model.stop_training = True

        def _emit(self, step, logs, end):
            self.on_progress(
                {
                    "epoch": self.epoch,
                    "epochs": self.epochs,
                    "step": step,
                    "steps": self.steps,
                    "loss": float(logs["loss"]) if "loss" in logs else None,
                    "accuracy": float(logs["accuracy"]) if "accuracy" in logs else None,
                    "val_loss": float(logs["val_loss"]) if end and "val_loss" in logs else None,
                    "val_accuracy": float(logs["val_accuracy"]) if end and "val_accuracy" in logs else None,
                    "end_of_epoch": end,
                    "seconds": time.perf_counter() - self.start,
                }
            )

    return ProgressCallback


def targets(config: TrainConfig, labels: np.ndarray) -> np.ndarray:
    """Labels as the loss wants them: class ids, or one-hot when label smoothing is on."""
    if config.label_smoothing > 0:
        return np.eye(10, dtype=np.float32)[labels]
    return labels


def train(
    config: TrainConfig,
    data: Dataset,
    on_progress: Callable[[Progress], None] | None = None,
    stop: threading.Event | None = None,
) -> TrainResult:
    """Train one MLP on the training split, select by validation, score on the test split.

    Args:
        config: what to train.
        data: the dataset; its test split is used only for the final score.
        on_progress: called with a Progress record per epoch and, within an epoch, at most
            about 10 times a second.
        stop: when set, training ends within a fraction of a second; the result is
            "cancelled" and keeps the epochs that finished.

    Returns:
        TrainResult; for a cancelled run only config, status, history and timing are filled.
    """
    import keras

    from .model import count_params

    started = time.perf_counter()
    keras.utils.set_random_seed(config.seed)
    train_idx, val_idx = split_validation(data.y_train, config.val_fraction, config.seed)
    x_tr, y_tr = data.x_train[train_idx], data.y_train[train_idx]  # (N, 28, 28) uint8
    x_val, y_val = data.x_train[val_idx], data.y_train[val_idx]
    steps = -(-len(x_tr) // config.batch_size)

    model = build_model(config)
    model.compile(
        optimizer=make_optimizer(config, steps),
        loss=make_loss(config),
        metrics=["accuracy"],
        steps_per_execution=min(STEPS_PER_EXECUTION, steps),
        jit_compile=JIT_COMPILE,
    )
    cb = _progress_callback_class()(config.epochs, steps, on_progress, stop)
    callbacks = [cb]
    if config.early_stopping > 0:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=config.early_stopping))
    model.fit(
        x_tr,
        targets(config, y_tr),
        batch_size=config.batch_size,
        epochs=config.epochs,
        validation_data=(x_val, targets(config, y_val)),
        shuffle=True,
        callbacks=callbacks,
        verbose=0,
    )
    params = count_params(config)
    if cb.cancelled:
        return TrainResult(config, "cancelled", cb.history, wall_seconds=time.perf_counter() - started,
                           params=params, best_val_accuracy=cb.best_val if cb.best_epoch else None,
                           best_epoch=cb.best_epoch)
    if cb.best_weights is not None:
        model.set_weights(cb.best_weights)
    proba = predict_proba(model, data.x_test)
    pred = proba.argmax(axis=1).astype(np.uint8)
    return TrainResult(
        config=config,
        status="completed",
        history=cb.history,
        best_val_accuracy=cb.best_val,
        best_epoch=cb.best_epoch,
        test_accuracy=evaluate.accuracy(data.y_test, pred),
        test_pred=pred,
        test_proba=proba,
        confusion=evaluate.confusion(data.y_test, pred),
        per_class=evaluate.per_class_metrics(data.y_test, pred),
        wall_seconds=time.perf_counter() - started,
        params=params,
        model=model,
    )


def predict_proba(model: Any, images: np.ndarray, batch_size: int = 2048) -> np.ndarray:
    """(N, 10) float32 class probabilities; calls the model directly, skipping predict()'s overhead."""
    out = [np.asarray(model(images[i : i + batch_size], training=False)) for i in range(0, len(images), batch_size)]
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 10), np.float32)
