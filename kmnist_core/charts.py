"""Plotly figures from run data (curves, confusion, probabilities, insight views), small images, an HTML report."""

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


# --- look inside: the Data and Inspect pages, the Draw page's evidence ---

# One colour per class, in CLASSES order (Tableau 10), wherever classes are told apart by colour.
CLASS_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf")
SPLIT_COLOURS = {"train": TRAIN_COLOUR, "validation": VAL_COLOUR, "test": "#2ca02c"}
# Diverging scale, negative blue, 0 white, positive red: weights and saliency share it.
DIVERGING = "RdBu_r"
POSITIVE_RGB, NEGATIVE_RGB = (214, 39, 40), (31, 119, 180)  # the saliency overlay's red and blue


def weight_grid(images: np.ndarray, units: Sequence[int], limit: float, columns: int = 8) -> go.Figure:
    """First-layer weight images as small heatmaps on one diverging colour scale centred on 0.

    Args:
        images: (K, 28, 28) weights (insight.first_layer_weights(net).images), strongest first.
        units: (K,) their unit indices, for the trace names and hover text.
        limit: the colour range is [-limit, limit], so that 0 is white.
        columns: tiles per row.

    Returns:
        One Heatmap trace per unit, named 'unit 17', z = its 28x28 weights (row 0 at the top), sharing one
        colour axis. z stays a float32 array, the exception to plain lists here: plotly validates 64 nested
        lists in ~0.7 s, an array in ~40 ms, and sends it as a typed array (the weights exactly, and smaller).
    """
    k = len(images)
    rows = max(1, -(-k // columns))
    gap = 0.06  # of a tile, between tiles
    limit = max(float(limit), 1e-12)
    layout: dict[str, Any] = {
        "font": FONT, "height": 80 * rows + 20, "margin": {"t": 10, "b": 10, "l": 10, "r": 10},
        "coloraxis": {"colorscale": DIVERGING, "cmin": -limit, "cmax": limit, "cmid": 0,
                      "colorbar": {"title": {"text": "weight"}, "thickness": 14}},
    }
    traces = []
    for i, (img, unit) in enumerate(zip(images, units, strict=True)):
        r, c = divmod(i, columns)
        ax = "" if i == 0 else str(i + 1)
        layout[f"xaxis{ax}"] = {"domain": [c / columns, (c + 1 - gap) / columns], "anchor": f"y{ax}",
                                "visible": False, "fixedrange": True, "constrain": "domain"}
        layout[f"yaxis{ax}"] = {"domain": [1 - (r + 1 - gap) / rows, 1 - r / rows], "anchor": f"x{ax}",
                                "visible": False, "fixedrange": True, "autorange": "reversed",
                                "scaleanchor": f"x{ax}", "constrain": "domain"}
        traces.append(go.Heatmap(
            z=np.asarray(img, dtype=np.float32), coloraxis="coloraxis", name=f"unit {unit}",
            xaxis=f"x{ax}", yaxis=f"y{ax}",
            hovertemplate=f"unit {unit}<br>pixel row %{{y}}, column %{{x}}<br>weight %{{z:.4f}}<extra></extra>"))
    return go.Figure(data=traces, layout=layout)


def embedding_map(coords: np.ndarray, indices: np.ndarray, labels: np.ndarray, pred: np.ndarray,
                  axis_titles: tuple[str, str] = ("1", "2"), selected: int | None = None) -> go.Figure:
    """Test images placed in 2-D (insight.Embedding), coloured by true class, misclassified ones ringed.

    Every point carries customdata [test index, predicted label], so a click can name its image
    (point_from_selection).

    Args:
        coords: (M, 2) positions.
        indices: (M,) test-split indices of the points.
        labels: (M,) true classes.
        pred: (M,) predicted classes.
        axis_titles: the x and y axis titles.
        selected: a test index to mark with a star, if it is among the points.

    Returns:
        One Scatter trace per class (named by its label), then 'misclassified' (rings), then 'selected'.
    """
    coords, indices = np.asarray(coords, dtype=float), np.asarray(indices)
    labels, pred = np.asarray(labels), np.asarray(pred)
    hover = "test image #%{customdata[0]}<br>true %{meta}<br>predicted %{customdata[1]}<extra></extra>"

    def points(keep: np.ndarray) -> dict[str, Any]:
        return {"x": np.round(coords[keep, 0], 4).tolist(), "y": np.round(coords[keep, 1], 4).tolist(),
                "customdata": [[int(i), CLASS_LABELS[int(p)]] for i, p in zip(indices[keep], pred[keep], strict=True)]}

    same = {"mode": "markers", "selected": {"marker": {"opacity": 1}}, "unselected": {"marker": {"opacity": 1}}}
    traces = [go.Scatter(**points(labels == c), name=CLASS_LABELS[c], meta=CLASS_LABELS[c], hovertemplate=hover,
                         marker={"color": CLASS_COLOURS[c], "size": 6, "opacity": 0.75}, **same)
              for c in range(len(CLASSES))]
    wrong = labels != pred
    traces.append(go.Scatter(
        **points(wrong), name="misclassified", marker={"symbol": "circle-open", "size": 10, "color": "#222222",
                                                         "line": {"width": 1.2}},
        hovertemplate="test image #%{customdata[0]}<br>misclassified as %{customdata[1]}<extra></extra>", **same))
    chosen = indices == selected
    traces.append(go.Scatter(**points(chosen), name="selected", showlegend=bool(chosen.any()), hoverinfo="skip",
                             marker={"symbol": "star", "size": 18, "color": "#ffd700",
                                     "line": {"width": 1.5, "color": "#222222"}}, **same))
    fig = go.Figure(data=traces)
    fig.update_layout(height=620, font=FONT, margin={"t": 10, "b": 50, "l": 50, "r": 10}, hovermode="closest",
                      clickmode="event+select", uirevision=f"embedding {axis_titles}",
                      legend={"itemsizing": "constant"}, xaxis_title=axis_titles[0], yaxis_title=axis_titles[1])
    return fig


def point_from_selection(selection: Mapping[str, Any] | None) -> int | None:
    """The test index of the embedding_map point a selection event points at, if any (its customdata[0])."""
    for point in (selection or {}).get("points") or []:
        custom = point.get("customdata")
        if isinstance(custom, (list, tuple)) and custom:
            try:
                return int(custom[0])
            except (TypeError, ValueError):
                continue
    return None


def reliability_diagram(edges: np.ndarray, confidence: np.ndarray, accuracy: np.ndarray, count: np.ndarray,
                        ece: float) -> go.Figure:
    """Top-label reliability diagram: accuracy per confidence bin against the diagonal (insight.Calibration).

    Args:
        edges: (B + 1,) bin edges over [0, 1].
        confidence: (B,) mean confidence per bin, NaN when empty.
        accuracy: (B,) accuracy per bin, NaN when empty.
        count: (B,) images per bin.
        ece: the expected calibration error, for the title.

    Returns:
        Traces 'accuracy' (bars, None for empty bins), 'gap' (from accuracy up or down to the mean
        confidence) and 'perfectly calibrated' (the diagonal).
    """
    edges = np.asarray(edges, dtype=float)
    centres, width = ((edges[:-1] + edges[1:]) / 2).tolist(), float(edges[1] - edges[0])
    acc = [None if np.isnan(a) else float(a) for a in accuracy]
    conf = [None if np.isnan(c) else float(c) for c in confidence]
    gap = [None if a is None else c - a for a, c in zip(acc, conf, strict=True)]
    n = np.asarray(count).tolist()
    fig = go.Figure([
        go.Bar(x=centres, y=acc, width=width, name="accuracy", marker_color=TRAIN_COLOUR, customdata=n,
               hovertemplate="confidence %{x:.2f}<br>accuracy %{y:.3f} of %{customdata} images<extra></extra>"),
        go.Bar(x=centres, y=gap, base=acc, width=width, name="gap to the mean confidence",
               marker={"color": "rgba(214, 39, 40, 0.35)", "line": {"color": "#d62728", "width": 1}},
               hovertemplate="gap %{y:+.3f}<extra></extra>"),
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfectly calibrated",
                   line={"color": "#444444", "dash": "dash"}, hoverinfo="skip"),
    ])
    fig.update_layout(height=380, font=FONT, barmode="overlay", margin={"t": 40, "b": 50, "l": 50, "r": 10},
                      title={"text": f"Reliability · ECE {ece:.4f}", "x": 0.02}, legend={"orientation": "h", "y": -0.2},
                      xaxis={"title": {"text": "confidence (top-class probability)"}, "range": [0, 1]},
                      yaxis={"title": {"text": "accuracy"}, "range": [0, 1]})
    return fig


def confidence_histogram(edges: np.ndarray, correct: np.ndarray, wrong: np.ndarray) -> go.Figure:
    """How confident the predictions are, right ones and mistakes stacked (insight.Calibration's histogram).

    Returns:
        Bar traces 'correct' and 'mistakes', x = bin centres, y = counts as lists.
    """
    edges = np.asarray(edges, dtype=float)
    centres, width = ((edges[:-1] + edges[1:]) / 2).tolist(), float(edges[1] - edges[0])
    fig = go.Figure([go.Bar(x=centres, y=np.asarray(values).tolist(), width=width, name=name, marker_color=colour,
                            hovertemplate=f"confidence %{{x:.3f}}: %{{y}} {name}<extra></extra>")
                     for name, values, colour in (("correct", correct, TRAIN_COLOUR), ("mistakes", wrong, "#d62728"))])
    fig.update_layout(height=380, font=FONT, barmode="stack", margin={"t": 40, "b": 50, "l": 50, "r": 10},
                      title={"text": "Confidence", "x": 0.02}, legend={"orientation": "h", "y": -0.2},
                      xaxis={"title": {"text": "confidence (top-class probability)"}, "range": [0, 1]},
                      yaxis={"title": {"text": "test images"}, "type": "log"})
    return fig


# --- small images composed in numpy, for st.image ---


def gray_image(image: np.ndarray, zoom: int = 1, stretch: bool = False) -> np.ndarray:
    """A grey image as uint8, enlarged nearest-neighbour.

    Args:
        image: (28, 28) pixels 0..255 (uint8, or float such as a mean image).
        zoom: enlargement factor.
        stretch: scale so that the brightest pixel is 255 (faint mean images).

    Returns:
        (28 * zoom, 28 * zoom) uint8.
    """
    img = np.asarray(image, dtype=np.float32)
    if stretch and img.max() > 0:
        img = img * (255 / img.max())
    out = np.clip(np.round(img), 0, 255).astype(np.uint8)
    return np.repeat(np.repeat(out, zoom, axis=0), zoom, axis=1)


def image_strip(images: np.ndarray, zoom: int = 2, gap: int = 2, gap_value: int = 255) -> np.ndarray:
    """Images side by side in one uint8 image, separated by light gaps (one PNG instead of many).

    Args:
        images: (N, 28, 28) uint8.
        zoom: enlargement factor.
        gap: pixels between images.
        gap_value: grey of the gaps.

    Returns:
        (28 * zoom, N * (28 * zoom + gap) - gap) uint8; a single gap-coloured column for N = 0.
    """
    tiles = [gray_image(img, zoom) for img in images]
    if not tiles:
        return np.full((28 * zoom, 1), gap_value, np.uint8)
    spacer = np.full((28 * zoom, gap), gap_value, np.uint8)
    parts = [part for tile in tiles for part in (tile, spacer)][:-1]
    return np.concatenate(parts, axis=1)


def saliency_overlay(image: np.ndarray, saliency: np.ndarray, limit: float | None = None,
                     zoom: int = 6) -> np.ndarray:
    """The input in dim grey with its saliency painted over: red raised the class's probability, blue lowered it.

    Args:
        image: (28, 28) uint8 model input.
        saliency: (28, 28) insight.saliency (gradient x input of the top class's probability).
        limit: |saliency| shown at full strength; default its maximum.
        zoom: enlargement factor.

    Returns:
        (28 * zoom, 28 * zoom, 3) uint8 RGB. The opacity of the colour is sqrt(|s| / limit), so that
        weak evidence still shows; pixels without saliency keep the grey input.
    """
    s = np.asarray(saliency, dtype=np.float32)
    limit = float(np.abs(s).max()) if limit is None else float(limit)
    strength = np.clip(s / limit, -1, 1) if limit > 0 else np.zeros_like(s)  # (28, 28) in [-1, 1]
    grey = np.asarray(image, dtype=np.float32)[..., None] * 0.55  # (28, 28, 1): the ink, dimmed
    colour = np.where(strength[..., None] >= 0, np.float32(POSITIVE_RGB), np.float32(NEGATIVE_RGB))  # (28, 28, 3)
    alpha = np.sqrt(np.abs(strength))[..., None]
    rgb = np.clip(np.round(grey * (1 - alpha) + colour * alpha), 0, 255).astype(np.uint8)
    return np.repeat(np.repeat(rgb, zoom, axis=0), zoom, axis=1)


# --- a self-contained HTML report (the CLI's `inspect`) ---


def report_html(title: str, sections: Sequence[tuple[str, Any]], intro: str = "",
                font_file: str | None = None) -> str:
    """One offline HTML page: plotly.js included once, figures and image galleries in order.

    Args:
        title: the page title and heading.
        sections: (heading, content) where content is a go.Figure or a list of (uint8 image, caption).
        intro: a paragraph under the heading (plain text).
        font_file: a woff2 font embedded as 'kmnist-hiragana' (FONT's fallback), so that hiragana
            render without Japanese fonts installed.

    Returns:
        The HTML text.
    """
    import base64
    import html
    import io
    from pathlib import Path

    from PIL import Image

    def png(img: np.ndarray) -> str:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()

    face = ""
    if font_file and Path(font_file).is_file():
        face = ("@font-face{font-family:kmnist-hiragana;src:url(data:font/woff2;base64,"
                f"{base64.b64encode(Path(font_file).read_bytes()).decode()}) format('woff2');}}")
    body, first = [], True
    for heading, content in sections:
        body.append(f"<h2>{html.escape(heading)}</h2>")
        if isinstance(content, go.Figure):
            body.append(content.to_html(full_html=False, include_plotlyjs=first, config={"displaylogo": False}))
            first = False
        else:
            body.append("<div class='gallery'>" + "".join(
                f"<figure><img src='{png(img)}' alt=''><figcaption>{html.escape(caption)}</figcaption></figure>"
                for img, caption in content) + "</div>")
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{face}"
        f"body{{font-family:{FONT['family']};margin:2rem;max-width:1100px}}"
        ".gallery{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0;text-align:center}"
        "figcaption{font-size:.85rem}img{image-rendering:pixelated}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(intro)}</p>{''.join(body)}</body></html>")


# --- sweeps ---


def best_so_far(points: Sequence[Mapping[str, float]]) -> go.Figure:
    """Each completed trial's validation accuracy in finishing order, and the best so far (sweeps.best_so_far)."""
    x = list(range(1, len(points) + 1))
    fig = go.Figure([
        go.Scatter(x=x, y=[p["value"] for p in points], mode="markers", name="trial", marker={"color": TRAIN_COLOUR},
                   customdata=[p["trial"] for p in points],
                   hovertemplate="trial %{customdata}: %{y:.4f}<extra></extra>"),
        go.Scatter(x=x, y=[p["best"] for p in points], mode="lines", name="best so far", line={"color": VAL_COLOUR},
                   line_shape="hv"),
    ])
    fig.update_layout(xaxis_title="completed trials", yaxis_title="best val accuracy", height=340, font=FONT,
                      margin={"t": 30, "b": 40, "l": 50, "r": 10}, legend={"orientation": "h", "y": -0.25})
    return fig


def importances(values: Mapping[str, float], evaluator: str) -> go.Figure:
    """Parameter importances as horizontal bars, most important on top, titled with the evaluator that made them."""
    names = sorted(values, key=values.get)
    fig = go.Figure(go.Bar(x=[values[n] for n in names], y=names, orientation="h", marker_color=TRAIN_COLOUR,
                           hovertemplate="%{y}: %{x:.3f}<extra></extra>", name="importance"))
    fig.update_layout(title={"text": f"Parameter importance · {evaluator.split(' (')[0]}", "font": {"size": 13}},
                      xaxis_title="importance", height=340, font=FONT, margin={"t": 40, "b": 40, "l": 120, "r": 10})
    return fig


def sweep_parcoords(rows: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Parallel coordinates of a sweep's finished trials (sweeps.trials_table): each param, then val accuracy."""
    done = [r for r in rows if r["val_accuracy"] is not None and r["status"] in ("completed", "pruned")]
    params = sorted({name for r in done for name in r["params"]})
    dims = []
    for name in params:
        values = [r["params"].get(name) for r in done]
        if all(isinstance(v, (int, float)) or v is None for v in values):
            numbers = [float(v) if v is not None else float("nan") for v in values]
            log = name in ("weight_decay", "learning_rate") and all(v is None or v > 0 for v in values)
            dims.append({"label": f"log10 {name}" if log else name,
                         "values": [float(np.log10(v)) if log and v == v else v for v in numbers]})
        else:
            levels = sorted({str(v) for v in values})
            dims.append({"label": name, "values": [levels.index(str(v)) for v in values],
                         "tickvals": list(range(len(levels))), "ticktext": levels})
    acc = [float(r["val_accuracy"]) for r in done]
    dims.append({"label": "val accuracy", "values": acc})
    fig = go.Figure(go.Parcoords(line={"color": acc, "colorscale": "Viridis", "showscale": True}, dimensions=dims))
    fig.update_layout(height=400, font=FONT, margin={"t": 50, "b": 30, "l": 60, "r": 60})
    return fig
