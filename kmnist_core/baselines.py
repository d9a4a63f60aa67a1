"""Classic KMNIST baselines (4-NN, PCA(50) + 4-NN) with scikit-learn, cached per dataset in the run store."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import evaluate
from .data import Dataset
from .errors import StoreError
from .store import RunStore, write_atomic

log = logging.getLogger(__name__)

# Bump when the method changes, so caches of the old method are recomputed, never reused.
VERSION = 1
K = 4  # the KMNIST paper's k
PCA_COMPONENTS = 50

# Settings that reproduce the kmnist-subset README (0.9055 and 0.9335); any scaling (raw uint8 or /255)
# and any exact PCA solver give the same figures. weights="distance" does not (0.9145 and 0.9430).
BASELINES: dict[str, tuple[str, str]] = {
    "knn4": ("4-NN (raw pixels)", "KNeighborsClassifier(n_neighbors=4) on pixels / 255, euclidean, uniform votes"),
    "pca50-knn4": ("PCA(50) + 4-NN", "PCA(n_components=50, svd_solver='covariance_eigh') fit on the training split, "
                                      "then KNeighborsClassifier(n_neighbors=4), euclidean, uniform votes"),
}
"""Baseline name -> (label, exact method), in display order."""

_lock = threading.Lock()  # one computation per process at a time: the dashboard and a job may both ask


@dataclass
class Baseline:
    """One baseline's test-split results; the same fields as a trained run's TrainResult where they overlap."""

    name: str  # a key of BASELINES, e.g. "knn4"
    label: str  # "4-NN (raw pixels)"
    method: str  # the exact scikit-learn settings
    test_accuracy: float
    confusion: np.ndarray  # (10, 10) int, rows true, columns predicted
    per_class: dict[str, list[float]]  # precision, recall, f1, support per class
    seconds: float  # fit + predict time when it was computed
    test_pred: np.ndarray = field(repr=False)  # (N_test,) uint8
    test_proba: np.ndarray = field(repr=False)  # (N_test, 10) float32: share of the 4 neighbours' votes

    def metrics(self) -> dict[str, Any]:
        """JSON-ready summary, shaped like a run's metrics.json where the keys overlap."""
        return {
            "name": self.name,
            "label": self.label,
            "method": self.method,
            "test_accuracy": self.test_accuracy,
            "confusion": self.confusion.tolist(),
            "per_class": self.per_class,
            "seconds": self.seconds,
        }


def _pixels(images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) uint8 -> (N, 784) float32 in [0, 1], as the MLP sees them."""
    return images.reshape(len(images), -1).astype(np.float32) / 255


def _knn_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pred uint8, vote shares float32) of a uniform-vote euclidean 4-NN."""
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier(n_neighbors=K).fit(x_train, y_train)
    votes = np.zeros((len(x_test), 10), np.float32)
    votes[:, knn.classes_] = knn.predict_proba(x_test)
    # Ties go to the lowest class id, exactly as KNeighborsClassifier.predict breaks them.
    return votes.argmax(axis=1).astype(np.uint8), votes


def _result(name: str, data: Dataset, pred: np.ndarray, proba: np.ndarray, seconds: float) -> Baseline:
    label, method = BASELINES[name]
    return Baseline(name, label, method, evaluate.accuracy(data.y_test, pred), evaluate.confusion(data.y_test, pred),
                    evaluate.per_class_metrics(data.y_test, pred), seconds, pred, proba)


def compute_baselines(data: Dataset) -> dict[str, Baseline]:
    """Fit both baselines on the training split (all of it: k-NN has nothing to tune) and score the test split.

    Args:
        data: the loaded dataset.

    Returns:
        BASELINES' names -> Baseline, in display order. About 5 s on the 8,000-image subset.
    """
    from sklearn.decomposition import PCA

    x_train, x_test = _pixels(data.x_train), _pixels(data.x_test)  # (N, 784) float32
    results = {}
    t = time.perf_counter()
    pred, proba = _knn_predict(x_train, data.y_train, x_test)
    results["knn4"] = _result("knn4", data, pred, proba, time.perf_counter() - t)
    t = time.perf_counter()
    pca = PCA(n_components=PCA_COMPONENTS, svd_solver="covariance_eigh").fit(x_train)
    pred, proba = _knn_predict(pca.transform(x_train), data.y_train, pca.transform(x_test))
    results["pca50-knn4"] = _result("pca50-knn4", data, pred, proba, time.perf_counter() - t)
    return results


def baselines_path(store: RunStore, data: Dataset) -> Path:
    """Where the baselines of this dataset are cached.

    Args:
        store: the run store; the cache sits in its root folder.
        data: the dataset; its fingerprint names the file.

    Returns:
        `<runs root>/baselines-<fingerprint>.json`; the predictions sit beside it in the .npz of the
        same stem. Run listing skips both: it lists only folders named like run ids.
    """
    return store.root / f"baselines-{data.fingerprint}.json"


def save_baselines(store: RunStore, data: Dataset, results: dict[str, Baseline]) -> Path:
    """Write the predictions (.npz) first and the summary (.json) last, each atomically.

    A reader that finds the json therefore finds whole predictions too.

    Args:
        store: the run store; its root folder is created if missing.
        data: the dataset the results are for.
        results: what compute_baselines returned.

    Returns:
        The json path.

    Raises:
        StoreError: if the store cannot be written.
    """
    path = baselines_path(store, data)
    buf = io.BytesIO()
    arrays = {}
    for name, b in results.items():
        arrays[f"{name}.pred"], arrays[f"{name}.proba"] = b.test_pred, b.test_proba
    np.savez_compressed(buf, **arrays)
    doc = {"version": VERSION, "fingerprint": data.fingerprint, "data_source": data.source,
           "created": time.time(), "baselines": [b.metrics() for b in results.values()]}
    try:
        store.root.mkdir(parents=True, exist_ok=True)
        write_atomic(path.with_suffix(".npz"), buf.getvalue())
        write_atomic(path, json.dumps(doc, indent=1).encode())
    except OSError as e:
        raise StoreError(f"cannot write baselines to {store.root} ({e.strerror or e})") from e
    return path


def load_baselines(store: RunStore, data: Dataset) -> dict[str, Baseline] | None:
    """Read the cached baselines of this dataset.

    Args:
        store: the run store holding the cache.
        data: the dataset; only a cache with its fingerprint counts.

    Returns:
        BASELINES' names -> Baseline, or None if there is no cache or it is damaged or out of date.
    """
    path = baselines_path(store, data)
    try:
        doc = json.loads(path.read_text())
        if doc.get("version") != VERSION or doc.get("fingerprint") != data.fingerprint:
            return None
        results = {}
        with np.load(path.with_suffix(".npz"), allow_pickle=False) as npz:
            for m in doc["baselines"]:
                name = m["name"]
                if name not in BASELINES:
                    return None
                results[name] = Baseline(
                    name, *BASELINES[name], float(m["test_accuracy"]), np.array(m["confusion"], dtype=np.int64),
                    m["per_class"], float(m["seconds"]), npz[f"{name}.pred"], npz[f"{name}.proba"])
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as e:
        log.warning("ignoring damaged baselines cache %s (%s: %s)", path, e.__class__.__name__, e)
        return None
    if list(results) != list(BASELINES) or any(len(b.test_pred) != len(data.y_test) for b in results.values()):
        return None
    return results


def load_or_compute_baselines(store: RunStore, data: Dataset) -> dict[str, Baseline]:
    """The baselines of this dataset: from the store's cache, else computed once and cached.

    A store that cannot be written is logged, not raised: the baselines are still returned.

    Args:
        store: the run store whose folder holds the cache.
        data: the loaded dataset; its fingerprint names the cache file.

    Returns:
        BASELINES' names -> Baseline, in display order.
    """
    with _lock:
        cached = load_baselines(store, data)
        if cached is not None:
            return cached
        results = compute_baselines(data)
        try:
            save_baselines(store, data, results)
        except StoreError as e:
            log.warning("baselines not cached: %s", e)
        return results
