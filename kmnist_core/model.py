"""The Keras MLP built from a TrainConfig; keras is imported lazily so the UI paints first."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from .config import TrainConfig

if TYPE_CHECKING:
    import keras

# Quiet, CPU-friendly TensorFlow: no oneDNN notice, no C++ log spam in the UI's terminal.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
# Keras writes keras.json into KERAS_HOME (default ~/.keras) on import; we write only to the
# run store and the temp directory.
os.environ.setdefault("KERAS_HOME", os.path.join(tempfile.gettempdir(), "kmnist-lab-keras"))


def count_params(config: TrainConfig) -> int:
    """Trainable + non-trainable parameters of build_model(config), without importing Keras."""
    total, fan_in = 0, 28 * 28
    for units in config.hidden_layers:
        total += fan_in * units + (0 if config.batch_norm else units)  # BN's beta replaces the bias
        if config.batch_norm:
            total += 4 * units  # gamma, beta, moving mean, moving variance
        fan_in = units
    return total + fan_in * 10 + 10


def build_model(config: TrainConfig) -> keras.Model:
    """uint8 (28, 28) in -> rescale -> [augment] -> flatten -> Dense hidden layers -> softmax(10).

    Rescaling inside the model lets training feed uint8 arrays, which halves peak memory
    against float32 copies; augmentation layers are active only when training=True.
    """
    import keras
    from keras import layers

    regularizer = keras.regularizers.L2(config.weight_decay) if config.weight_decay > 0 else None
    inputs = keras.Input((28, 28), dtype="uint8", name="image")
    x = layers.Rescaling(1 / 255)(inputs)
    if config.augment > 0:
        s = config.augment
        x = layers.Reshape((28, 28, 1))(x)
        # At strength 1: shifts of +-3 px (about 10 %), rotations of +-15 degrees, zoom of +-15 %.
        x = layers.RandomTranslation(0.1 * s, 0.1 * s, fill_mode="constant", seed=config.seed)(x)
        x = layers.RandomRotation(15 / 360 * s, fill_mode="constant", seed=config.seed + 1)(x)
        x = layers.RandomZoom(0.15 * s, fill_mode="constant", seed=config.seed + 2)(x)
    x = layers.Flatten()(x)
    for i, units in enumerate(config.hidden_layers, start=1):
        x = layers.Dense(
            units,
            use_bias=not config.batch_norm,
            kernel_regularizer=regularizer,
            name=f"dense_{i}",
        )(x)
        if config.batch_norm:
            x = layers.BatchNormalization(name=f"bn_{i}")(x)
        x = layers.Activation(config.activation)(x)
        if config.dropout > 0:
            x = layers.Dropout(config.dropout, seed=config.seed + 10 + i)(x)
    outputs = layers.Dense(10, activation="softmax", kernel_regularizer=regularizer, name="probs")(x)
    return keras.Model(inputs, outputs, name="kmnist_mlp")


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """The configured optimizer with its learning-rate schedule."""
    import keras

    lr = config.resolved_learning_rate
    total = max(1, config.epochs * steps_per_epoch)
    if config.lr_schedule == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(lr, decay_steps=total)
    elif config.lr_schedule == "step":
        rate = keras.optimizers.schedules.PiecewiseConstantDecay(
            [int(total * 0.5), int(total * 0.75)], [lr, lr * 0.1, lr * 0.01]
        )
    else:
        rate = lr
    if config.optimizer == "adam":
        return keras.optimizers.Adam(rate)
    if config.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(rate)
    if config.optimizer == "nesterov":
        return keras.optimizers.SGD(rate, momentum=0.9, nesterov=True)
    return keras.optimizers.SGD(rate)


def make_loss(config: TrainConfig) -> keras.losses.Loss:
    """Cross-entropy; label smoothing needs one-hot targets, see train.targets()."""
    import keras

    if config.label_smoothing > 0:
        return keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
    return keras.losses.SparseCategoricalCrossentropy()


def load_model(path: str | os.PathLike) -> keras.Model:
    """Load a stored model for inference only, with Keras safe_mode (no arbitrary code)."""
    import keras

    return keras.saving.load_model(Path(path), compile=False, safe_mode=True)
