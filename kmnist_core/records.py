"""Plain record types shared by the worker, the job queue and the run store: statuses, epoch records, results."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypedDict

import numpy as np

from .config import TrainConfig


class Status(StrEnum):
    """Every status a run or a job can have; the values are what status.json and the pages show."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # the process that owned it died; written on the next start
    PRUNED = "pruned"  # a sweep trial stopped early by its pruner
    BROKEN = "broken"  # the run folder is damaged; never written, only read


ACTIVE = frozenset({Status.QUEUED, Status.RUNNING})


class EpochRecord(TypedDict):
    """One finished epoch: the only shape of history.json's items and of the worker's "epoch" messages.

    loss and accuracy are the epoch's training means (Keras' running metrics at its end),
    val_* are measured on the whole validation split after the epoch, epoch_seconds is the
    epoch's own wall time (validation included) and elapsed_seconds the time since training began.
    """

    epoch: int  # 1-based
    loss: float
    accuracy: float
    val_loss: float
    val_accuracy: float
    epoch_seconds: float
    elapsed_seconds: float


class LivePoint(TypedDict):
    """A point of the live curves within an epoch: x is epochs done (fractional), loss/accuracy running means."""

    x: float
    loss: float
    accuracy: float


class Progress(TypedDict):
    """What train()'s on_progress receives, within an epoch (at most ~10 a second) and at its end.

    loss/accuracy are Keras' running means of the current epoch; `record` is None within an
    epoch and the finished epoch's EpochRecord at its end. The worker sends each one to the
    server as a message {"type": "progress", "run_id": ..., **progress}.
    """

    epoch: int  # current epoch, 1-based
    epochs: int
    step: int  # steps done in this epoch
    steps: int  # steps per epoch
    loss: float
    accuracy: float
    elapsed_seconds: float
    record: EpochRecord | None


EPOCH_KEYS = tuple(EpochRecord.__annotations__)


def live_point(progress: Progress) -> LivePoint:
    """The live-curve point of a progress record."""
    x = progress["epoch"] - 1 + progress["step"] / max(1, progress["steps"])
    return LivePoint(x=x, loss=progress["loss"], accuracy=progress["accuracy"])


def epoch_record(record: dict[str, Any]) -> EpochRecord:
    """An EpochRecord from a stored dict, including history.json files written before elapsed_seconds existed.

    Raises:
        KeyError: a required key is missing.
    """
    if "epoch_seconds" not in record and "seconds" in record:  # the older name of epoch_seconds
        record = {**record, "epoch_seconds": record["seconds"]}
    out = {k: record.get(k) for k in EPOCH_KEYS}
    if out["elapsed_seconds"] is None:
        out["elapsed_seconds"] = out["epoch_seconds"]
    for key in ("epoch", "loss", "accuracy"):
        if out[key] is None:
            raise KeyError(key)
    return EpochRecord(**out)


@dataclass
class TrainResult:
    """What one training run produced; `status` is completed or cancelled. Plain data but `model`."""

    config: TrainConfig
    status: Status
    history: list[EpochRecord]
    best_val_accuracy: float | None = None
    best_epoch: int | None = None
    test_accuracy: float | None = None
    test_pred: np.ndarray | None = None  # (N_test,) uint8
    test_proba: np.ndarray | None = None  # (N_test, 10) float32
    confusion: np.ndarray | None = None  # (10, 10) int
    per_class: dict[str, list[float]] | None = None
    wall_seconds: float = 0.0
    params: int = 0
    model: Any = field(default=None, repr=False)  # the Keras model (worker side only)

    def metrics(self) -> dict[str, Any]:
        """JSON-ready summary: what metrics.json holds."""
        return {
            "status": str(self.status),
            "best_val_accuracy": self.best_val_accuracy,
            "best_epoch": self.best_epoch,
            "test_accuracy": self.test_accuracy,
            "epochs_done": len(self.history),
            "confusion": None if self.confusion is None else self.confusion.tolist(),
            "per_class": self.per_class,
            "wall_seconds": self.wall_seconds,
            "params": self.params,
        }
