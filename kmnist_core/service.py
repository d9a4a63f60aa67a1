"""What the pages decide, as core functions with CLI twins: cached runs, presets, default run, subjects, predictions."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .config import PRESETS, TrainConfig, train_flops_per_epoch
from .data import CLASSES, Dataset, KmnistClass
from .errors import RunNotFoundError, StoreError
from .inference import Network
from .records import EPOCH_KEYS, Status
from .store import RunInfo, RunStore

if TYPE_CHECKING:
    from .baselines import Baseline
    from .jobs import JobQueue


# --- runs: which one is trained, which one to show ---


def cached_run(store: RunStore, config: TrainConfig, data: Dataset) -> str | None:
    """The completed run of this config on this very data, if the store has one (the cache lookup)."""
    return store.find_completed(config.key(data.fingerprint))


def same_data(info: RunInfo, data: Dataset) -> bool:
    """True if the run was trained and tested on this very dataset (its config key includes the data)."""
    return info.config is not None and info.key == info.config.key(data.fingerprint)


def completed_runs(runs: Iterable[RunInfo]) -> list[RunInfo]:
    """The completed runs, in the given order."""
    return [r for r in runs if r.completed]


def best_run(runs: Iterable[RunInfo]) -> RunInfo | None:
    """The completed run with the highest best validation accuracy (never the test split); newest on ties."""
    best = None
    for info in runs:
        val = (info.metrics or {}).get("best_val_accuracy")
        if not info.completed or val is None:
            continue
        if best is None or val > best[0] or (val == best[0] and info.created > best[1].created):
            best = (val, info)
    return best[1] if best else None


def default_run(runs: Sequence[RunInfo], wanted: Iterable[str | None] = ()) -> RunInfo | None:
    """The run a page shows first: the first of `wanted` that is completed, else the best one."""
    by_id = {r.run_id: r for r in runs if r.completed}
    for run_id in wanted:
        if run_id in by_id:
            return by_id[run_id]
    return best_run(runs)


def unavailable_reason(runs: Sequence[RunInfo], run_id: str) -> str | None:
    """Why a run asked for cannot be shown ('run X no longer exists', 'run X is failed: ...'), or None if it can."""
    info = next((r for r in runs if r.run_id == run_id), None)
    if info is None:
        return f"run {run_id} no longer exists"
    if not info.completed:
        reason = f": {info.reason}" if info.reason else ""
        return f"run {run_id} is {info.status}{reason}; only completed runs can be shown here"
    return None


LIVE_TAG = "live"  # the tag of runs that the Train page's live mode started


def without_cancelled_live(runs: Iterable[RunInfo]) -> list[RunInfo]:
    """The runs but those live mode started and then replaced (cancelled), so that playing does not bury the table."""
    return [r for r in runs if not (r.status == Status.CANCELLED and LIVE_TAG in r.tags)]


def submit_presets(queue: JobQueue, names: Sequence[str]) -> tuple[list[str], int]:
    """Queue the named presets (those already trained come from the store); returns (run ids, how many were cached)."""
    ids = [queue.submit(PRESETS[name].config) for name in names]
    return ids, sum(queue.progress(run_id).cached for run_id in ids)


def delete_run(store: RunStore, run_id: str) -> None:
    """Delete a run that is not queued or running.

    Raises:
        RunNotFoundError: no such run.
        StoreError: it is still active (stop it first) or the folder cannot be removed.
    """
    info = store.get(run_id)
    if info.status in ("queued", "running"):
        raise StoreError(f"run {run_id} is {info.status}: stop it first (`python -m kmnist_core cancel {run_id}`)")
    store.delete(run_id)


# --- how long a configuration will take, from this machine's recent runs ---

# Before a few runs are measured here: an effective 60 GFLOP/s and 0.5 ms per step, about what a
# loaded 2-core machine does with the epoch loop.
DEFAULT_SECONDS_PER_FLOP = 1 / 60e9
DEFAULT_SECONDS_PER_STEP = 0.0005
DEFAULT_FIXED_S = 2.0  # the first epoch's tracing and the scoring and saving after the last
ESTIMATE_RUNS = 20  # the most recent runs the estimate learns from
CERTAIN_AFTER = 3  # runs measured before the estimate drops its "about"


@dataclass(frozen=True)
class Estimate:
    """Expected training time of a configuration on this machine and data."""

    epoch_s: float
    total_s: float
    runs: int  # how many of this machine's runs it is based on (0: the defaults)

    @property
    def certain(self) -> bool:
        return self.runs >= CERTAIN_AFTER


def _epoch_work(config: TrainConfig, n_samples: int) -> tuple[float, float]:
    """(FLOPs, steps) of one epoch on the training split of n_samples."""
    n_train = max(1, round(n_samples * (1 - config.val_fraction)))
    return train_flops_per_epoch(config, n_train), float(-(-n_train // config.batch_size))


def estimate(config: TrainConfig, data: Dataset, runs: Iterable[RunInfo]) -> Estimate:
    """How long `config` will train: per epoch and in all, fitted to this machine's recent runs on this data.

    A steady epoch is modelled as seconds per FLOP x FLOPs + seconds per step x steps (both fitted,
    non-negative, by scipy's nnls to the recent runs' median epoch after the first); a run adds a
    fixed cost (the first epoch's tracing, the scoring and saving: their median over those runs).

    Args:
        config: what would be trained.
        data: the loaded dataset (its training split's size).
        runs: stored runs, e.g. RunStore.list_runs(); completed runs of 2+ epochs on this data count.
    """
    n = len(data.y_train)
    rows, targets, fixed = [], [], []
    for info in runs:
        if len(rows) >= ESTIMATE_RUNS:
            break
        seconds = [h["epoch_seconds"] for h in info.history]
        if not info.completed or len(seconds) < 2 or not same_data(info, data):
            continue
        steady = float(np.median(seconds[1:]))
        rows.append(_epoch_work(info.config, n))
        targets.append(steady)
        fixed.append(max(0.0, (info.metrics.get("wall_seconds") or sum(seconds)) - steady * len(seconds)))
    flops, steps = _epoch_work(config, n)
    per_flop, per_step, fixed_s = DEFAULT_SECONDS_PER_FLOP, DEFAULT_SECONDS_PER_STEP, DEFAULT_FIXED_S
    if rows:
        from scipy.optimize import nnls

        a = np.asarray(rows)  # (R, 2): FLOPs, steps
        scale = a.max(axis=0)  # fit in units of the largest run, so that nnls is well conditioned
        coef, _ = nnls(a / scale, np.asarray(targets))
        if coef.any():
            per_flop, per_step = coef / scale
        fixed_s = float(np.median(fixed))
    epoch_s = per_flop * flops + per_step * steps
    return Estimate(epoch_s, fixed_s + config.epochs * epoch_s, len(rows))


# --- what the Confusion page evaluates: a run or a baseline ---


@dataclass
class Subject:
    """Something with test predictions to evaluate: a stored run or a k-NN baseline."""

    label: str
    test_accuracy: float
    best_val_accuracy: float | None  # None for a baseline: it has no validation step
    confusion: np.ndarray  # (10, 10) int, rows true classes
    per_class: dict[str, list[float]]
    predictions: Callable[[], tuple[np.ndarray, np.ndarray]]  # () -> (pred (N,) uint8, proba (N, 10) float32)
    warning: str | None = None  # why its images cannot be shown with the loaded data


def run_subject(store: RunStore, info: RunInfo, data: Dataset | None) -> Subject:
    """A completed run as an evaluation subject; its predictions are read when asked for."""
    m = info.metrics
    warning = None
    if data is not None and not same_data(info, data):
        warning = (f"run {info.run_id} was tested on other data ({info.data_source}); "
                   "its images cannot be shown with the data loaded now.")
    return Subject(info.run_id, m["test_accuracy"], m.get("best_val_accuracy"),
                   np.asarray(m["confusion"], dtype=np.int64), m["per_class"],
                   lambda: store.load_predictions(info.run_id), warning)


def baseline_subject(baseline: Baseline) -> Subject:
    """A k-NN baseline as an evaluation subject, shaped like a run."""
    return Subject(baseline.label, baseline.test_accuracy, None, baseline.confusion, baseline.per_class,
                   lambda: (baseline.test_pred, baseline.test_proba))


# --- prediction ---


def load_network(store: RunStore, run_id: str) -> Network:
    """The numpy network of a completed run; a run stored before weights were exported gets them now.

    Raises:
        RunNotFoundError: the run is gone or has no model.
        StoreError: the weights cannot be read or exported.
    """
    try:
        path = store.weights_path(run_id)
    except RunNotFoundError:
        store.model_path(run_id)  # no model either: that error says so
        from .worker import export_weights_in_worker

        export_weights_in_worker(store, run_id)
        path = store.weights_path(run_id)
    return Network.load(path)


@dataclass(frozen=True)
class Prediction:
    """A drawing's classification: the 28x28 model input and the ten probabilities."""

    image: np.ndarray  # (28, 28) uint8, KMNIST-like
    proba: np.ndarray  # (10,) float32

    @property
    def top(self) -> tuple[KmnistClass, float]:
        i = int(np.argmax(self.proba))
        return CLASSES[i], float(self.proba[i])

    def ranked(self, k: int = 3) -> list[tuple[KmnistClass, float]]:
        """The k most probable classes with their probabilities."""
        order = np.argsort(-self.proba, kind="stable")[:k]
        return [(CLASSES[i], float(self.proba[i])) for i in order]


def predict_image(network: Network, rgba: np.ndarray) -> Prediction | None:
    """Classify a canvas drawing or decoded upload; None when nothing is drawn.

    Raises:
        InputError: the array is not an image.
    """
    from .drawing import preprocess_canvas

    img28 = preprocess_canvas(rgba)
    return None if img28 is None else Prediction(img28, network.proba(img28))


# --- exports ---

def history_csv(info: RunInfo) -> bytes:
    """history.csv of a run: one row per finished epoch, the EpochRecord columns."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(EPOCH_KEYS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(info.history)
    return buf.getvalue().encode()


def predictions_csv(store: RunStore, info: RunInfo, data: Dataset) -> bytes:
    """predictions.csv: test index, true label, predicted label and the ten probabilities, one row per test image.

    Raises:
        StoreError: the run was tested on other data than `data` (its true labels would be wrong).
    """
    if not same_data(info, data):
        raise StoreError(f"run {info.run_id} was tested on other data ({info.data_source}): load that data "
                         "to export its predictions with their true labels")
    pred, proba = store.load_predictions(info.run_id)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["index", "true", "predicted", *(f"p_{c.romaji}" for c in CLASSES)])
    for i, (true, p, row) in enumerate(zip(data.y_test, pred, proba, strict=True)):
        writer.writerow([i, int(true), int(p), *(f"{v:.6f}" for v in row)])
    return buf.getvalue().encode()


def export_files(store: RunStore, run_id: str, data: Dataset) -> dict[str, Callable[[], bytes]]:
    """The downloads of a completed run: file name -> a function giving its bytes (read when asked for).

    Raises:
        RunNotFoundError: no such completed run.
    """
    info = store.get(run_id)
    if not info.completed:
        raise RunNotFoundError(f"run {run_id} is {info.status}: only completed runs can be exported")

    def weights() -> bytes:
        load_network(store, run_id)  # a run stored before weights were exported gets them first
        return store.weights_path(run_id).read_bytes()

    return {
        "model.keras": lambda: store.model_path(run_id).read_bytes(),
        "weights.npz": weights,
        "config.json": lambda: (info.path / "config.json").read_bytes(),
        "history.csv": lambda: history_csv(info),
        "predictions.csv": lambda: predictions_csv(store, info, data),
    }


def export_run(store: RunStore, run_id: str, data: Dataset, out: Path) -> list[Path]:
    """Write every download of a run into the folder `out` (created if needed); returns the paths written.

    Raises:
        RunNotFoundError, StoreError: as export_files; StoreError also when `out` cannot be written.
    """
    files = export_files(store, run_id, data)
    try:
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name, content in files.items():
            (out / name).write_bytes(content())
            written.append(out / name)
    except OSError as e:
        raise StoreError(f"cannot write the export to {out} ({e.strerror or e}); choose another --out folder") from e
    return written
