"""TensorBoard event files of a run, written by the worker while it trains: epoch scalars, HParams, final metrics.

Each run writes into its own folder, so `tensorboard --logdir runs` lists every run by its id,
with its curves (scalars epoch_loss, epoch_accuracy, epoch_val_loss, epoch_val_accuracy) and,
in the HParams tab, its configuration beside best_val_accuracy and test_accuracy.
Writing events must never cost a run: a writer that fails (a full disk, say) stops writing and
logs why, and the run goes on to save its result, which reports the real problem.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .config import FIELDS, TrainConfig

log = logging.getLogger(__name__)

EPOCH_SCALARS = ("loss", "accuracy", "val_loss", "val_accuracy")  # tagged epoch_<name>, as Keras' TensorBoard does
FINAL_METRICS = ("best_val_accuracy", "test_accuracy")


def hparams(config: TrainConfig) -> dict[str, Any]:
    """The config as HParams values (numbers, strings, bools): layers as '128, 64', the resolved learning rate."""
    values: dict[str, Any] = {}
    for name, f in FIELDS.items():
        value = getattr(config, name)
        if name == "learning_rate":
            value = config.resolved_learning_rate
        values[name] = f.format(value) if f.kind == "layers" else value
    return values


def epoch_callback(log_dir: Path, config: TrainConfig) -> Any:
    """A Keras callback that writes the HParams at the start and the epoch scalars after each epoch."""
    import keras
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp

    class EventsCallback(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.writer = _guard(lambda: tf.summary.create_file_writer(str(log_dir)))
            self._write(lambda: hp.hparams(hparams(config), trial_id=log_dir.name))

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            self._write(lambda: [tf.summary.scalar(f"epoch_{k}", float(logs[k]), step=epoch + 1)
                                 for k in EPOCH_SCALARS if k in logs])

        def _write(self, write) -> None:
            if self.writer is None:
                return
            with self.writer.as_default():
                if _guard(write) is None:
                    self.writer = None
                    return
            if _guard(self.writer.flush) is None:
                self.writer = None

    return EventsCallback()


def write_final(log_dir: Path, metrics: dict[str, Any], epoch: int) -> None:
    """The run's final numbers as scalars, which the HParams tab shows beside the configuration."""
    import tensorflow as tf

    writer = _guard(lambda: tf.summary.create_file_writer(str(log_dir)))
    if writer is None:
        return
    with writer.as_default():
        _guard(lambda: [tf.summary.scalar(k, float(metrics[k]), step=epoch) for k in FINAL_METRICS
                        if metrics.get(k) is not None])
    _guard(writer.close)


def _guard(call) -> Any:
    """call(), or None (logged) when TensorFlow's writer fails."""
    try:
        result = call()
    except Exception as e:  # noqa: BLE001 - any writer failure: stop writing events, never fail the run
        log.warning("TensorBoard events not written: %s: %s", type(e).__name__, e)
        return None
    return True if result is None else result
