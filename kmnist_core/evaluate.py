"""Evaluation of test predictions: confusion matrix, per-class metrics, cell lookups (numpy/sklearn)."""

from __future__ import annotations

import numpy as np


def confusion(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """(10, 10) int counts; rows are true classes, columns predicted classes."""
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(y_true, y_pred, labels=list(range(10)))


def per_class_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, list[float]]:
    """Precision, recall, F1 and support per class, as lists indexed by class."""
    from sklearn.metrics import precision_recall_fscore_support

    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=list(range(10)), zero_division=0)
    return {"precision": p.tolist(), "recall": r.tolist(), "f1": f.tolist(), "support": s.tolist()}


def normalise_rows(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (recall per true class); all-zero rows stay zero."""
    sums = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, sums, out=np.zeros(matrix.shape, dtype=float), where=sums > 0)


def cell_indices(y_true: np.ndarray, y_pred: np.ndarray, true: int, pred: int) -> np.ndarray:
    """Indices of the test samples of class `true` predicted as `pred`."""
    return np.flatnonzero((y_true == true) & (y_pred == pred))


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Share of correct predictions."""
    return float(np.mean(y_true == y_pred)) if len(y_true) else 0.0
