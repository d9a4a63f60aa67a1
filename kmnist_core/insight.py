"""Look inside: the data explorer, a run's inspection and a drawing's evidence, in numpy and scikit-learn only.

Three groups of functions, each computed once and then cached, so that a page has its numbers at once:

- per dataset (the caller caches the result, e.g. in st.cache_resource keyed by data.fingerprint):
  class_table, sample_indices, mean_images, ink_histogram, unusual_samples, knn_mistakes,
  provenance, and explore(), which bundles them;
- per completed run (cached in the run folder: EMBEDDING_FILE, TRAIN_HIDDEN_FILE; the network from
  service.load_network): first_layer_weights, embedding, load_run_predictions, calibration, confident_mistakes,
  train_activations; every one refuses a run trained on other data than `data`;
- per drawing: evidence() (top classes, saliency, nearest training images), and inspect_report() /
  write_inspect_report(), the Inspect page's numbers for the CLI.

Saliency is gradient x input of the top class's probability, computed analytically
(inference.Network.input_gradient), not occlusion. Measured on the 8,000/2,000 subset with four trained
runs (TINY, [64, 32], ref-relu-adam, best-mlp), 100 test images each, blanking the 5 % of ink pixels a map
ranks highest (random ink pixels: 0.017-0.023):

| method | mean fall of the top-class probability (ref-relu-adam / best-mlp) | time per image (best-mlp) |
|---|---|---|
| gradient x input | 0.469 / 0.341 | 0.3 ms |
| occlusion, every ink pixel alone (one batch) | 0.472 / 0.344 | 17 ms |
| occlusion, 3x3 patches (one batch of 784) | 0.339 / 0.303 | 31 ms |
| occlusion, 2x2 patches | 0.309 / 0.248 | 46 ms |

Every method beat random pixels on 100 % of the images. Gradient x input is as faithful as exact
single-pixel occlusion (it is its first-order form: saliency[i, j] ~ the fall of the probability when that
pixel alone is blanked), more faithful than patch occlusion, which smears the map over 2-3 px, and 50-150x
faster, which leaves the 50 ms budget of the Draw page almost whole. Its known weakness, a vanishing
gradient at saturated probabilities, did not show: the gradient of the logit ranked pixels no better.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import service
from .config import TrainConfig
from .data import CLASSES, TFDS_SOURCE, Dataset, data_files, official_md5_applies, split_validation
from .errors import RunDataMismatchError, RunNotFoundError, StoreError
from .inference import Network, as_batch
from .records import Status
from .store import RunInfo, RunStore, write_atomic

log = logging.getLogger(__name__)

# Bump when a cached computation changes, so run folders' caches of the old one are recomputed, never reused.
VERSION = 1
N_CLASSES = len(CLASSES)
OFFICIAL_SPLIT = (60_000, 10_000)  # train, test images of the official distribution
EMBEDDING_FILE = "embedding-{method}.npz"  # in the run folder: embedding-pca.npz, embedding-tsne.npz
TRAIN_HIDDEN_FILE = "train-hidden.npz"  # in the run folder: the training split's last hidden layer
EMBEDDING_METHODS = ("pca", "tsne")
RELIABILITY_BINS = 15  # equal-width confidence bins, as in Guo et al. 2017 (arXiv:1706.04599)
HISTOGRAM_BINS = 20
CONFIDENT = 0.9  # a mistake made with at least this probability counts as a confident one
WEIGHT_UNITS = 64
NEIGHBOURS = 5
TOP_CLASSES = 3
# t-SNE: scikit-learn's defaults but 500 iterations instead of 1,000 (250 after the early exaggeration) and
# at most 2,000 points, to stay within the 30 s the Inspect page allows it. On the subset's 2,000 test images
# (ref-relu-adam, best-mlp): 500 iterations cost 22-23 CPU seconds (KL 1.198 / 0.783), 1,000 cost 45-46
# (KL 1.138 / 0.719); wall time on the 2 shared cores: 1,000 took 33 s at load 3.6 and 61-77 s at load 6-8,
# 500 took 22 s at load 6.4 and 26-45 s at load 8-10. Embedding.seconds records each computation's own time.
TSNE_MAX_POINTS = 2000
TSNE_SETTINGS: dict[str, Any] = {"perplexity": 30.0, "max_iter": 500, "init": "pca", "learning_rate": "auto",
                                 "random_state": 0}
TSNE_PCA_DIMS = 50  # wider activations are reduced to this by PCA first, the usual t-SNE preprocessing

_locks_guard = threading.Lock()
_locks: dict[Path, threading.Lock] = {}  # one computation per cache file and process at a time


# --- results: plain data ---


@dataclass(frozen=True)
class ClassCount:
    """One row of the class table."""

    index: int
    hiragana: str
    romaji: str
    codepoint: str  # "U+304A"
    train: int  # training split minus the validation hold-out: what a run fits on
    validation: int  # the default stratified hold-out (TrainConfig's val_fraction and seed)
    test: int

    @property
    def total(self) -> int:
        return self.train + self.validation + self.test


@dataclass(frozen=True)
class InkHistogram:
    """Ink mass per image (sum of pixels / 255, i.e. fully inked pixels' worth), one histogram per class."""

    edges: np.ndarray  # (B + 1,) float64, shared by every class so that the histograms overlay
    counts: np.ndarray  # (10, B) int64, row = class
    mean: np.ndarray  # (10,) float64 mean ink mass per class (nan for a class with no image)
    ink: np.ndarray  # (N,) float32 ink mass of every image


@dataclass(frozen=True)
class Unusual:
    """Per class, the images farthest from their class's mean image (euclidean on pixels / 255)."""

    indices: tuple[np.ndarray, ...]  # 10 x (k,) int64 into the split, farthest first
    distances: tuple[np.ndarray, ...]  # 10 x (k,) float32


@dataclass(frozen=True)
class Mistakes:
    """Misclassified test images; `probability` is the predicted class's, when a model gave one."""

    indices: np.ndarray  # (M,) int64 into the test split
    true: np.ndarray  # (M,) uint8
    pred: np.ndarray  # (M,) uint8
    probability: np.ndarray | None = None  # (M,) float32, in decreasing order when given

    def of_class(self, true: int) -> Mistakes:
        """The mistakes on images of one true class, in the same order."""
        keep = self.true == true
        return Mistakes(self.indices[keep], self.true[keep], self.pred[keep],
                        None if self.probability is None else self.probability[keep])

    def __len__(self) -> int:
        return len(self.indices)


@dataclass(frozen=True)
class DataFile:
    """One file a dataset was read from."""

    role: str  # "train images", "train labels", "test images", "test labels"
    name: str
    path: Path
    format: str  # "npz", "idx.gz" or "idx"
    size: int  # bytes
    md5_verified: bool  # official name and official size: load_folder checked its md5 against data.OFFICIAL_FILES


@dataclass(frozen=True)
class Provenance:
    """Where a dataset came from."""

    source: str  # data.source: the folder or "tensorflow-datasets"
    folder: Path | None
    origin: str  # "tfds" or "files"
    split: str  # "official" (60,000 / 10,000) or "subset"
    n_train: int
    n_test: int
    fingerprint: str
    files: tuple[DataFile, ...]  # train images, train labels, test images, test labels; () without a folder


@dataclass(frozen=True)
class DataExplorer:
    """Everything the Data page shows of one dataset but its seeded samples (sample_indices)."""

    classes: tuple[ClassCount, ...]  # CLASSES order
    provenance: Provenance
    mean_images: np.ndarray  # (10, 28, 28) float32, 0..255: mean training image per class
    ink: InkHistogram  # training split
    unusual: Unusual  # training split
    knn_mistakes: Mistakes | None  # test split; None when no k-NN predictions were given


@dataclass(frozen=True)
class WeightImages:
    """The first Dense layer's incoming weights of its strongest units, as images."""

    images: np.ndarray  # (K, 28, 28) float32: dense_1/kernel[:, unit] reshaped, in `units` order
    units: np.ndarray  # (K,) int64 unit indices, by decreasing norm
    norms: np.ndarray  # (K,) float32 L2 norm of each unit's 784 weights
    limit: float  # max |weight| over the images: colour range [-limit, limit] centres a diverging scale on 0


@dataclass(frozen=True)
class Embedding:
    """Test images placed in 2-D by their last-hidden-layer activations."""

    method: str  # "pca" or "tsne"
    coords: np.ndarray  # (M, 2) float32
    indices: np.ndarray  # (M,) int64 into the test split: all of it for PCA, at most TSNE_MAX_POINTS for t-SNE
    labels: np.ndarray  # (M,) uint8 true classes
    pred: np.ndarray  # (M,) uint8 the run's stored predictions
    misclassified: np.ndarray  # (M,) bool
    explained_variance: np.ndarray | None  # (2,) float32 share of variance per PCA axis; None for t-SNE
    seconds: float  # the computation's time when it was first made (not the cache read)
    layer: int  # the hidden layer used, 1-based (the last)


@dataclass(frozen=True)
class Calibration:
    """Top-label calibration: a reliability diagram, its expected calibration error and a confidence histogram."""

    edges: np.ndarray  # (B + 1,) float64 equal-width bin edges over [0, 1]; bin b is (edges[b], edges[b + 1]]
    confidence: np.ndarray  # (B,) float64 mean confidence per bin, nan when empty
    accuracy: np.ndarray  # (B,) float64 accuracy per bin, nan when empty
    count: np.ndarray  # (B,) int64 images per bin
    ece: float  # sum over bins of count / N * |accuracy - confidence|
    mce: float  # largest |accuracy - confidence| over non-empty bins
    mean_confidence: float
    overall_accuracy: float
    hist_edges: np.ndarray  # (H + 1,) float64 over [0, 1]
    hist_correct: np.ndarray  # (H,) int64 confidences of correct predictions
    hist_wrong: np.ndarray  # (H,) int64 confidences of mistakes


@dataclass(frozen=True)
class TrainActivations:
    """The training split's last-hidden-layer activations under one run's network, for nearest neighbours."""

    hidden: np.ndarray  # (N_train, units) float32, read-only
    labels: np.ndarray  # (N_train,) uint8
    layer: int  # 1-based hidden layer (the last)
    seconds: float  # the forward pass's time when it was first computed
    sqnorm: np.ndarray = field(init=False, repr=False)  # (N_train,) float32 squared norms of the rows

    def __post_init__(self) -> None:
        sqnorm = np.einsum("ij,ij->i", self.hidden, self.hidden)
        sqnorm.flags.writeable = False
        object.__setattr__(self, "sqnorm", sqnorm)

    def nearest(self, hidden: np.ndarray, k: int = NEIGHBOURS) -> tuple[np.ndarray, np.ndarray]:
        """The k training images nearest to one activation vector (euclidean).

        Args:
            hidden: (units,) activations of the same layer of the same network.
            k: how many.

        Returns:
            (indices (k,) int64 into the training split, distances (k,) float32), nearest first; ties by index.

        Raises:
            ValueError: if `hidden` has another width than the stored activations.
        """
        q = np.asarray(hidden, dtype=np.float32).reshape(-1)  # (units,)
        if q.shape != self.hidden.shape[1:]:
            raise ValueError(f"activations must have shape {self.hidden.shape[1:]}; got {np.shape(hidden)}")
        k = min(k, len(self.hidden))
        # |a - q|^2 = |a|^2 - 2 a.q + |q|^2 ranks all candidates in one matrix-vector product; its float32
        # cancellation error is then removed by computing the few best exactly.
        approx = self.sqnorm - 2 * (self.hidden @ q)  # (N_train,) float32, |q|^2 left out: same order
        m = min(len(approx), max(4 * k, k + 16))
        candidates = np.argpartition(approx, m - 1)[:m] if m < len(approx) else np.arange(len(approx))
        exact = np.sqrt(((self.hidden[candidates].astype(np.float64) - q) ** 2).sum(axis=1))  # (m,) float64
        order = np.lexsort((candidates, exact))[:k]
        return candidates[order].astype(np.int64), exact[order].astype(np.float32)


@dataclass(frozen=True)
class Evidence:
    """Why a run predicts what it predicts for one drawing."""

    proba: np.ndarray  # (10,) float32
    top_classes: np.ndarray  # (TOP_CLASSES,) int64, most probable first
    top_proba: np.ndarray  # (TOP_CLASSES,) float32
    saliency: np.ndarray  # (28, 28) float32 gradient x input of the top class's probability: > 0 supports it
    limit: float  # max |saliency|: colour range [-limit, limit]; 0 for an empty image
    neighbours: np.ndarray  # (k,) int64 indices into the training split, nearest first
    neighbour_labels: np.ndarray  # (k,) uint8
    neighbour_distances: np.ndarray  # (k,) float32, in the last hidden layer


# --- per dataset ---


def class_table(data: Dataset, val_fraction: float | None = None, seed: int | None = None) -> tuple[ClassCount, ...]:
    """Counts per class and split.

    Args:
        data: the dataset.
        val_fraction: the validation hold-out's share; default TrainConfig()'s.
        seed: the hold-out's seed; default TrainConfig()'s.

    Returns:
        10 ClassCount rows in CLASSES order; train + validation add up to len(data.y_train) and test to
        len(data.y_test).
    """
    defaults = TrainConfig()
    fraction = defaults.val_fraction if val_fraction is None else val_fraction
    seed = defaults.seed if seed is None else seed
    train_idx, val_idx = split_validation(data.y_train, fraction, seed)
    train = np.bincount(data.y_train[train_idx], minlength=N_CLASSES)
    val = np.bincount(data.y_train[val_idx], minlength=N_CLASSES)
    test = np.bincount(data.y_test, minlength=N_CLASSES)
    return tuple(ClassCount(c.index, c.hiragana, c.romaji, c.codepoint, int(train[c.index]), int(val[c.index]),
                            int(test[c.index])) for c in CLASSES)


def sample_indices(labels: np.ndarray, per_class: int = 8, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Random images of each class; another seed reshuffles them.

    Args:
        labels: (N,) labels of a split.
        per_class: how many per class.
        seed: which ones.

    Returns:
        10 arrays (per_class,) int64 into the split (shorter for a class with fewer images), in CLASSES order.
    """
    rng = np.random.default_rng(seed)
    return tuple(rng.permutation(np.flatnonzero(labels == c))[:per_class].astype(np.int64) for c in range(N_CLASSES))


def mean_images(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each class's mean image.

    Args:
        images: (N, 28, 28) uint8.
        labels: (N,) uint8.

    Returns:
        (10, 28, 28) float32 in pixel units 0..255; zeros for a class with no image.
    """
    out = np.zeros((N_CLASSES, 28, 28), np.float32)
    for c in range(N_CLASSES):
        members = images[labels == c]  # (n_c, 28, 28) uint8
        if len(members):
            out[c] = members.mean(axis=0, dtype=np.float64)
    return out


def ink_mass(images: np.ndarray) -> np.ndarray:
    """(N,) float32: each image's sum of pixels / 255."""
    return (images.reshape(len(images), -1).sum(axis=1, dtype=np.int64) / 255).astype(np.float32)


def ink_histogram(images: np.ndarray, labels: np.ndarray, bins: int = 40) -> InkHistogram:
    """The distribution of ink mass per class.

    Args:
        images: (N, 28, 28) uint8.
        labels: (N,) uint8.
        bins: histogram bins, shared by every class.

    Returns:
        The InkHistogram.
    """
    ink = ink_mass(images)  # (N,) float32
    edges = np.histogram_bin_edges(ink, bins=bins)
    counts = np.stack([np.histogram(ink[labels == c], bins=edges)[0] for c in range(N_CLASSES)]).astype(np.int64)
    sums = np.bincount(labels, weights=ink, minlength=N_CLASSES)
    n = np.bincount(labels, minlength=N_CLASSES)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, sums / np.maximum(n, 1), np.nan)
    return InkHistogram(edges, counts, mean, ink)


def unusual_samples(images: np.ndarray, labels: np.ndarray, k: int = 8, means: np.ndarray | None = None) -> Unusual:
    """The k images of each class farthest from their class's mean image.

    Args:
        images: (N, 28, 28) uint8.
        labels: (N,) uint8.
        k: how many per class.
        means: (10, 28, 28) mean_images(images, labels), if already computed.

    Returns:
        The Unusual indices and distances (euclidean on pixels / 255), farthest first.
    """
    means = mean_images(images, labels) if means is None else means
    indices, distances = [], []
    for c in range(N_CLASSES):
        idx = np.flatnonzero(labels == c)
        diff = images[idx].reshape(len(idx), -1).astype(np.float32) - means[c].reshape(-1)  # (n_c, 784)
        dist = np.sqrt(np.einsum("ij,ij->i", diff, diff)) / 255  # (n_c,) float32
        order = np.lexsort((idx, -dist))[:k]  # farthest first, ties by index
        indices.append(idx[order].astype(np.int64))
        distances.append(dist[order].astype(np.float32))
    return Unusual(tuple(indices), tuple(distances))


def knn_mistakes(labels: np.ndarray, knn_pred: np.ndarray, knn_proba: np.ndarray | None = None) -> Mistakes:
    """The test images a k-NN baseline misclassified (baselines.load_baselines(...)["knn4"].test_pred).

    Args:
        labels: (N,) true test labels.
        knn_pred: (N,) the baseline's predictions.
        knn_proba: (N, 10) its vote shares, to sort by the predicted class's share; None keeps index order.

    Returns:
        The Mistakes.

    Raises:
        ValueError: if the predictions do not have one entry per test label.
    """
    labels, knn_pred = np.asarray(labels), np.asarray(knn_pred)
    if knn_pred.shape != labels.shape:
        raise ValueError(f"k-NN predictions must have shape {labels.shape}, one per test image; got {knn_pred.shape}")
    wrong = np.flatnonzero(knn_pred != labels)
    if knn_proba is None:
        return Mistakes(wrong.astype(np.int64), labels[wrong].astype(np.uint8), knn_pred[wrong].astype(np.uint8))
    p = np.asarray(knn_proba, dtype=np.float32)[wrong, knn_pred[wrong]]
    order = np.lexsort((wrong, -p))
    wrong = wrong[order]
    return Mistakes(wrong.astype(np.int64), labels[wrong].astype(np.uint8), knn_pred[wrong].astype(np.uint8),
                    p[order])


def provenance(data: Dataset) -> Provenance:
    """Where a dataset came from: its files, their format and size, which were md5-verified, the split.

    Args:
        data: the dataset, as load_kmnist returned it.

    Returns:
        The Provenance; md5_verified is what load_folder checked when the data was loaded (the files'
        official names and sizes are looked up, nothing is hashed again).
    """
    roles = {("train", "imgs"): "train images", ("train", "labels"): "train labels",
             ("test", "imgs"): "test images", ("test", "labels"): "test labels"}
    files = []
    if data.folder is not None:
        for slot, path in data_files(data.folder).items():
            if path is None:
                continue
            fmt = "npz" if path.suffix == ".npz" else "idx.gz" if path.suffix == ".gz" else "idx"
            files.append(DataFile(roles[slot], path.name, path, fmt, path.stat().st_size, official_md5_applies(path)))
    sizes = (len(data.y_train), len(data.y_test))
    return Provenance(data.source, data.folder, "tfds" if data.source == TFDS_SOURCE else "files",
                      "official" if sizes == OFFICIAL_SPLIT else "subset", *sizes, data.fingerprint, tuple(files))


def explore(data: Dataset, knn_pred: np.ndarray | None = None, knn_proba: np.ndarray | None = None,
            unusual: int = 8) -> DataExplorer:
    """The Data page's numbers of one dataset, computed once (about 0.1 s on the subset; cache the result).

    Args:
        data: the dataset.
        knn_pred: (N_test,) 4-NN test predictions when the baselines are cached, else None.
        knn_proba: (N_test, 10) their vote shares, to sort the mistakes; optional.
        unusual: how many unusual training images per class.

    Returns:
        The DataExplorer.

    Raises:
        ValueError: if knn_pred does not have one entry per test image.
    """
    means = mean_images(data.x_train, data.y_train)
    return DataExplorer(
        classes=class_table(data),
        provenance=provenance(data),
        mean_images=means,
        ink=ink_histogram(data.x_train, data.y_train),
        unusual=unusual_samples(data.x_train, data.y_train, unusual, means),
        knn_mistakes=None if knn_pred is None else knn_mistakes(data.y_test, knn_pred, knn_proba),
    )


# --- per run ---


def checked_run(store: RunStore, run_id: str, data: Dataset, what: str = "results", split: str = "test") -> RunInfo:
    """A completed run, checked to have been trained and tested on `data`.

    Args:
        store: the run store.
        run_id: the run.
        data: the loaded dataset.
        what: names what cannot be matched, in the refusal ("embedding", "predictions", ...).
        split: names the split, in the refusal.

    Returns:
        The run's RunInfo.

    Raises:
        RunNotFoundError: no such run, or it did not complete.
        StoreError: the run folder is damaged.
        RunDataMismatchError: its config key is not config.key(data.fingerprint): one line saying so.
    """
    info = store.get(run_id)
    if info.status == Status.BROKEN:
        raise StoreError(f"run {run_id} is damaged: {info.reason}")
    if not info.completed:
        raise RunNotFoundError(f"run {run_id} is {info.status}, not completed: only completed runs can be inspected")
    if not service.same_data(info, data):
        raise RunDataMismatchError(
            f"run {run_id} was trained on other data than {data.source} (data fingerprint {data.fingerprint}): "
            f"its {what} cannot be matched to this dataset's {split} images")
    return info


def load_run_predictions(store: RunStore, run_id: str, data: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """A run's stored test predictions, checked against the dataset.

    Args:
        store: the run store.
        run_id: a completed run.
        data: the loaded dataset.

    Returns:
        (pred (N_test,) uint8, proba (N_test, 10) float32), aligned with data.y_test.

    Raises:
        RunNotFoundError, StoreError, RunDataMismatchError: as checked_run; StoreError also when the
            stored predictions do not have one row per test image.
    """
    return _predictions(store, checked_run(store, run_id, data, "predictions"), data)


def _predictions(store: RunStore, info: RunInfo, data: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """load_run_predictions of a run checked_run has passed."""
    run_id = info.run_id
    pred, proba = store.load_predictions(run_id)
    if pred.shape != data.y_test.shape or proba.shape != (len(data.y_test), N_CLASSES):
        raise StoreError(f"run {run_id}: predictions.npz holds {len(pred):,} predictions, "
                         f"not one per test image ({len(data.y_test):,})")
    return pred, proba


def last_hidden(net: Network, images: np.ndarray, batch: int = 4096) -> np.ndarray:
    """The last hidden layer's activations, in batches (bounded memory on the official 60,000 images).

    Args:
        net: the network.
        images: (N, 28, 28) uint8.
        batch: images per forward pass.

    Returns:
        (N, units_L) float32.
    """
    parts = [net.hidden(images[i : i + batch])[-1] for i in range(0, len(images), batch)]
    return np.concatenate(parts) if parts else np.zeros((0, net.hidden_layers[-1]), np.float32)


def first_layer_weights(net: Network, top: int = WEIGHT_UNITS) -> WeightImages:
    """The first Dense layer's strongest units as 28x28 weight images.

    Args:
        net: the run's network.
        top: how many units (all of them when the layer is narrower).

    Returns:
        The WeightImages, strongest (largest L2 norm of incoming weights) first; ties by unit index.
    """
    kernel = net.kernels[0]  # (784, units) float32
    norms = np.sqrt(np.einsum("ij,ij->j", kernel, kernel))  # (units,) float32
    units = np.lexsort((np.arange(len(norms)), -norms))[:top].astype(np.int64)
    images = np.ascontiguousarray(kernel[:, units].T).reshape(len(units), 28, 28)  # (K, 28, 28) float32
    limit = float(np.abs(images).max()) if images.size else 0.0
    return WeightImages(images, units, norms[units], limit)


def embedding(store: RunStore, run_id: str, data: Dataset, method: str = "pca", net: Network | None = None,
              max_points: int = TSNE_MAX_POINTS) -> Embedding:
    """The test images in 2-D by their last-hidden-layer activations, cached in the run folder.

    PCA (scikit-learn, fitted on the test activations) takes well under a second; t-SNE costs ~22 CPU
    seconds on 2,000 images (see TSNE_SETTINGS), so compute it only when asked for; then it is read from the cache.

    Args:
        store: the run store.
        run_id: a completed run.
        data: the loaded dataset, the one the run was trained on.
        method: "pca" or "tsne".
        net: the run's network, if already loaded.
        max_points: t-SNE places a seeded random subset of at most this many test images (PCA places all).

    Returns:
        The Embedding; read from EMBEDDING_FILE when cached there with this run's key and settings.

    Raises:
        ValueError: an unknown method.
        RunNotFoundError, StoreError: as checked_run and load_network.
        RunDataMismatchError: the run was trained on other data: its embedding cannot be matched to the test images.
    """
    if method not in EMBEDDING_METHODS:
        raise ValueError(f"method must be one of {', '.join(EMBEDDING_METHODS)}; got {method!r}")
    info = checked_run(store, run_id, data, "embedding")
    pred, _ = _predictions(store, info, data)
    path, key = info.path / EMBEDDING_FILE.format(method=method), _cache_key(info, _settings(method, max_points))
    with _lock_for(path):
        cached = _read_cache(path, key)
        if cached is None:
            net = service.load_network(store, run_id) if net is None else net
            cached = _compute_embedding(net, data, method, max_points)
            _write_cache(path, key, cached)
    idx = cached["indices"]
    explained = cached["explained_variance"]
    labels, pred = data.y_test[idx], pred[idx]
    return Embedding(method, cached["coords"], idx, labels, pred, labels != pred,
                     explained if explained.size else None, float(cached["seconds"]), int(cached["layer"]))


def cached_embedding(store: RunStore, run_id: str, data: Dataset, method: str = "tsne",
                     max_points: int = TSNE_MAX_POINTS) -> Embedding | None:
    """The embedding if its run folder already caches it, else None: nothing slow is computed.

    Raises:
        The errors of embedding().
    """
    if method not in EMBEDDING_METHODS:
        raise ValueError(f"method must be one of {', '.join(EMBEDDING_METHODS)}; got {method!r}")
    info = checked_run(store, run_id, data, "embedding")
    path = info.path / EMBEDDING_FILE.format(method=method)
    if _read_cache(path, _cache_key(info, _settings(method, max_points))) is None:
        return None
    return embedding(store, run_id, data, method, max_points=max_points)


def _settings(method: str, max_points: int) -> str:
    """What besides the run an embedding depends on, for its cache key."""
    return "pca" if method == "pca" else f"tsne|{sorted(TSNE_SETTINGS.items())}|{max_points}|{TSNE_PCA_DIMS}"


def _compute_embedding(net: Network, data: Dataset, method: str, max_points: int) -> dict[str, np.ndarray]:
    """The arrays an embedding cache holds."""
    from sklearn.decomposition import PCA

    started = time.perf_counter()
    n = len(data.x_test)
    if method == "pca":
        idx = np.arange(n, dtype=np.int64)
    else:
        idx = np.sort(np.random.default_rng(0).choice(n, min(n, max_points), replace=False)).astype(np.int64)
    hidden = last_hidden(net, data.x_test[idx])  # (M, units) float32
    explained = np.zeros(0, np.float32)
    if method == "pca":
        pca = PCA(n_components=2, svd_solver="covariance_eigh")
        coords = pca.fit_transform(hidden)
        explained = pca.explained_variance_ratio_.astype(np.float32)
    else:
        from sklearn.manifold import TSNE

        if hidden.shape[1] > TSNE_PCA_DIMS:
            hidden = PCA(n_components=TSNE_PCA_DIMS, svd_solver="covariance_eigh").fit_transform(hidden)
        coords = TSNE(n_components=2, **TSNE_SETTINGS).fit_transform(hidden)
    return {"coords": coords.astype(np.float32), "indices": idx, "explained_variance": explained,
            "seconds": np.array(time.perf_counter() - started), "layer": np.array(len(net.hidden_layers))}


def train_activations(store: RunStore, run_id: str, data: Dataset, net: Network | None = None) -> TrainActivations:
    """The training split's last-hidden-layer activations, for the nearest neighbours of a drawing.

    Computed once per run (~0.1 s for [128, 64], ~0.6 s for [1024, 512] on the 8,000 subset images) and
    cached in the run folder as TRAIN_HIDDEN_FILE; cache the result per run as well.

    Args:
        store: the run store.
        run_id: a completed run.
        data: the loaded dataset, the one the run was trained on.
        net: the run's network, if already loaded.

    Returns:
        The TrainActivations, indexed like data.x_train.

    Raises:
        RunNotFoundError, StoreError: as checked_run and load_network.
        RunDataMismatchError: the run was trained on other data.
    """
    info = checked_run(store, run_id, data, "training activations", "training")
    path, key = info.path / TRAIN_HIDDEN_FILE, _cache_key(info, "")
    with _lock_for(path):
        cached = _read_cache(path, key)
        if cached is None:
            net = service.load_network(store, run_id) if net is None else net
            started = time.perf_counter()
            hidden = last_hidden(net, data.x_train)
            cached = {"hidden": hidden, "seconds": np.array(time.perf_counter() - started),
                      "layer": np.array(len(net.hidden_layers))}
            _write_cache(path, key, cached)
    hidden = cached["hidden"]
    if hidden.shape[0] != len(data.y_train):
        raise StoreError(f"run {run_id}: {TRAIN_HIDDEN_FILE} holds {hidden.shape[0]:,} rows, "
                         f"not one per training image ({len(data.y_train):,}); delete it to recompute")
    hidden.flags.writeable = False
    return TrainActivations(hidden, data.y_train, int(cached["layer"]), float(cached["seconds"]))


def calibration(proba: np.ndarray, labels: np.ndarray, bins: int = RELIABILITY_BINS,
                hist_bins: int = HISTOGRAM_BINS) -> Calibration:
    """Top-label calibration of predicted probabilities.

    Args:
        proba: (N, 10) class probabilities.
        labels: (N,) true classes.
        bins: equal-width reliability bins over [0, 1].
        hist_bins: bins of the confidence histogram.

    Returns:
        The Calibration of confidence = proba.max(axis=1) against correct = argmax == label.
    """
    proba = np.asarray(proba)
    confidence = proba.max(axis=1).astype(np.float64)
    correct = proba.argmax(axis=1) == np.asarray(labels)
    return calibration_of(confidence, correct, bins, hist_bins)


def calibration_of(confidence: np.ndarray, correct: np.ndarray, bins: int = RELIABILITY_BINS,
                   hist_bins: int = HISTOGRAM_BINS) -> Calibration:
    """Calibration from confidences and correctness directly (calibration() for any top-label predictor).

    Args:
        confidence: (N,) the probability given to each predicted label, 0..1.
        correct: (N,) bool, whether each prediction was right.
        bins: equal-width reliability bins over [0, 1]; bin b holds confidences in (b / B, (b + 1) / B],
            and the first also holds 0.
        hist_bins: bins of the confidence histogram.

    Returns:
        The Calibration; its ece is 0.0 for no images.
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.searchsorted(edges[1:-1], confidence, side="left")  # (N,) bin of each confidence
    count = np.bincount(which, minlength=bins).astype(np.int64)
    conf_sum = np.bincount(which, weights=confidence, minlength=bins)
    hit_sum = np.bincount(which, weights=correct, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(count > 0, conf_sum / np.maximum(count, 1), np.nan)
        accuracy = np.where(count > 0, hit_sum / np.maximum(count, 1), np.nan)
    gap = np.abs(accuracy - mean_conf)
    n = len(confidence)
    ece = float(np.nansum(count / max(n, 1) * gap))
    mce = float(np.nanmax(gap)) if (count > 0).any() else 0.0
    hist_edges = np.linspace(0.0, 1.0, hist_bins + 1)
    return Calibration(
        edges, mean_conf, accuracy, count, ece, mce,
        float(confidence.mean()) if n else float("nan"), float(correct.mean()) if n else float("nan"),
        hist_edges, np.histogram(confidence[correct], hist_edges)[0].astype(np.int64),
        np.histogram(confidence[~correct], hist_edges)[0].astype(np.int64),
    )


def confident_mistakes(proba: np.ndarray, labels: np.ndarray, n: int = 24) -> Mistakes:
    """The mistakes made with the highest probability.

    Args:
        proba: (N, 10) class probabilities.
        labels: (N,) true classes.
        n: how many.

    Returns:
        Mistakes sorted by the predicted class's probability, highest first (ties by index).
    """
    proba, labels = np.asarray(proba), np.asarray(labels)
    pred = proba.argmax(axis=1)
    wrong = np.flatnonzero(pred != labels)
    p = proba[wrong, pred[wrong]].astype(np.float32)
    order = np.lexsort((wrong, -p))[:n]
    wrong = wrong[order]
    return Mistakes(wrong.astype(np.int64), labels[wrong].astype(np.uint8), pred[wrong].astype(np.uint8), p[order])


def confident_mistake_counts(proba: np.ndarray, labels: np.ndarray, threshold: float = CONFIDENT) -> np.ndarray:
    """(10,) int64: per true class, the mistakes made with a probability of at least `threshold`."""
    proba, labels = np.asarray(proba), np.asarray(labels)
    pred = proba.argmax(axis=1)
    confident = (pred != labels) & (proba.max(axis=1) >= threshold)
    return np.bincount(labels[confident], minlength=N_CLASSES).astype(np.int64)


# --- per drawing ---


def saliency(net: Network, image: np.ndarray, target: int | None = None) -> np.ndarray:
    """Gradient x input of one class's probability: which ink drove the prediction (see the module docstring).

    Args:
        net: the run's network.
        image: (28, 28), as for Network.proba (uint8 from drawing.preprocess_canvas).
        target: the class; default the most probable one.

    Returns:
        (28, 28) float32; each pixel ~ the fall of the class's probability if it alone were blanked
        (first order). Pixels without ink are 0.

    Raises:
        ValueError: if the image is not (28, 28) or the class is not 0..9.
    """
    batch, single = as_batch(image)
    if not single:
        raise ValueError(f"image must be one (28, 28) image; got shape {np.shape(image)}")
    grad = net.input_gradient(batch[0], target)  # (28, 28) float32
    return grad * (batch[0].astype(np.float32) / 255)


def evidence(net: Network, image: np.ndarray, train: TrainActivations, k: int = NEIGHBOURS,
             top: int = TOP_CLASSES) -> Evidence:
    """Top classes, a saliency map and the nearest training images of one drawing (well under 50 ms).

    Args:
        net: the run's network.
        image: (28, 28) uint8, e.g. from drawing.preprocess_canvas.
        train: train_activations() of the same run.
        k: how many neighbours.
        top: how many top classes.

    Returns:
        The Evidence.

    Raises:
        ValueError: if the image is not (28, 28), or `train` is of a network with another last layer.
    """
    batch, single = as_batch(image)
    if not single:
        raise ValueError(f"image must be one (28, 28) image; got shape {np.shape(image)}")
    proba, hidden = net.forward(batch[0])  # (10,), [(units_i,)]
    top_classes = np.argsort(-proba, kind="stable")[:top].astype(np.int64)
    sal = saliency(net, batch[0], int(top_classes[0]))
    idx, dist = train.nearest(hidden[-1], k)
    return Evidence(proba, top_classes, proba[top_classes], sal, float(np.abs(sal).max()), idx,
                    train.labels[idx], dist)


# --- the CLI twin of the Inspect page ---


def inspect_report(store: RunStore, run_id: str, data: Dataset, net: Network | None = None,
                   mistakes: int = 24) -> dict[str, Any]:
    """The numbers behind the Inspect page's figures, JSON-ready (no NaN: empty bins are None).

    Args:
        store: the run store.
        run_id: a completed run.
        data: the loaded dataset, the one the run was trained on.
        net: the run's network, if already loaded.
        mistakes: how many confident mistakes to list.

    Returns:
        A dict: run_id, key, data_source, fingerprint, test_accuracy, calibration (bins, ece, mce,
        histogram), confident_mistakes (threshold, per_class counts, the top list), weights (units, norms,
        limit; the images themselves are weights.npz's dense_1/kernel columns), embedding (PCA: explained
        variance, per-class centroids, coords, labels, pred) and tsne (the same, if the run folder caches it).

    Raises:
        RunNotFoundError, StoreError, RunDataMismatchError: as embedding().
    """
    info = checked_run(store, run_id, data, "report")
    net = service.load_network(store, run_id) if net is None else net
    pred, proba = _predictions(store, info, data)
    cal = calibration(proba, data.y_test)
    top = confident_mistakes(proba, data.y_test, mistakes)
    weights = first_layer_weights(net)
    pca = embedding(store, run_id, data, "pca", net)
    tsne = cached_embedding(store, run_id, data, "tsne")
    return {
        "run_id": run_id,
        "key": info.key,
        "data_source": data.source,
        "fingerprint": data.fingerprint,
        "test_accuracy": float((pred == data.y_test).mean()),
        "calibration": {
            "bins": len(cal.count), "edges": cal.edges.tolist(), "confidence": _json_floats(cal.confidence),
            "accuracy": _json_floats(cal.accuracy), "count": cal.count.tolist(), "ece": cal.ece, "mce": cal.mce,
            "mean_confidence": cal.mean_confidence, "accuracy_overall": cal.overall_accuracy,
            "histogram": {"edges": cal.hist_edges.tolist(), "correct": cal.hist_correct.tolist(),
                          "wrong": cal.hist_wrong.tolist()},
        },
        "confident_mistakes": {
            "threshold": CONFIDENT,
            "per_class": confident_mistake_counts(proba, data.y_test).tolist(),
            "top": [{"index": int(i), "true": int(t), "pred": int(p), "probability": float(q)}
                    for i, t, p, q in zip(top.indices, top.true, top.pred, top.probability, strict=True)],
        },
        "weights": {"units": weights.units.tolist(), "norms": weights.norms.tolist(), "limit": weights.limit},
        "embedding": _embedding_json(pca),
        "tsne": None if tsne is None else _embedding_json(tsne),
    }


def write_inspect_report(store: RunStore, run_id: str, data: Dataset, path: str | Path,
                         net: Network | None = None) -> dict[str, Any]:
    """Write inspect_report() to a JSON file atomically.

    Args:
        store, run_id, data, net: as inspect_report.
        path: the JSON file to write.

    Returns:
        The report written.

    Raises:
        StoreError: one line naming the file if it cannot be written; and the errors of inspect_report.
    """
    report = inspect_report(store, run_id, data, net)
    path = Path(path)
    try:
        write_atomic(path, json.dumps(report, indent=1, allow_nan=False).encode())
    except OSError as e:
        raise StoreError(f"cannot write {path} ({e.strerror or e})") from e
    return report


def _embedding_json(emb: Embedding) -> dict[str, Any]:
    centroids = [emb.coords[emb.labels == c].mean(axis=0).tolist() if (emb.labels == c).any() else None
                 for c in range(N_CLASSES)]
    return {
        "method": emb.method, "layer": emb.layer, "seconds": emb.seconds,
        "explained_variance": None if emb.explained_variance is None else emb.explained_variance.tolist(),
        "misclassified": int(emb.misclassified.sum()), "centroids": centroids,
        "indices": emb.indices.tolist(), "coords": np.round(emb.coords, 5).tolist(),
        "labels": emb.labels.tolist(), "pred": emb.pred.tolist(),
    }


def _json_floats(values: Sequence[float]) -> list[float | None]:
    """Floats for JSON, None for NaN."""
    return [None if np.isnan(v) else float(v) for v in values]


# --- run-folder caches ---


def _cache_key(info: RunInfo, settings: str) -> str:
    """What a cache must have been made for: this method version, this run's config key, these settings."""
    return f"v{VERSION}|{info.key}|{settings}"


def _lock_for(path: Path) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(path, threading.Lock())


def _read_cache(path: Path, key: str) -> dict[str, np.ndarray] | None:
    """A cache file's arrays, or None when it is missing, damaged or made for another key."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            if str(npz["key"]) != key:
                return None
            return {name: npz[name] for name in npz.files if name != "key"}
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        log.warning("ignoring damaged cache %s (%s: %s)", path, type(e).__name__, e)
        return None


def _write_cache(path: Path, key: str, arrays: dict[str, np.ndarray]) -> None:
    """Write a cache file atomically; a store that cannot be written is logged, the result is still used."""
    buf = io.BytesIO()
    np.savez(buf, key=np.array(key), **arrays)
    try:
        write_atomic(path, buf.getvalue())
    except OSError as e:
        log.warning("not cached: cannot write %s (%s)", path, e.strerror or e)
