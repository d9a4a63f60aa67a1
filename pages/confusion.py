"""Confusion page: a run's test confusion matrix; click a cell to see its images; per-class metrics."""

from __future__ import annotations

import streamlit as st

from kmnist_core import charts, service, views
from kmnist_core.data import CLASSES
from pages import common

GALLERY_SIZE = 36
ZOOM = 3  # 28 px -> 84 px on screen, nearest-neighbour
TRUE, PRED = "confusion_true", "confusion_pred"
ss = st.session_state


def _on_click() -> None:
    """A clicked cell sets the two class pickers, which are the one record of the chosen cell."""
    event = ss.get("confusion_chart")
    cell = charts.cell_from_selection(event.get("selection") if event else None)
    if cell is not None:
        ss[TRUE], ss[PRED] = cell


def _gallery(predictions, data, true: int, pred: int) -> None:
    """Test images of the cell (true, pred); `predictions` gives (y_pred, proba) when called."""
    with st.container(key="confusion_gallery"):
        title = "correctly classified" if true == pred else f"predicted as {CLASSES[pred].label}"
        y_pred, proba = predictions()
        idx, probs, total = views.cell_samples(data.y_test, y_pred, proba, true, pred, limit=GALLERY_SIZE)
        st.subheader(f"True {CLASSES[true].label}, {title}: {total} test images")
        if total == 0:
            st.caption("No test image falls in this cell.")
            return
        shown = f"the {len(idx)} most confident" if total > len(idx) else "all"
        st.caption(f"Showing {shown}, each with the probability the model gave to {CLASSES[pred].label}.")
        st.image([views.enlarge(data.x_test[i], ZOOM) for i in idx],
                 caption=[f"p={p:.2f}" for p in probs], width=28 * ZOOM,
                 alt=[views.predicted_image_alt(i, true, pred, p) for i, p in zip(idx, probs, strict=True)])


def _subject(runs_store, data) -> service.Subject | None:
    """What to show: a stored run or a cached k-NN baseline, as the user picks."""
    cached = common.baselines()
    kind = "run"
    if cached:
        kind = st.radio("Show", ["run", *cached], key="confusion_source", horizontal=True, bind="query-params",
                        format_func=lambda k: "a training run" if k == "run" else f"baseline: {cached[k].label}")
    if kind != "run":
        return service.baseline_subject(cached[kind])
    info = common.pick_run(runs_store.list_runs())
    return None if info is None else service.run_subject(runs_store, info, data)


def main() -> None:
    st.title("Confusion matrix")
    runs_store, data = common.store(), common.dataset()
    if runs_store is None:
        return
    subject = _subject(runs_store, data)
    if subject is None:
        return
    c1, c2, c3 = st.columns([1, 1, 2])
    c1.metric("Test accuracy", f"{subject.test_accuracy:.4f}")
    val = subject.best_val_accuracy
    c2.metric("Best val accuracy", f"{val:.4f}" if val is not None else "n/a", help="k-NN has no validation step"
              if val is None else None)
    with c3:
        mode = st.radio("Values", ["counts", "row-normalised"], key="confusion_mode", horizontal=True,
                        bind="query-params",
                        help="row-normalised: each row divided by the number of test images of that class")
    st.caption("Rows: the true class; columns: what the model predicted. Choose a cell here, or click one below "
               "to see its test images:")
    left, right = st.columns(2)
    labels = lambda i: CLASSES[i].label  # noqa: E731
    true = left.selectbox("True class", range(len(CLASSES)), key=TRUE, format_func=labels, index=None,
                          placeholder="choose a class", bind="query-params")
    pred = right.selectbox("Predicted as", range(len(CLASSES)), key=PRED, format_func=labels, index=None,
                           placeholder="choose a class", bind="query-params")
    cell = (true, pred) if true is not None and pred is not None else None
    fig = charts.confusion_heatmap(subject.confusion, normalised=mode == "row-normalised", selected=cell)
    st.plotly_chart(fig, key="confusion_chart", on_select=_on_click, selection_mode="points")
    if cell is not None:
        if data is None:
            st.info("The test images need the data, which could not be loaded.", icon=":material/info:")
        elif subject.warning:
            st.warning(subject.warning, icon=":material/warning:")
        else:
            _gallery(subject.predictions, data, true, pred)
    st.subheader("Per-class precision, recall and F1")
    st.dataframe(views.class_metrics_table(subject.per_class), hide_index=True, key="confusion_per_class",
                 column_config={c: st.column_config.NumberColumn(format="%.4f") for c in ("precision", "recall", "f1")})


common.require_frame()
with common.guard():
    main()
