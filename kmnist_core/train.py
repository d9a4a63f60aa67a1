"""train(config, data, on_progress, stop): Keras train steps, many per call, one callback for progress and Stop."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import evaluate
from .config import TrainConfig
from .data import Dataset, split_validation
from .model import build_model, make_loss, make_optimizer

# Training runs Keras' own train_step/test_step in a loop of our own (_EpochLoop) instead of
# model.fit. Measured on this 2-core machine ([128, 64] relu Adam; `python -m kmnist_core.bench`):
# - 8k subset, 5 epochs at batch 128: fit spent ~2 s per run tracing (its multi-step while_loop
#   with Optionals traces train_step twice, plus the partial last batch and evaluate()) and
#   ~0.25 s per epoch on tf.data/evaluate set-up for 57 steps; this loop traces train_step once
#   (~0.5 s) and an epoch takes ~0.13 s.
# - 60k samples: steady epochs of ~0.8 s (batch 128) without XLA, ~0.45 s with it; XLA adds
#   ~1.5 s of compiling per run (3+ s on a loaded CPU) and saves ~0.8 ms per step, so it is used
#   when a run has more than ~2,000 steps (use_xla). Plain fit: 1.3 s at batch 128, 4.3 s at 32.
JIT_COMPILE: bool | None = None  # None: use_xla() decides from the run's length
XLA_COMPILE_S = 1.6  # extra seconds XLA compiling costs per run
XLA_SAVES_PER_STEP_S = 0.0008  # seconds XLA saves per training step
FIRST_CHUNK = 4  # training steps in the first call, which also traces
CHUNK_S = 0.05  # later calls run as many steps as take about this long: Stop and progress stay prompt
VAL_BATCH = 4096  # validation samples per call
FAST_PATH_MAX = 64  # predict_proba: batches up to this size use the model's cached compiled forward pass
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


def epoch_orders(seed: int, n: int) -> Iterator[np.ndarray]:
    """The order in which each epoch visits the n training samples: seeded, so the same for the same config."""
    rng = np.random.default_rng(seed)
    while True:
        yield rng.permutation(n).astype(np.int32)  # (n,)


def use_xla(config: TrainConfig, n_train: int) -> bool:
    """Whether XLA's compile time (seconds) pays for itself over this run's steps."""
    if JIT_COMPILE is not None:
        return JIT_COMPILE
    if config.augment > 0:
        return False  # the random image layers are not all XLA-compilable
    steps = -(-n_train // config.batch_size) * config.epochs
    return steps * XLA_SAVES_PER_STEP_S > XLA_COMPILE_S


class _EpochLoop:
    """Runs Keras' own train_step / test_step over data held as tensors, many steps per call.

    The role model.fit plays, minus its per-epoch tf.data pipeline, per-epoch evaluate() set-up
    and per-step while_loop/Optional machinery; the numbers that justify it are in the module
    comment at the top and in `python -m kmnist_core.bench`.
    """

    def __init__(self, model: Any, x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                 batch_size: int, jit: bool):
        import tensorflow as tf

        self.model, self.batch_size = model, batch_size
        self.n = len(x)
        self.full_steps, self.tail = divmod(self.n, batch_size)
        self.steps = self.full_steps + (1 if self.tail else 0)
        self.x_val, self.y_val = x_val, y_val
        x_t, y_t = tf.constant(x), tf.constant(y)  # (N, 28, 28) uint8, (N,) labels or (N, 10) one-hot
        self.chunk, self.calls = FIRST_CHUNK, 0

        def run_steps(order, start, count):
            # order: (S, B) sample indices per step; runs steps start .. start+count-1, one trace of train_step
            def body(i, logs):
                idx = order[i]
                return i + 1, model.train_step((tf.gather(x_t, idx), tf.gather(y_t, idx)))

            _, logs = tf.while_loop(lambda i, _: i < start + count, body, (start, model.get_metrics_result()))
            return logs

        def test(x, y):
            return model.test_step((x, y))

        def spec(a):
            return tf.TensorSpec((None, *a.shape[1:]), tf.as_dtype(a.dtype))

        scalar = tf.TensorSpec((), tf.int32)
        signature = (tf.TensorSpec((None, None), tf.int32), scalar, scalar)
        self._run_steps = tf.function(run_steps, jit_compile=jit, autograph=False, input_signature=signature)
        # XLA compiles once per input shape: the short last batch of an epoch runs uncompiled,
        # which costs a trace (~0.3 s) instead of a second XLA compile (~1.5 s).
        self._run_tail = (tf.function(run_steps, autograph=False, input_signature=signature)
                          if jit else self._run_steps)
        self._test = tf.function(test, autograph=False, input_signature=(spec(x_val), spec(y_val)))
        self._to_tensor = tf.constant
        # Build the optimizer, loss and metric state eagerly, outside the traced functions.
        model.optimizer.build(model.trainable_variables)
        model.test_step((x[:1], y[:1]))
        model.reset_metrics()

    def fit(self, epochs: int, callbacks: Any, seed: int) -> None:
        """Train for `epochs` epochs, calling the Keras callbacks as model.fit does."""
        model = self.model
        orders = epoch_orders(seed, self.n)
        model.stop_training = False
        callbacks.on_train_begin()
        for epoch, order in zip(range(epochs), orders):
            model.reset_metrics()
            callbacks.on_epoch_begin(epoch)
            finished, logs = self._train_epoch(order, callbacks)
            if not finished:
                break  # stopped mid-epoch: that epoch is not reported
            logs.update(self.evaluate())
            callbacks.on_epoch_end(epoch, logs)
            if model.stop_training:
                break
        callbacks.on_train_end()

    def _train_epoch(self, order: np.ndarray, callbacks: Any) -> tuple[bool, dict[str, float]]:
        model, b = self.model, self.batch_size
        full = self._to_tensor(order[: self.full_steps * b].reshape(self.full_steps, b))
        done, logs = 0, {}
        while done < self.full_steps and not model.stop_training:
            count = min(self.chunk, self.full_steps - done)
            t = time.perf_counter()
            logs = self._run_steps(full, done, count)
            self._tune(count, time.perf_counter() - t)
            done += count
            callbacks.on_train_batch_end(done - 1, logs)
        if self.tail and not model.stop_training:
            logs = self._run_tail(self._to_tensor(order[None, self.full_steps * b :]), 0, 1)
            done += 1
            callbacks.on_train_batch_end(done - 1, logs)
        return done == self.steps, {k: float(v) for k, v in logs.items()}

    def _tune(self, count: int, seconds: float) -> None:
        """Size the next call so that it takes about CHUNK_S: progress and Stop stay prompt."""
        self.calls += 1
        if self.calls > 1 and seconds > 0:  # the first call includes tracing / compiling
            self.chunk = max(1, min(self.full_steps, round(count * CHUNK_S / seconds)))

    def evaluate(self) -> dict[str, float]:
        """val_loss and val_accuracy on the whole validation split, in a few large batches."""
        self.model.reset_metrics()
        logs = {}
        for i in range(0, len(self.x_val), VAL_BATCH):
            logs = self._test(self.x_val[i : i + VAL_BATCH], self.y_val[i : i + VAL_BATCH])
        return {f"val_{k}": float(v) for k, v in logs.items()}


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
    model.compile(optimizer=make_optimizer(config, steps), loss=make_loss(config), metrics=["accuracy"],
                  jit_compile=False)
    loop = _EpochLoop(model, x_tr, targets(config, y_tr), x_val, targets(config, y_val), config.batch_size,
                      jit=use_xla(config, len(x_tr)))
    del x_tr  # the loop holds its own copy as a tensor
    cb = _progress_callback_class()(config.epochs, steps, on_progress, stop)
    callbacks = [cb]
    if config.early_stopping > 0:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=config.early_stopping))
    loop.fit(config.epochs, keras.callbacks.CallbackList(callbacks, model=model), seed=config.seed)
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
    """(N, 10) float32 class probabilities, without model.predict's per-call overhead.

    Small batches (a drawing) go through the model's cached compiled forward pass
    (predict.predictor_for: ~1 ms once warm, after a one-off trace of ~0.2 s); large ones
    call the model directly in batches, which needs no trace.
    """
    if 0 < len(images) <= FAST_PATH_MAX:
        from .predict import predictor_for

        return predictor_for(model).proba(np.asarray(images))
    out = [np.asarray(model(images[i : i + batch_size], training=False)) for i in range(0, len(images), batch_size)]
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 10), np.float32)
