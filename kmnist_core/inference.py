"""Server-side forward pass of an exported MLP in numpy: class probabilities and hidden activations, no TensorFlow."""

from __future__ import annotations

import os
import zipfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import StoreError

# The weights file (store.WEIGHTS_FILE, from model.export_weights) holds plain arrays, no
# pickle. Format version 1, every key:
#   format_version          0-d int64, 1
#   activation              0-d unicode str, one of config.ACTIVATIONS (hidden layers)
#   batch_norm              0-d bool
#   hidden_layers           (L,) int64, units per hidden layer
#   dense_{i}/kernel        (fan_in, units_i) float32, i = 1..L; fan_in is 784 for i = 1
#   dense_{i}/bias          (units_i,) float32; only when batch_norm is false
#   bn_{i}/gamma, bn_{i}/beta, bn_{i}/moving_mean, bn_{i}/moving_variance
#                           (units_i,) float32; only when batch_norm is true
#   bn_{i}/epsilon          0-d float32; only when batch_norm is true
#   probs/kernel            (units_L, 10) float32
#   probs/bias              (10,) float32
# The input contract is build_model's: (N, 28, 28) uint8, rescaled by 1/255 inside the network;
# augmentation and dropout are identity at inference, so they leave no trace here.
FORMAT_VERSION = 1
N_CLASSES = 10
N_PIXELS = 28 * 28
_SCALE = np.float32(1 / 255)  # keras.layers.Rescaling casts its scale to float32 and multiplies
# tf.nn.selu's constants (tensorflow/core/kernels/relu_op_functor.h), which Keras 3 calls.
_SELU_SCALE = np.float32(1.0507009873554804934193349852946)
_SELU_SCALE_ALPHA = np.float32(1.7580993408473768599402175208123)
_SQRT_HALF = np.float32(0.7071067811865476)


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, np.float32(0), out=x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # The tanh form is exact and never overflows, unlike 1 / (1 + exp(-x)) for x < -88 in float32.
    half = np.float32(0.5)
    return half + half * np.tanh(half * x)


def _tanh(x: np.ndarray) -> np.ndarray:
    return np.tanh(x, out=x)


def _elu(x: np.ndarray) -> np.ndarray:
    # tf.nn.elu: x < 0 ? exp(x) - 1 : x; min() keeps exp from overflowing on the other branch.
    return np.where(x < 0, np.exp(np.minimum(x, np.float32(0))) - np.float32(1), x)


def _selu(x: np.ndarray) -> np.ndarray:
    negative = _SELU_SCALE_ALPHA * (np.exp(np.minimum(x, np.float32(0))) - np.float32(1))
    return np.where(x < 0, negative, _SELU_SCALE * x)


def _gelu_function() -> Callable[[np.ndarray], np.ndarray]:
    """Exact gelu as tf.nn.gelu(approximate=False) computes it: 0.5 * x * erfc(-x / sqrt(2))."""
    # keras.activations.gelu defaults to approximate=False, and Activation("gelu") resolves to it
    # (keras/src/activations/activations.py). scipy is imported only for gelu: it costs ~0.4 s.
    from scipy.special import erfc

    def gelu(x: np.ndarray) -> np.ndarray:
        return np.float32(0.5) * x * erfc(-x * _SQRT_HALF)

    return gelu


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))  # shifting by the max keeps exp from overflowing
    return e / e.sum(axis=-1, keepdims=True)


_ACTIVATION_FUNCTIONS: dict[str, Callable[[], Callable[[np.ndarray], np.ndarray]]] = {
    "relu": lambda: _relu,
    "sigmoid": lambda: _sigmoid,
    "tanh": lambda: _tanh,
    "elu": lambda: _elu,
    "gelu": _gelu_function,
    "selu": lambda: _selu,
}
ACTIVATIONS = tuple(_ACTIVATION_FUNCTIONS)  # the activations this module computes (config.ACTIVATIONS, tested)


def _gelu_derivative_function() -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """d gelu / dz of the exact gelu: Phi(z) + z * phi(z)."""
    from scipy.special import erfc

    inv_sqrt_2pi = np.float32(0.3989422804014327)

    def derivative(z: np.ndarray, h: np.ndarray) -> np.ndarray:
        return np.float32(0.5) * erfc(-z * _SQRT_HALF) + z * inv_sqrt_2pi * np.exp(np.float32(-0.5) * z * z)

    return derivative


# Each activation's derivative from its input z and output h, as TensorFlow's gradient kernels compute it
# (relu_op_functor.h: ReluGrad is 1 where z > 0, EluGrad h + 1 where z < 0, SeluGrad h + scale * alpha).
_ACTIVATION_DERIVATIVES: dict[str, Callable[[], Callable[[np.ndarray, np.ndarray], np.ndarray]]] = {
    "relu": lambda: lambda z, h: (z > 0).astype(np.float32),
    "sigmoid": lambda: lambda z, h: h * (np.float32(1) - h),
    "tanh": lambda: lambda z, h: np.float32(1) - h * h,
    "elu": lambda: lambda z, h: np.where(z < 0, h + np.float32(1), np.float32(1)),
    "gelu": _gelu_derivative_function,
    "selu": lambda: lambda z, h: np.where(z < 0, h + _SELU_SCALE_ALPHA, _SELU_SCALE),
}


@dataclass(frozen=True)
class _Layer:
    """One hidden layer as computed: x @ kernel, then * scale + offset (batch norm) or + offset (bias)."""

    kernel: np.ndarray  # (fan_in, units) float32
    scale: np.ndarray | None  # (units,) float32: gamma / sqrt(moving_variance + epsilon); None without BN
    offset: np.ndarray  # (units,) float32: the bias, or beta - moving_mean * scale


def as_batch(images: np.ndarray) -> tuple[np.ndarray, bool]:
    """Check and convert images the way predict.Predictor does.

    Args:
        images: one (28, 28) image or a batch (N, 28, 28), 0..255; other dtypes than uint8 are
            clipped to 0..255 (NaN becomes 0) and cast to uint8.

    Returns:
        (batch, single): the (N, 28, 28) uint8 batch, and whether one image was given.

    Raises:
        ValueError: if the shape is not (28, 28) or (N, 28, 28).
    """
    arr = np.asarray(images)
    single = arr.ndim == 2
    batch = arr[None] if single else arr
    if batch.ndim != 3 or batch.shape[1:] != (28, 28):
        raise ValueError(f"images must be (28, 28) or (N, 28, 28); got shape {arr.shape}")
    if batch.dtype != np.uint8:
        batch = np.clip(np.nan_to_num(batch), 0, 255).astype(np.uint8)
    return batch, single


class Network:
    """The forward pass of an MLP built by model.build_model, from its exported weights, in numpy.

    It computes what `model(x, training=False)` computes, in float32 and in Keras' order of
    operations, to within ~1e-6. Nothing changes after construction and the arrays are
    read-only, so one Network can serve many threads at once.

    Args:
        weights: arrays in the key scheme above (model.export_weights, or a loaded weights.npz).
        source: names where the weights came from, for error messages (e.g. the file's path).

    Raises:
        StoreError: one line naming `source`, if a key is missing, an array has the wrong shape,
            or the format version or activation is unknown.
    """

    def __init__(self, weights: Mapping[str, np.ndarray], source: str = "exported weights"):
        self.source = source
        version = _scalar(weights, "format_version", source)
        if version != FORMAT_VERSION:
            raise StoreError(f"{source}: format_version {version!r} is not supported; "
                             f"this version of kmnist_core reads {FORMAT_VERSION} (retrain the run)")
        activation = str(_scalar(weights, "activation", source))
        if activation not in ACTIVATIONS:
            raise StoreError(f"{source}: unknown activation {activation!r}; expected one of {', '.join(ACTIVATIONS)}")
        batch_norm = bool(_scalar(weights, "batch_norm", source))
        units = _array(weights, "hidden_layers", source, ndim=1)
        if len(units) == 0:
            raise StoreError(f"{source}: hidden_layers is empty")
        layers, fan_in = [], N_PIXELS
        for i, n in enumerate(units.tolist(), start=1):
            kernel = _array(weights, f"dense_{i}/kernel", source, shape=(fan_in, n))
            if batch_norm:
                gamma, beta, mean, variance = (
                    _array(weights, f"bn_{i}/{name}", source, shape=(n,))
                    for name in ("gamma", "beta", "moving_mean", "moving_variance")
                )
                epsilon = _array(weights, f"bn_{i}/epsilon", source, shape=())
                if not (variance + epsilon > 0).all():
                    raise StoreError(f"{source}: bn_{i}/moving_variance + epsilon must be positive")
                # tf.nn.batch_normalization's order, which Keras 3's BatchNormalization.call uses:
                # inv = rsqrt(var + eps) * gamma; y = x * inv + (beta - mean * inv).
                scale = (np.float32(1) / np.sqrt(variance + epsilon)) * gamma
                layers.append(_Layer(kernel, _frozen(scale), _frozen(beta - mean * scale)))
            else:
                layers.append(_Layer(kernel, None, _array(weights, f"dense_{i}/bias", source, shape=(n,))))
            fan_in = n
        self._layers = tuple(layers)
        self._probs_kernel = _array(weights, "probs/kernel", source, shape=(fan_in, N_CLASSES))
        self._probs_bias = _array(weights, "probs/bias", source, shape=(N_CLASSES,))
        self._activation = _ACTIVATION_FUNCTIONS[activation]()
        self.activation = activation
        self.batch_norm = batch_norm
        self.hidden_layers = tuple(int(n) for n in units)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Network:
        """Read a weights.npz written from model.export_weights (no pickle is ever loaded).

        Args:
            path: the .npz file.

        Returns:
            The Network.

        Raises:
            StoreError: one line naming the file, if it is missing, cannot be read, is damaged,
                or has an unknown format version.
        """
        path = Path(path)
        if not path.is_file():
            raise StoreError(f"weights file {path} not found; the run may predate weight export (retrain it)")
        try:
            npz = np.load(path, allow_pickle=False)
            if not isinstance(npz, np.lib.npyio.NpzFile):  # a bare .npy array
                raise ValueError("not an .npz archive")
            with npz:
                # Read every array now: a damaged member only fails (bad CRC) when it is read.
                weights = {key: npz[key] for key in npz.files}
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise StoreError(f"weights file {path} is damaged or not an .npz archive: {reason}") from exc
        return cls(weights, source=f"weights file {path}")

    def forward(self, images: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Probabilities and hidden activations from one pass.

        Args:
            images: one (28, 28) image or a batch (N, 28, 28), as for proba().

        Returns:
            (proba, hidden): proba as proba() returns it; hidden as hidden() returns it.

        Raises:
            ValueError: if the shape is not (28, 28) or (N, 28, 28).
        """
        batch, single = as_batch(images)  # (N, 28, 28) uint8
        x = batch.reshape(len(batch), N_PIXELS).astype(np.float32) * _SCALE  # (N, 784) float32, 0..1
        hidden = []
        for layer in self._layers:
            x = x @ layer.kernel  # (N, units) float32, a new array: the activations may work in place
            if layer.scale is not None:
                x *= layer.scale
            x += layer.offset
            x = self._activation(x)
            hidden.append(x)
        proba = _softmax(x @ self._probs_kernel + self._probs_bias)  # (N, 10) float32
        if single:
            return proba[0], [h[0] for h in hidden]
        return proba, hidden

    def proba(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities.

        Args:
            images: one (28, 28) image or a batch (N, 28, 28), KMNIST-like (white ink on black);
                0..255, other dtypes are clipped and cast to uint8.

        Returns:
            (10,) float32 for one image, (N, 10) float32 for a batch.

        Raises:
            ValueError: if the shape is not (28, 28) or (N, 28, 28).
        """
        return self.forward(images)[0]

    def hidden(self, images: np.ndarray) -> list[np.ndarray]:
        """Each hidden layer's output after its activation (before dropout, which is off at inference).

        Args:
            images: one (28, 28) image or a batch (N, 28, 28), as for proba().

        Returns:
            One float32 array per hidden layer: (units,) for one image, (N, units) for a batch.

        Raises:
            ValueError: if the shape is not (28, 28) or (N, 28, 28).
        """
        return self.forward(images)[1]

    @property
    def kernels(self) -> tuple[np.ndarray, ...]:
        """Every Dense kernel, read-only float32: dense_1..dense_L as (fan_in, units_i), then probs as (units_L, 10)."""
        return (*(layer.kernel for layer in self._layers), self._probs_kernel)

    def input_gradient(self, images: np.ndarray, classes: int | np.ndarray | None = None) -> np.ndarray:
        """The gradient of one class's probability with respect to the input, by backpropagation in numpy.

        The input is what the first Dense layer sees, x = pixels / 255, so `gradient * x` is gradient x input:
        to first order, how much the probability falls when that pixel is blanked. It matches TensorFlow's
        autodiff of the Keras model (from the Rescaling output on) to float32 rounding.

        Args:
            images: one (28, 28) image or a batch (N, 28, 28), as for proba().
            classes: the class whose probability is differentiated: one int for all images, or (N,) ints;
                None: each image's most probable class.

        Returns:
            float32 (28, 28) for one image, (N, 28, 28) for a batch: d proba[class] / d x.

        Raises:
            ValueError: if the shape is not (28, 28) or (N, 28, 28), or a class is not 0..9.
        """
        batch, single = as_batch(images)  # (N, 28, 28) uint8
        n = len(batch)
        h = batch.reshape(n, N_PIXELS).astype(np.float32) * _SCALE  # (N, 784) float32
        pre, post = [], []
        for layer in self._layers:  # forward()'s computation, keeping each layer's input z and output h
            z = h @ layer.kernel
            if layer.scale is not None:
                z *= layer.scale
            z += layer.offset
            h = self._activation(z.copy())  # relu and tanh work in place; z is needed below
            pre.append(z)
            post.append(h)
        proba = _softmax(h @ self._probs_kernel + self._probs_bias)  # (N, 10) float32
        if classes is None:
            target = proba.argmax(axis=1)
        else:
            target = np.broadcast_to(np.asarray(classes), (n,))
            if target.dtype.kind not in "iu" or ((target < 0) | (target >= N_CLASSES)).any():
                raise ValueError(f"classes must be integers 0..{N_CLASSES - 1}; got {np.asarray(classes).tolist()}")
        rows = np.arange(n)
        p_c = proba[rows, target][:, None]  # (N, 1)
        grad = -p_c * proba  # d p_c / d logits = p_c * (onehot(c) - p), (N, 10)
        grad[rows, target] += p_c[:, 0]
        grad = grad @ self._probs_kernel.T  # (N, units_L)
        derivative = _ACTIVATION_DERIVATIVES[self.activation]()
        for layer, z, out in zip(reversed(self._layers), reversed(pre), reversed(post), strict=True):
            grad = grad * derivative(z, out)
            if layer.scale is not None:
                grad = grad * layer.scale
            grad = grad @ layer.kernel.T  # (N, fan_in)
        grad = grad.astype(np.float32, copy=False).reshape(n, 28, 28)
        return grad[0] if single else grad


def _frozen(a: np.ndarray) -> np.ndarray:
    """A read-only float32 contiguous copy, so that no caller can change a shared Network."""
    out = np.array(a, dtype=np.float32, order="C")
    out.flags.writeable = False
    return out


def _get(weights: Mapping[str, np.ndarray], key: str, source: str) -> np.ndarray:
    """weights[key] as an array, or a StoreError naming the missing key."""
    try:
        return np.asarray(weights[key])
    except KeyError:
        raise StoreError(f"{source}: missing array {key!r}") from None


def _scalar(weights: Mapping[str, np.ndarray], key: str, source: str) -> object:
    """A 0-d entry as a Python value."""
    a = _get(weights, key, source)
    if a.shape != ():
        raise StoreError(f"{source}: {key!r} must be a scalar; got shape {a.shape}")
    return a.item()


def _array(weights: Mapping[str, np.ndarray], key: str, source: str, shape: tuple[int, ...] | None = None,
           ndim: int | None = None) -> np.ndarray:
    """A numeric entry of the expected shape: float32 read-only, or int64 for hidden_layers."""
    a = _get(weights, key, source)
    if (shape is not None and a.shape != shape) or (ndim is not None and a.ndim != ndim):
        expected = shape if shape is not None else f"{ndim}-d"
        raise StoreError(f"{source}: {key!r} must have shape {expected}; got {a.shape}")
    if ndim is not None:  # hidden_layers: unit counts
        if a.dtype.kind not in "iu" or (a < 1).any():
            raise StoreError(f"{source}: {key!r} must hold positive integers; got {a.tolist()}")
        return a.astype(np.int64)
    if a.dtype.kind != "f" or not np.isfinite(a).all():
        raise StoreError(f"{source}: {key!r} must hold finite floats; got dtype {a.dtype}")
    return _frozen(a)
