"""The plotly figure builders: what each figure holds, checked on the figure data."""

import numpy as np
import pandas as pd
import pytest

from kmnist_core import charts, views
from kmnist_core.config import TINY, TrainConfig
from kmnist_core.data import CLASSES
from kmnist_core.store import RunInfo

HISTORY = [
    {"epoch": 1, "loss": 1.2, "accuracy": 0.6, "val_loss": 1.0, "val_accuracy": 0.65, "epoch_seconds": 1.0,
     "elapsed_seconds": 1.0},
    {"epoch": 2, "loss": 0.8, "accuracy": 0.75, "val_loss": 0.9, "val_accuracy": 0.7, "epoch_seconds": 1.0,
     "elapsed_seconds": 2.0},
]
LIVE = [{"x": 0.25 * i, "loss": 2.0 - 0.1 * i, "accuracy": 0.1 * i} for i in range(1, 11)]


def _trace(fig, name):
    return next(t for t in fig.data if t.name == name)


def test_training_curves_hold_every_history_point_and_the_live_points():
    fig = charts.training_curves(HISTORY, LIVE)
    assert list(_trace(fig, "train loss").x) == [1, 2] and list(_trace(fig, "train loss").y) == [1.2, 0.8]
    assert list(_trace(fig, "val loss").y) == [1.0, 0.9]
    assert list(_trace(fig, "val accuracy").y) == [0.65, 0.7]
    live = _trace(fig, "train loss (within epoch)")
    assert list(live.x) == [p["x"] for p in LIVE] and list(live.y) == [p["loss"] for p in LIVE]
    assert _trace(fig, "train accuracy").xaxis == "x2"  # accuracy is the right-hand panel
    assert fig.layout.xaxis.range[1] >= 2.5  # the axis covers the newest live point


def test_training_curves_before_the_first_epoch_and_with_many_live_points():
    fig = charts.training_curves([], [])
    assert {t.name for t in fig.data} == {"train loss", "val loss", "train accuracy", "val accuracy"}
    assert all(len(t.x) == 0 for t in fig.data)
    many = [{"x": i / 1000, "loss": 1.0, "accuracy": 0.5} for i in range(4000)]
    live = _trace(charts.training_curves([], many, max_live_points=300), "train loss (within epoch)")
    assert len(live.x) == 300 and live.x[0] == 0 and live.x[-1] == many[-1]["x"]  # thinned, newest kept


def test_overlay_curves_has_one_line_per_run_and_rejects_unknown_metrics():
    fig = charts.overlay_curves({"a": HISTORY, "b": HISTORY[:1]}, "val_loss")
    assert [t.name for t in fig.data] == ["a", "b"]
    assert list(fig.data[0].y) == [1.0, 0.9] and list(fig.data[1].y) == [1.0]
    with pytest.raises(ValueError, match="metric must be one of"):
        charts.overlay_curves({"a": HISTORY}, "f1")


def test_confusion_heatmap_shows_counts_with_hiragana_and_romaji_axes():
    matrix = np.arange(100).reshape(10, 10)
    fig = charts.confusion_heatmap(matrix)
    heat, cells = fig.data[0], fig.data[1]
    assert heat.type == "heatmap"
    assert np.array_equal(np.asarray(heat.z), matrix)
    assert list(heat.x) == list(heat.y) == [c.label for c in CLASSES]
    assert heat.x[0] == "お (o)" and heat.x[9] == "を (wo)"
    assert heat.text[2][3] == "23"
    # every cell has a click target that names its (true, predicted) classes and count
    assert len(cells.customdata) == 100
    true, pred, count = cells.customdata[37]
    assert (true, pred, count) == (3, 7, 37)
    assert cells.y[37] == CLASSES[3].label and cells.x[37] == CLASSES[7].label
    assert fig.layout.yaxis.autorange == "reversed"  # class 0 at the top, as a matrix is read


def test_confusion_heatmap_row_normalised_rows_sum_to_one_and_selection_is_outlined():
    matrix = np.random.default_rng(0).integers(0, 50, (10, 10))
    matrix[4] = 0  # a class without test images stays a zero row
    fig = charts.confusion_heatmap(matrix, normalised=True, selected=(2, 5))
    z = np.asarray(fig.data[0].z)
    sums = z.sum(axis=1)
    assert np.allclose(np.delete(sums, 4), 1.0) and sums[4] == 0
    assert fig.data[0].zmax == 1
    (shape,) = fig.layout.shapes
    assert (shape.x0, shape.x1, shape.y0, shape.y1) == (4.5, 5.5, 1.5, 2.5)


def test_probability_bars_highlight_the_top_class():
    proba = np.full(10, 0.05)
    proba[6] = 0.55
    fig = charts.probability_bars(proba)
    bar = fig.data[0]
    assert list(bar.x) == [c.label for c in CLASSES] and np.allclose(bar.y, proba)
    colours = list(bar.marker.color)
    assert colours[6] != colours[0] and len(set(colours)) == 2
    assert bar.text[6] == "55.0%"


def test_parallel_coordinates_has_a_line_per_completed_run_coloured_by_test_accuracy():
    runs = []
    for i, (cfg, acc) in enumerate(((TINY, 0.7), (TrainConfig((64, 32), "tanh", "sgd", 0.0005), 0.8))):
        runs.append(RunInfo(f"20260101-00000{i}-abcdef", None, "completed", cfg, metrics={
            "test_accuracy": acc, "best_val_accuracy": acc, "params": 1000 * (i + 1)}))
    runs.append(RunInfo("20260101-000009-abcdef", None, "broken", None, reason="config.json is missing"))
    table = views.compare_table(runs, views.reported_rows())
    fig = charts.parallel_coordinates(table[table.source == views.MEASURED])
    dims = {d.label: d for d in fig.data[0].dimensions}
    assert list(dims["test accuracy"].values) == [0.7, 0.8]  # the broken run has no accuracy: left out
    assert list(dims["hidden layers"].values) == [1, 2] and list(dims["largest layer"].values) == [32, 64]
    assert list(dims["optimizer"].ticktext) == ["adam", "sgd"]
    assert list(fig.data[0].line.color) == [0.7, 0.8]
    empty = charts.parallel_coordinates(pd.DataFrame(columns=list(views.TABLE_COLUMNS)))
    assert len(empty.data[0].dimensions[0].values) == 0


def test_cell_from_selection_reads_customdata_or_axis_labels():
    point = {"x": "ま (ma)", "y": "き (ki)", "customdata": [1, 6, 34]}
    assert charts.cell_from_selection({"points": [point]}) == (1, 6)
    assert charts.cell_from_selection({"points": [{"x": "ま (ma)", "y": "き (ki)"}]}) == (1, 6)
    for empty in (None, {}, {"points": []}, {"points": [{"x": "?", "y": "?"}]},
                  {"points": [{"customdata": [12, 3]}]}):
        assert charts.cell_from_selection(empty) is None
