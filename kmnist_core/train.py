"""train(config, data, on_progress, stop): one MLP trained by the EpochLoop with one Keras callback (worker side)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import evaluate, events
from .config import TrainConfig, count_params
from .data import Dataset, split_validation
from .loop import EpochLoop, use_xla
from .model import build_model, make_loss, make_optimizer
from .records import EpochRecord, Progress, Status, TrainResult

PROGRESS_INTERVAL_S = 0.1  # within-epoch progress at most ~10 times a second
PREDICT_BATCH = 2048  # test images per forward pass when scoring


def progress_callback_class():
    """The Keras callback class train() uses (made on demand: keras is imported lazily, in the worker)."""
    import keras

    class ProgressCallback(keras.callbacks.Callback):
        """Reports Progress records, honours Stop, and keeps the best-validation weights.

        Reusable: on_train_begin resets every piece of state, as Keras' EarlyStopping does.
        """

        def __init__(self, epochs: int, steps: int, on_progress: Callable[[Progress], None] | None,
                     stop: threading.Event | None):
            super().__init__()
            self.epochs, self.steps = epochs, steps
            self.on_progress, self.stop = on_progress, stop

        def on_train_begin(self, logs=None):
            self.start = time.perf_counter()
            self.last_report = 0.0
            self.history: list[EpochRecord] = []
            self.best_val, self.best_epoch, self.best_weights = -1.0, None, None
            self.epoch, self.epoch_start = 0, self.start
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
                self._emit(batch + 1, logs or {}, None)

        def on_epoch_end(self, epoch, logs=None):
            logs = {k: float(v) for k, v in (logs or {}).items()}
            if "val_loss" not in logs:
                return  # interrupted mid-epoch: this epoch did not finish
            now = time.perf_counter()
            record = EpochRecord(
                epoch=epoch + 1, loss=logs["loss"], accuracy=logs["accuracy"], val_loss=logs["val_loss"],
                val_accuracy=logs["val_accuracy"], epoch_seconds=now - self.epoch_start,
                elapsed_seconds=now - self.start,
            )
            self.history.append(record)
            if record["val_accuracy"] > self.best_val:
                self.best_val, self.best_epoch = record["val_accuracy"], epoch + 1
                self.best_weights = self.model.get_weights()
            if self.on_progress is not None:
                self._emit(self.steps, logs, record)
            self._check_stop()

        def _check_stop(self):
            if self.stop is not None and self.stop.is_set():
                self.cancelled = True
                self.model.stop_training = True

        def _emit(self, step: int, logs: dict[str, Any], record: EpochRecord | None) -> None:
            self.on_progress(Progress(
                epoch=self.epoch, epochs=self.epochs, step=step, steps=self.steps,
                loss=float(logs.get("loss", float("nan"))), accuracy=float(logs.get("accuracy", float("nan"))),
                elapsed_seconds=time.perf_counter() - self.start, record=record,
            ))

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
    log_dir: Path | None = None,
) -> TrainResult:
    """Train one MLP on the training split, select by validation, score on the test split.

    Args:
        config: what to train.
        data: the dataset; its test split is used only for the final score.
        on_progress: called with a Progress record per epoch and, within an epoch, at most
            about 10 times a second.
        stop: when set, training ends within a fraction of a second; the result is
            cancelled and keeps the epochs that finished.
        log_dir: where to write TensorBoard event files (kmnist_core.events), or None.

    Returns:
        TrainResult; for a cancelled run only config, status, history and timing are filled.
    """
    import keras

    started = time.perf_counter()
    keras.utils.set_random_seed(config.seed)
    train_idx, val_idx = split_validation(data.y_train, config.val_fraction, config.seed)
    x_tr, y_tr = data.x_train[train_idx], data.y_train[train_idx]  # (N, 28, 28) uint8
    x_val, y_val = data.x_train[val_idx], data.y_train[val_idx]
    steps = -(-len(x_tr) // config.batch_size)

    model = build_model(config)
    model.compile(optimizer=make_optimizer(config, steps), loss=make_loss(config), metrics=["accuracy"],
                  jit_compile=False)
    loop = EpochLoop(model, x_tr, targets(config, y_tr), x_val, targets(config, y_val), config.batch_size,
                     jit=use_xla(steps * config.epochs, config.augment > 0))
    del x_tr  # the loop holds its own copy as a tensor
    cb = progress_callback_class()(config.epochs, steps, on_progress, stop)
    callbacks = [cb]
    if config.early_stopping > 0:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=config.early_stopping))
    if log_dir is not None:
        callbacks.append(events.epoch_callback(log_dir, config))
    loop.fit(config.epochs, keras.callbacks.CallbackList(callbacks, model=model), seed=config.seed)
    params = count_params(config)
    if cb.cancelled:
        return TrainResult(config, Status.CANCELLED, cb.history, wall_seconds=time.perf_counter() - started,
                           params=params, best_val_accuracy=cb.best_val if cb.best_epoch else None,
                           best_epoch=cb.best_epoch)
    if cb.best_weights is not None:
        model.set_weights(cb.best_weights)
    proba = predict_proba(model, data.x_test)
    pred = proba.argmax(axis=1).astype(np.uint8)
    result = TrainResult(
        config=config,
        status=Status.COMPLETED,
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
    if log_dir is not None:
        events.write_final(log_dir, result.metrics(), len(cb.history))
    return result


def predict_proba(model: Any, images: np.ndarray) -> np.ndarray:
    """(N, 10) float32 class probabilities of a Keras model, in large batches, without model.predict's set-up."""
    out = [np.asarray(model(images[i : i + PREDICT_BATCH], training=False))
           for i in range(0, len(images), PREDICT_BATCH)]
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 10), np.float32)
