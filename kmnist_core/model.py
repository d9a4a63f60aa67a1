"""The Keras MLP built from a TrainConfig, and its export as plain arrays (worker side; Keras imported lazily)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .config import TrainConfig
from .inference import FORMAT_VERSION

if TYPE_CHECKING:
    import keras


def tensorflow_environment() -> None:
    """Set TensorFlow's and Keras' environment; call it before they are first imported (this module does)."""
    # Quiet, CPU-friendly TensorFlow: no oneDNN notice, no C++ log spam in a terminal.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    # Keras writes keras.json into KERAS_HOME (default ~/.keras) on import; we write only to the
    # run store and the temp directory.
    os.environ.setdefault("KERAS_HOME", os.path.join(tempfile.gettempdir(), "kmnist-lab-keras"))


tensorflow_environment()


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


def export_weights(model: keras.Model) -> dict[str, np.ndarray]:
    """The weights of a build_model() network as plain arrays, for the run store's weights.npz (store.WEIGHTS_FILE).

    The keys follow inference.py's format version 1 (format_version, activation, batch_norm,
    hidden_layers, dense_{i}/kernel, dense_{i}/bias or bn_{i}/gamma|beta|moving_mean|
    moving_variance|epsilon, probs/kernel, probs/bias); no array needs pickle to load. Rescaling,
    augmentation and dropout carry no weights (the last two are identity at inference): the
    reader assumes build_model's input contract, uint8 scaled by 1/255, which this checks.

    Args:
        model: a Keras model built by build_model(config) (or loaded by load_model), trained or not.

    Returns:
        Dict of key -> numpy array: 0-d arrays for the scalars, float32 for the weights.

    Raises:
        ValueError: if the model is not shaped like build_model's (a layer is missing or unexpected).
    """
    import keras
    from keras import layers

    def arr(variable: object) -> np.ndarray:
        return np.asarray(keras.ops.convert_to_numpy(variable), dtype=np.float32)

    names = {layer.name: layer for layer in model.layers}
    dense = [names[f"dense_{i}"] for i in range(1, len(names) + 1) if f"dense_{i}" in names]
    if not dense or "probs" not in names or len(dense) != sum(n.startswith("dense_") for n in names):
        raise ValueError(f"model {model.name!r} is not a build_model() network: "
                         f"expected Dense layers dense_1..dense_L and probs; got {sorted(names)}")
    rescaling = [layer for layer in model.layers if isinstance(layer, layers.Rescaling)]
    if len(rescaling) != 1 or not np.isclose(float(rescaling[0].scale), 1 / 255) or float(rescaling[0].offset) != 0:
        raise ValueError(f"model {model.name!r} must rescale its input by 1/255 exactly once")
    activations = {keras.activations.serialize(layer.activation)
                   for layer in model.layers if isinstance(layer, layers.Activation)}
    if len(activations) != 1:
        raise ValueError(f"model {model.name!r} must use one hidden activation; got {sorted(map(str, activations))}")
    batch_norm = "bn_1" in names
    out: dict[str, np.ndarray] = {
        "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
        "activation": np.array(activations.pop(), dtype=np.str_),
        "batch_norm": np.array(batch_norm),
        "hidden_layers": np.array([layer.units for layer in dense], dtype=np.int64),
    }
    for i, layer in enumerate(dense, start=1):
        if batch_norm != (f"bn_{i}" in names) or batch_norm != (layer.bias is None):
            raise ValueError(f"model {model.name!r}: every Dense layer must be followed by BatchNormalization "
                             "and have no bias, or none of them")
        out[f"dense_{i}/kernel"] = arr(layer.kernel)  # (fan_in, units)
        if batch_norm:
            bn = names[f"bn_{i}"]
            out[f"bn_{i}/gamma"] = arr(bn.gamma)  # (units,)
            out[f"bn_{i}/beta"] = arr(bn.beta)
            out[f"bn_{i}/moving_mean"] = arr(bn.moving_mean)
            out[f"bn_{i}/moving_variance"] = arr(bn.moving_variance)
            out[f"bn_{i}/epsilon"] = np.array(bn.epsilon, dtype=np.float32)
        else:
            out[f"dense_{i}/bias"] = arr(layer.bias)  # (units,)
    out["probs/kernel"] = arr(names["probs"].kernel)  # (units_L, 10)
    out["probs/bias"] = arr(names["probs"].bias)  # (10,)
    return out
