"""EpochLoop: Keras' own train_step/test_step, many steps per tf.function call, in place of model.fit (worker side).

Why not `model.fit`: measured here in one run, alternating, on the 2-core CPU ([128, 64] relu
Adam, batch 128, the same progress callback; `python -m benchmarks` keeps measuring it):
- the 7,200-sample subset: this loop 0.135 s per epoch, `fit(steps_per_execution=16 or 64,
  jit_compile=True)` 0.29-0.30 s, without XLA 0.35 s; a whole 10-epoch run 2.7 s against 6-9 s;
- 60,000 synthetic samples: 0.57 s per epoch against 1.36-1.71 s.
`fit` is 2.2-2.4x slower per epoch, far outside the 15 % that would make it the better choice.
The extra time is fit's tf.data pipeline, its per-epoch evaluate() set-up and its multi-step
while_loop with Optionals (it traces train_step twice); this loop traces it once.

The loop relies on these Keras APIs, each pinned by a test in tests/test_loop.py so that a
Keras upgrade fails loudly: `Model.train_step`, `Model.test_step`, `Model.get_metrics_result`,
`Model.reset_metrics`, `Optimizer.build`, `Model.stop_training`, and `keras.callbacks.CallbackList`
(on_train_begin, on_epoch_begin, on_train_batch_end, on_epoch_end, on_train_end).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np

# XLA compiles the train step once per run (~1.6 s here, 3+ s on a loaded CPU) and then saves
# ~0.8 ms per step, so it is used when a run has enough steps to repay it (use_xla).
XLA_COMPILE_S = 1.6
XLA_SAVES_PER_STEP_S = 0.0008
FIRST_CHUNK = 4  # training steps in the first call, which also traces
CHUNK_S = 0.05  # later calls run as many steps as take about this long: Stop and progress stay prompt
VAL_BATCH = 4096  # validation samples per call


def epoch_orders(seed: int, n: int) -> Iterator[np.ndarray]:
    """The order in which each epoch visits the n training samples: seeded, so the same for the same config."""
    rng = np.random.default_rng(seed)
    while True:
        yield rng.permutation(n).astype(np.int32)  # (n,)


def use_xla(steps: int, augment: bool) -> bool:
    """Whether XLA's compile time pays for itself over a run of `steps` training steps."""
    if augment:
        return False  # the random image layers are not all XLA-compilable
    return steps * XLA_SAVES_PER_STEP_S > XLA_COMPILE_S


class EpochLoop:
    """Runs Keras' own train_step / test_step over data held as tensors, many steps per call.

    The role model.fit plays, minus its per-epoch tf.data pipeline, per-epoch evaluate() set-up
    and per-step while_loop/Optional machinery (numbers in the module docstring).

    Args:
        model: a compiled Keras model.
        x, y: training images (N, 28, 28) uint8 and targets (N,) or (N, 10).
        x_val, y_val: the validation split, same layout.
        batch_size: samples per step.
        jit: compile the training step with XLA.
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
        for epoch, order in zip(range(epochs), orders, strict=False):  # orders is endless
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
