"""Plotly figures built from run data: curves, confusion heatmap, parallel coordinates, probabilities."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import plotly.graph_objects as go

from .data import CLASSES
from .evaluate import normalise_rows

if TYPE_CHECKING:
    import pandas as pd

TRAIN_COLOUR, VAL_COLOUR = "#1f77b4", "#ff7f0e"
CLASS_LABELS = tuple(c.label for c in CLASSES)  # 'お (o)', ...
# The app's text font, then the hiragana font it serves (.streamlit/config.toml), so that tick labels
# such as 'お (o)' never depend on the fonts of the user's machine.
FONT = {"family": '"Source Sans", kmnist-hiragana, sans-serif'}
CURVE_METRICS = {"val_accuracy": "val accuracy", "val_loss": "val loss", "accuracy": "train accuracy",
                 "loss": "train loss"}


def _epoch_points(history: Sequence[Mapping[str, float]], key: str) -> tuple[list[float], list[float]]:
    """(epochs, values) of the history records that have this key."""
    pts = [(h["epoch"], h[key]) for h in history if h.get(key) is not None]
    return [p[0] for p in pts], [p[1] for p in pts]


def _thin(points: Sequence[Mapping[str, float]], most: int) -> Sequence[Mapping[str, float]]:
    """At most `most` points, evenly spaced, always keeping the last (the newest) one."""
    if len(points) <= most:
        return points
    idx = np.linspace(0, len(points) - 1, most).round().astype(int)
    return [points[i] for i in idx]


def training_curves(history: Sequence[Mapping[str, float]], live: Sequence[Mapping[str, float]] = (),
                    title: str | None = None, max_live_points: int = 400,
                    previous: Sequence[tuple[str, Sequence[Mapping[str, float]]]] = ()) -> go.Figure:
    """Loss and accuracy against epochs, train against validation, with within-epoch train points.

    Args:
        history: per-epoch records with epoch (1-based), loss, accuracy, val_loss, val_accuracy.
        live: within-epoch points {x: epochs done (fractional), loss, accuracy}, e.g. JobSnapshot.live.
        title: optional figure title.
        max_live_points: live points are thinned evenly to at most this many.
        previous: (label, history) of earlier configurations, drawn faded behind (live mode).

    Returns:
        A two-panel figure (loss left on x/y, accuracy right on x2/y2); trace names are
        'train loss', 'val loss', 'train loss (within epoch)' and the same for accuracy, so
        tests and browsers can find them.
    """
    # One Figure(data=[...]) call: add_trace and make_subplots validate again and again, and this
    # figure is rebuilt every second while a job trains, in the same process as the training.
    # Plain lists, not numpy arrays: plotly would send arrays base64-encoded, and browser tests
    # read the points back from the page.
    live = _thin(live, max_live_points)
    traces = []
    for axis, metric in (("", "loss"), ("2", "accuracy")):
        where = {"xaxis": f"x{axis}", "yaxis": f"y{axis}", "showlegend": axis == ""}
        for age, (label, old) in enumerate(reversed(previous)):
            x, y = _epoch_points(old, f"val_{metric}")
            traces.append(go.Scatter(x=x, y=y, mode="lines", name=f"before: {label} (val {metric})",
                                     opacity=0.35 / (age + 1) + 0.1, legendgroup=f"before {label}",
                                     line={"color": "#7f7f7f", "width": 1.5}, **where))
        if live:
            traces.append(go.Scatter(
                x=[p["x"] for p in live], y=[p[metric] for p in live],
                mode="lines", name=f"train {metric} (within epoch)", opacity=0.6, legendgroup="live",
                line={"color": TRAIN_COLOUR, "width": 1, "dash": "dot"}, **where,
            ))
        for key, label, colour in ((metric, "train", TRAIN_COLOUR), (f"val_{metric}", "val", VAL_COLOUR)):
            x, y = _epoch_points(history, key)
            traces.append(go.Scatter(x=x, y=y, mode="lines+markers",
                                     name=f"{label} {metric}", line={"color": colour}, legendgroup=label, **where))
    epochs = max([h["epoch"] for h in history] + [p["x"] for p in live] + [h["epoch"] for _, o in previous for h in o]
                 + [1])
    x_range = [0, max(1.0, float(epochs)) * 1.02]
    layout = {
        "title": title, "font": FONT, "height": 340, "margin": {"t": 60, "b": 40, "l": 40, "r": 10},
        "legend": {"orientation": "h", "y": -0.25}, "uirevision": "curves",
        "xaxis": {"domain": [0, 0.45], "title": {"text": "epoch"}, "range": x_range, "anchor": "y"},
        "xaxis2": {"domain": [0.55, 1], "title": {"text": "epoch"}, "range": x_range, "anchor": "y2"},
        "yaxis": {"anchor": "x", "rangemode": "tozero"},
        "yaxis2": {"anchor": "x2"},
        "annotations": [
            {"text": name, "x": x, "y": 1.0, "xref": "paper", "yref": "paper", "xanchor": "center",
             "yanchor": "bottom", "showarrow": False, "font": {"size": 14}}
            for name, x in (("loss", 0.225), ("accuracy", 0.775))
        ],
    }
    return go.Figure(data=traces, layout=layout)


def overlay_curves(histories: Mapping[str, Sequence[Mapping[str, float]]], metric: str = "val_accuracy") -> go.Figure:
    """One line per run of a per-epoch metric, for comparing runs.

    Args:
        histories: run label -> per-epoch history.
        metric: one of CURVE_METRICS' keys.

    Returns:
        The figure; one trace per run, named by its label.
    """
    if metric not in CURVE_METRICS:
        raise ValueError(f"metric must be one of {', '.join(CURVE_METRICS)}; got {metric!r}")
    fig = go.Figure()
    for label, history in histories.items():
        x, y = _epoch_points(history, metric)
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=label))
    fig.update_layout(xaxis_title="epoch", yaxis_title=CURVE_METRICS[metric], height=380, font=FONT,
                      margin={"t": 30, "b": 40, "l": 40, "r": 10}, legend={"orientation": "h", "y": -0.2})
    return fig


def confusion_heatmap(matrix: np.ndarray, normalised: bool = False,
                      selected: tuple[int, int] | None = None) -> go.Figure:
    """The confusion matrix as a heatmap; rows true class, columns predicted, labelled 'お (o)'.

    Plotly heatmaps emit no selection events, so an invisible marker sits on every cell with
    customdata [true, pred]: clicking a cell selects that marker (see cell_from_selection).

    Args:
        matrix: (10, 10) counts, rows true classes.
        normalised: show each row divided by its sum instead of counts.
        selected: (true, pred) cell to outline.

    Returns:
        Figure whose first trace is the Heatmap (z = counts or row shares) and second the click targets.
    """
    counts = np.asarray(matrix)
    z = normalise_rows(counts) if normalised else counts
    text = [[f"{v:.2f}" if normalised else f"{int(v)}" for v in row] for row in z]
    n = len(CLASS_LABELS)
    fig = go.Figure(go.Heatmap(
        z=np.asarray(z).tolist(), x=list(CLASS_LABELS), y=list(CLASS_LABELS), text=text, texttemplate="%{text}",
        colorscale="Blues", hoverinfo="skip", colorbar={"title": "share" if normalised else "count"},
        zmin=0, zmax=1 if normalised else None,
    ))
    true_idx, pred_idx = np.divmod(np.arange(n * n), n)
    fig.add_trace(go.Scatter(
        x=[CLASS_LABELS[p] for p in pred_idx], y=[CLASS_LABELS[t] for t in true_idx],
        customdata=np.stack([true_idx, pred_idx, counts[true_idx, pred_idx]], axis=1).tolist(),
        mode="markers", marker={"symbol": "square", "size": 34, "color": "rgba(0,0,0,0)"},
        selected={"marker": {"opacity": 1}}, unselected={"marker": {"opacity": 1}},
        hovertemplate="true %{y}<br>predicted %{x}<br>%{customdata[2]} test images<extra></extra>",
        name="cells", showlegend=False,
    ))
    if selected is not None:
        t, p = selected
        fig.add_shape(type="rect", x0=p - 0.5, x1=p + 0.5, y0=t - 0.5, y1=t + 0.5,
                      line={"color": "#d62728", "width": 3})
    fig.update_xaxes(title_text="predicted class", side="bottom", tickangle=0, fixedrange=True)
    fig.update_yaxes(title_text="true class", autorange="reversed", fixedrange=True)
    fig.update_layout(height=560, margin={"t": 30, "b": 50, "l": 60, "r": 10}, clickmode="event+select", font=FONT,
                      dragmode=False, hovermode="closest")
    return fig


def cell_from_selection(selection: Mapping[str, Any] | None) -> tuple[int, int] | None:
    """(true, predicted) class of the confusion cell a selection event of confusion_heatmap points at, if any.

    The chart carries customdata [true, pred] on each cell's click target; without it, the
    point's x (predicted) and y (true) axis labels are matched to CLASSES.
    """
    points = (selection or {}).get("points") or []
    for point in points:
        custom = point.get("customdata")
        if isinstance(custom, (list, tuple)) and len(custom) >= 2:
            try:
                true, pred = int(custom[0]), int(custom[1])
            except (TypeError, ValueError):
                continue
            if 0 <= true < len(CLASSES) and 0 <= pred < len(CLASSES):
                return true, pred
        labels = {c.label: c.index for c in CLASSES}
        if point.get("y") in labels and point.get("x") in labels:
            return labels[point["y"]], labels[point["x"]]
    return None


def parallel_coordinates(table: pd.DataFrame) -> go.Figure:
    """Hyperparameters against test accuracy, one line per completed run (views.compare_table rows).

    Categorical columns (activation, optimizer, weight decay, learning rate) become numbered axes
    with their values as tick labels; the lines are coloured by test accuracy.
    """
    df = table.dropna(subset=["test accuracy"]).reset_index(drop=True)
    layers = df["hidden layers"].fillna("").astype(str)
    dims = [
        {"label": "hidden layers", "values": [len(s.split(",")) if s else 0 for s in layers]},
        {"label": "largest layer", "values": [max((int(u) for u in s.split(",")), default=0) if s else 0
                                              for s in layers]},
    ]
    for col in ("activation", "optimizer", "weight decay", "learning rate"):
        values = df[col].tolist()
        levels = sorted({v for v in values if v is not None and v == v}, key=lambda v: (str(type(v)), v))
        index = {v: i for i, v in enumerate(levels)}
        dims.append({
            "label": col, "values": [index.get(v, -1) for v in values], "tickvals": list(range(len(levels))),
            "ticktext": [f"{v:g}" if isinstance(v, float) else str(v) for v in levels],
            "range": [-0.5, max(0.5, len(levels) - 0.5)],
        })
    dims.append({"label": "epochs", "values": df["epochs"].astype(float).tolist()})
    dims.append({"label": "parameters", "values": df["parameters"].astype(float).tolist()})
    acc = df["test accuracy"].astype(float).tolist()
    dims.append({"label": "test accuracy", "values": acc})
    fig = go.Figure(go.Parcoords(
        line={"color": acc, "colorscale": "Viridis", "showscale": True,
              "colorbar": {"title": {"text": "test acc"}, "x": 1.06}},
        dimensions=dims,
    ))
    fig.update_layout(height=420, margin={"t": 50, "b": 30, "l": 60, "r": 90}, font=FONT)
    return fig


def probability_bars(proba: np.ndarray) -> go.Figure:
    """The ten class probabilities as bars labelled 'お (o)', the top class highlighted."""
    p = np.asarray(proba, dtype=float).reshape(-1)
    top = int(np.argmax(p))
    colours = [VAL_COLOUR if i == top else TRAIN_COLOUR for i in range(len(p))]
    fig = go.Figure(go.Bar(
        x=list(CLASS_LABELS[: len(p)]), y=p.tolist(), marker_color=colours, text=[f"{v:.1%}" for v in p],
        textposition="outside", name="probability", hovertemplate="%{x}: %{y:.3f}<extra></extra>",
    ))
    fig.update_layout(yaxis={"range": [0, 1.12], "title": "probability"}, height=320, font=FONT,
                      margin={"t": 20, "b": 40, "l": 50, "r": 10})
    return fig
