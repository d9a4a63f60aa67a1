"""Fast prediction for one drawing: a compiled forward pass, skipping model.predict's per-call set-up."""

from __future__ import annotations

import threading
import weakref
from typing import Any

import numpy as np


class Predictor:
    """Class probabilities from a Keras model for one image or a small batch, fast once warm.

    `model.predict` builds a data pipeline on every call (tens of milliseconds); an eager
    `model(x)` runs layer by layer in Python (a few milliseconds, tens on a loaded CPU). This
    traces the forward pass once, for any batch size, and reuses it: a warm call on one image
    takes about a millisecond on this project's MLPs (see `python -m kmnist_core.bench`). Safe to
    share between threads. `predictor_for(model)` keeps one per model.

    Args:
        model: a Keras model taking (N, 28, 28) uint8 images and returning (N, 10) probabilities,
            as built by model.build_model or loaded by model.load_model.
    """

    def __init__(self, model: Any):
        import tensorflow as tf

        ref = weakref.ref(model)  # the traced function must not keep the model alive (see predictor_for)
        self._model, self._keep = ref, model
        self._forward = tf.function(
            lambda x: ref()(x, training=False),
            input_signature=(tf.TensorSpec((None, 28, 28), tf.uint8),),
            autograph=False,
        )
        self._lock = threading.Lock()
        self._warm = False

    @property
    def model(self) -> Any:
        """The wrapped Keras model (None once it has been garbage-collected)."""
        return self._model()

    def warm_up(self) -> Predictor:
        """Trace and run the forward pass once (~0.1-0.3 s), so that the first real call is fast; returns self."""
        with self._lock:
            if not self._warm:
                self._forward(np.zeros((1, 28, 28), np.uint8))
                self._warm = True
        return self

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
        arr = np.asarray(images)
        single = arr.ndim == 2
        batch = arr[None] if single else arr
        if batch.ndim != 3 or batch.shape[1:] != (28, 28):
            raise ValueError(f"images must be (28, 28) or (N, 28, 28); got shape {arr.shape}")
        if batch.dtype != np.uint8:
            batch = np.clip(np.nan_to_num(batch), 0, 255).astype(np.uint8)
        if not self._warm:
            self.warm_up()
        out = self._forward(batch).numpy().astype(np.float32, copy=False)
        return out[0] if single else out


_predictors: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_predictors_lock = threading.Lock()


def predictor_for(model: Any) -> Predictor:
    """The Predictor of this model: made on first use, kept for as long as the model lives.

    Args:
        model: a Keras model as accepted by Predictor.

    Returns:
        The same Predictor for every call with the same model object.
    """
    with _predictors_lock:
        predictor = _predictors.get(model)
        if predictor is None:
            predictor = _predictors[model] = Predictor(model)
            predictor._keep = None  # the cache lives only as long as the model: hold no strong reference
    return predictor
