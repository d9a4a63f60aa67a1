"""Tables and text the dashboard pages show: the Compare table, status lines, per-class tables, image helpers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from . import evaluate
from .config import FIELDS, PRESETS, REFERENCE_PRESETS, TrainConfig, count_params
from .data import CLASSES
from .records import Status

if TYPE_CHECKING:
    import pandas as pd

    from .engine import WorkerInfo
    from .jobs import JobSnapshot
    from .store import RunInfo

# The fields with a Compare column of their own, in table order; the "options" column lists the
# other non-default fields (TrainConfig.options_text).
COLUMN_FIELDS = tuple(name for name, f in FIELDS.items() if f.column)
# Columns of the Compare table, in order. "source" says where a row's numbers come from:
# "measured" (a run in our store), "reported" (the reference study), "baseline" (k-NN, fitted here).
TABLE_COLUMNS = (
    "run", "name", "source", *(FIELDS[name].column for name in COLUMN_FIELDS),
    "parameters", "best val accuracy", "test accuracy", "train time (s)", "status", "options", "note",
)
NUMERIC_COLUMNS = tuple(FIELDS[n].column for n in COLUMN_FIELDS if FIELDS[n].kind == "float")
INTEGER_COLUMNS = (*(FIELDS[n].column for n in COLUMN_FIELDS if FIELDS[n].kind == "int"), "parameters")
MEASURED, REPORTED, BASELINE = "measured", "reported", "baseline"
# What the reference study reported of each configuration: its four axes (and the two accuracies).
REPORTED_FIELDS = ("hidden_layers", "activation", "optimizer", "weight_decay")


def layers_text(layers: Sequence[int]) -> str:
    """'128, 64'."""
    return FIELDS["hidden_layers"].format(layers)


def options_text(config: TrainConfig) -> str:
    """The "options" column: non-default fields that have no column, as 'batch 256, dropout 0.2', or ''."""
    return config.options_text(skip=COLUMN_FIELDS)


def _config_columns(config: TrainConfig | None, names: Iterable[str] = COLUMN_FIELDS) -> dict[str, Any]:
    if config is None:
        return {}
    row: dict[str, Any] = {}
    for name in names:
        value = config.resolved_learning_rate if name == "learning_rate" else getattr(config, name)
        row[FIELDS[name].column] = layers_text(value) if name == "hidden_layers" else value
    return row


def run_row(info: RunInfo) -> dict[str, Any]:
    """One Compare-table row of a stored run; broken runs keep their id, status and reason."""
    m = info.metrics or {}
    row = {"run": info.run_id, "name": info.name, "source": MEASURED, **_config_columns(info.config)}
    if info.config is not None:
        row.update({"parameters": count_params(info.config), "options": options_text(info.config)})
    row.update({
        "best val accuracy": m.get("best_val_accuracy"),
        "test accuracy": m.get("test_accuracy"),
        "train time (s)": m.get("wall_seconds"),
        "status": info.status,
        "note": "; ".join(x for x in (info.note, info.reason) if x),
    })
    if m.get("params"):
        row["parameters"] = m["params"]
    return row


def reported_rows(names: Iterable[str] = REFERENCE_PRESETS) -> list[dict[str, Any]]:
    """The reference study's reported numbers, one row per preset, marked source='reported'.

    The study reported each configuration's four axes and its two accuracies, nothing more:
    the other cells stay empty rather than show our presets' choices as if it had reported them.
    """
    rows = []
    for name in names:
        preset = PRESETS[name]
        note = "reported by the reference study, not measured here"
        rows.append({
            "run": name, "source": REPORTED, **_config_columns(preset.config, REPORTED_FIELDS),
            "best val accuracy": preset.reported_val_accuracy, "test accuracy": preset.reported_test_accuracy,
            "status": REPORTED, "note": f"{note}; {preset.note}" if preset.note else note,
        })
    return rows


def baseline_rows(baselines: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The classic k-NN baselines (kmnist_core.baselines), one row each, marked source='baseline'."""
    return [
        {"run": b.label, "source": BASELINE, "test accuracy": b.test_accuracy, "train time (s)": b.seconds,
         "status": BASELINE, "note": f"measured here on the loaded data: {b.method}"}
        for b in baselines.values()
    ]


def compare_table(runs: Sequence[RunInfo], reference_rows: Iterable[Mapping[str, Any]] = ()) -> pd.DataFrame:
    """The Compare table: reference rows (reported, baselines) first, then one row per stored run.

    Args:
        runs: stored runs, e.g. RunStore.list_runs() (newest first).
        reference_rows: rows not measured in this store, each a dict over TABLE_COLUMNS with its
            own "source", e.g. reported_rows().

    Returns:
        DataFrame with exactly TABLE_COLUMNS; missing values are None/NaN.
    """
    import pandas as pd  # here, not at the top: ~0.5 s of import off the first page's path

    rows = [dict(r) for r in reference_rows] + [run_row(info) for info in runs]
    df = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    for col in (*NUMERIC_COLUMNS, "best val accuracy", "test accuracy", "train time (s)"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    for col in INTEGER_COLUMNS:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("Int64")
    return df


def run_label(info: RunInfo) -> str:
    """'128-64 relu adam wd5e-4 · test 0.8834 · 20261127-093000-ab12cd' for pickers and legends."""
    test = (info.metrics or {}).get("test_accuracy")
    return " · ".join([info.name, f"test {test:.4f}" if isinstance(test, float) else str(info.status), info.run_id])


def format_duration(seconds: float | None) -> str:
    """'42 s', '3 min 05 s', '1 h 02 min'; '-' for None."""
    if seconds is None:
        return "-"
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def estimate_text(estimate: Any) -> str:
    """'about 0.4 s per epoch, 6 s in all' (service.Estimate); 'about' stays until a few runs were measured."""
    about = "about " if not estimate.certain else ""
    epoch = f"{estimate.epoch_s:.2f} s" if estimate.epoch_s < 10 else format_duration(estimate.epoch_s)
    basis = "" if estimate.runs else " (a first guess: no run measured here yet)"
    return f"{about}{epoch} per epoch, {format_duration(estimate.total_s)} in all{basis}"


def progress_text(snap: JobSnapshot) -> str:
    """One line for a job: 'epoch 3/10 · ETA 12 s', 'queued, position 2', 'completed (cached)'..."""
    if snap.status == Status.QUEUED:
        return f"queued, position {snap.position}" if snap.position else "queued"
    if snap.status == Status.RUNNING:
        if snap.epoch == 0:
            return f"starting: {snap.epochs} epochs"
        eta = f" · ETA {format_duration(snap.eta_s)}" if snap.eta_s is not None else ""
        return f"epoch {snap.epoch}/{snap.epochs}{eta}"
    if snap.status == Status.COMPLETED:
        return "completed (cached: answered from the run store)" if snap.cached else (
            f"completed in {format_duration(snap.elapsed_s)}")
    text = f"{snap.status} after {len(snap.history)}/{snap.epochs} epochs"
    return f"{text}: {snap.error}" if snap.error else text


def queue_summary(active: Sequence[JobSnapshot]) -> str:
    """The job queue in a few words: 'training 3/10 epochs · 2 queued', or 'idle'."""
    running = [s for s in active if s.status == Status.RUNNING]
    queued = sum(1 for s in active if s.status == Status.QUEUED)
    parts = []
    for s in running:
        parts.append((f"training {s.epoch}/{s.epochs} epochs" if s.epoch else f"starting {s.epochs} epochs")
                     + (f" on worker {worker_name(s.worker)}" if s.worker else ""))
    if queued:
        parts.append(f"{queued} queued")
    return " · ".join(parts) if parts else "idle: nothing training"


def worker_name(address: str) -> str:
    """'127.0.0.2:40123' for 'tcp://127.0.0.2:40123'."""
    return address.split("://", 1)[-1]


def workers_line(workers: Sequence[WorkerInfo]) -> str:
    """'2 workers: 127.0.0.2:40123 idle, 127.0.0.3:40555 training'."""
    noun = "worker" if len(workers) == 1 else "workers"
    return f"{len(workers)} {noun}: " + ", ".join(f"{worker_name(w.address)} {w.state}" for w in workers)


def workers_table(workers: Sequence[WorkerInfo]) -> pd.DataFrame:
    """The Workers panel: one row per Dask worker, its host, threads, state and data check."""
    import pandas as pd

    return pd.DataFrame({
        "worker": [worker_name(w.address) for w in workers],
        "host": [w.host for w in workers],
        "threads": [w.threads for w in workers],
        "state": [w.state for w in workers],
        "training": [w.job_id or "" for w in workers],
        "data": ["same as the server" if w.usable else ("checking" if w.state == "starting" else w.error)
                 for w in workers],
        "warm-up (s)": [None if w.import_seconds is None else round(w.import_seconds, 1) for w in workers],
    })


def class_metrics_table(per_class: Mapping[str, Sequence[float]]) -> pd.DataFrame:
    """Per-class precision, recall, F1 and support, one row per class labelled 'お (o)'."""
    import pandas as pd

    return pd.DataFrame({
        "class": [c.label for c in CLASSES],
        "precision": per_class["precision"],
        "recall": per_class["recall"],
        "f1": per_class["f1"],
        "support": [int(s) for s in per_class["support"]],
    })


def data_class_table(classes: Sequence[Any], ink: Any) -> pd.DataFrame:
    """The Data page's class table: insight.class_table rows, their total, and each class's ink mass.

    Args:
        classes: insight.ClassCount rows in CLASSES order.
        ink: the training split's insight.InkHistogram.

    Returns:
        One row per class: index, hiragana, romaji, codepoint, train, validation, test, total, mean ink, and
        "ink histogram", the class's images per ink bin as a list (bins shared by every class).
    """
    import pandas as pd

    rows = [{"index": r.index, "hiragana": r.hiragana, "romaji": r.romaji, "codepoint": r.codepoint,
             "train": r.train, "validation": r.validation, "test": r.test, "total": r.total,
             "mean ink": float(ink.mean[r.index]), "ink histogram": np.asarray(ink.counts[r.index]).tolist()}
            for r in classes]
    return pd.DataFrame(rows)


def cell_samples(y_true: np.ndarray, pred: np.ndarray, proba: np.ndarray, true: int, predicted: int,
                 limit: int = 36) -> tuple[np.ndarray, np.ndarray, int]:
    """Test samples of class `true` predicted as `predicted`, most confident first.

    Args:
        y_true: (N,) test labels.
        pred: (N,) predicted classes.
        proba: (N, 10) predicted probabilities.
        true, predicted: the confusion cell.
        limit: most samples returned.

    Returns:
        (indices into the test split, the probability each got for `predicted`), at most `limit`
        of each, and how many samples the cell holds in all.
    """
    idx = evaluate.cell_indices(y_true, pred, true, predicted)
    p = proba[idx, predicted]
    order = np.argsort(-p, kind="stable")[:limit]
    return idx[order], p[order], len(idx)


def class_examples(labels: np.ndarray, cls: int, n: int = 8) -> np.ndarray:
    """Indices of the first n samples of class `cls` (deterministic, for comparison galleries)."""
    return np.flatnonzero(labels == cls)[:n]


def predicted_image_alt(index: int, true: int, predicted: int, probability: float) -> str:
    """Alt text of a test image shown with its prediction: its index, both classes, the predicted class's p."""
    return (f"test image #{index}: true {CLASSES[true].label}, predicted {CLASSES[predicted].label}"
            f" with p={probability:.2f}")


def enlarge(img: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement of a 2-D image, so 28x28 pixels stay crisp squares on screen."""
    return np.repeat(np.repeat(np.asarray(img), factor, axis=0), factor, axis=1)


def sweep_table(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The Sweep page's trials table from sweeps.trials_table: one row per trial, its params as columns."""
    import pandas as pd

    params = sorted({name for r in rows for name in r["params"]})
    table = [{"trial": r["trial"], "status": r["status"] + (" (cached)" if r["cached"] else ""),
              "val accuracy": r["val_accuracy"], "test accuracy": r["test_accuracy"], "epochs": r["epochs"],
              "duration (s)": r["duration_s"], "host": r["host"], "run": r["run_id"],
              **{p: r["params"].get(p) for p in params}, "note": r["error"]} for r in rows]
    columns = ["trial", "status", "val accuracy", "test accuracy", "epochs", "duration (s)", *params, "host", "run",
               "note"]
    return pd.DataFrame(table, columns=columns)


def groups_table(groups: Sequence[Any]) -> pd.DataFrame:
    """Seed groups (stats.SeedGroup) as rows: the config, n, and mean ± 95 % interval of both accuracies."""
    import pandas as pd

    rows = []
    for g in groups:
        val, test = g.summary("val"), g.summary("test")
        rows.append({"configuration": g.config.summary(skip=("seed",)), "n": g.n, "seeds": ", ".join(map(str, g.seeds)),
                     "best val accuracy": val.text(), "test accuracy": test.text(), "runs": ", ".join(g.run_ids)})
    return pd.DataFrame(rows, columns=["configuration", "n", "seeds", "best val accuracy", "test accuracy", "runs"])
