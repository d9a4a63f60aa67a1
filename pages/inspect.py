"""Inspect page: what one completed run learned: first-layer weights, an embedding map, calibration, mistakes."""

from __future__ import annotations

import streamlit as st

from kmnist_core import charts, insight, views
from kmnist_core.data import CLASSES, Dataset
from kmnist_core.inference import Network
from kmnist_core.store import RunInfo, RunStore
from pages import common

VIEWS = {"weights": "First-layer weights", "embedding": "Embedding map", "calibration": "Calibration",
         "mistakes": "Confident mistakes"}
METHODS = {"pca": "PCA", "tsne": "t-SNE"}
POINT = "inspect_point"  # the test index clicked on the embedding map
MISTAKES = 24
ZOOM = 3  # 28 px -> 84 px
ss = st.session_state


def _on_click() -> None:
    event = ss.get("inspect_embedding")
    index = charts.point_from_selection(event.get("selection") if event else None)
    if index is not None:
        ss[POINT] = index


def _weights(net: Network) -> None:
    w = insight.first_layer_weights(net)
    units = net.hidden_layers[0]
    which = f"All {units} units" if len(w.units) == units else f"The {len(w.units)} strongest of the {units:,} units"
    st.caption(f"{which} of the first hidden layer, strongest (largest L2 norm of the 784 incoming weights) first, "
               "each drawn as the 28×28 image it responds to: red pixels excite the unit, blue ones inhibit it, "
               f"white is 0 (colour range ±{w.limit:.3f}).")
    st.plotly_chart(charts.weight_grid(w.images, w.units, w.limit), key="inspect_weights")


def _embedding(runs: RunStore, info: RunInfo, data: Dataset, net: Network) -> None:
    method = st.radio("Projection", list(METHODS), format_func=METHODS.get, key="inspect_method", horizontal=True,
                      bind="query-params")
    if method == "tsne":
        emb = insight.cached_embedding(runs, info.run_id, data, "tsne")
        if emb is None:
            st.caption(f"t-SNE places {min(insight.TSNE_MAX_POINTS, len(data.y_test)):,} test images by their "
                       "neighbourhoods instead of by variance; it is computed once per run and then cached.")
            if st.button("Compute t-SNE (10-25 s here)", key="inspect_tsne", icon=":material/scatter_plot:"):
                with st.spinner("Running t-SNE on the last hidden layer…"):
                    insight.embedding(runs, info.run_id, data, "tsne", net)
                st.rerun()
            return
    else:
        emb = insight.embedding(runs, info.run_id, data, "pca", net)
    if emb.explained_variance is not None:
        titles = tuple(f"PC {i + 1} ({share:.0%} of the variance)" for i, share in enumerate(emb.explained_variance))
    else:
        titles = ("t-SNE 1", "t-SNE 2")
    st.caption(f"{len(emb.indices):,} test images by their activations in hidden layer {emb.layer} (the last), "
               f"coloured by true class; the {int(emb.misclassified.sum()):,} misclassified are ringed. "
               f"Computed in {emb.seconds:.1f} s, cached in the run folder. Click a point to see its image.")
    fig = charts.embedding_map(emb.coords, emb.indices, emb.labels, emb.pred, titles, ss.get(POINT))
    st.plotly_chart(fig, key="inspect_embedding", on_select=_on_click, selection_mode="points")
    if ss.get(POINT) is not None:
        _point(runs, info, data, ss[POINT])


def _point(runs: RunStore, info: RunInfo, data: Dataset, index: int) -> None:
    """The clicked test image: picture, true class, prediction and the ten probabilities."""
    pred, proba = insight.load_run_predictions(runs, info.run_id, data)
    true, guess = CLASSES[int(data.y_test[index])], CLASSES[int(pred[index])]
    with st.container(key="inspect_point_detail"):
        st.subheader(f"Test image #{index}")
        left, right = st.columns([1, 3])
        left.image(views.enlarge(data.x_test[index], 6), caption=f"true {true.label}")
        verdict = "correct" if true == guess else "wrong"
        left.markdown(f"**Predicted {guess.label}** ({verdict}), p = {proba[index, guess.index]:.3f}")
        with right:
            st.plotly_chart(charts.probability_bars(proba[index]), key="inspect_point_proba")


def _calibration(runs: RunStore, info: RunInfo, data: Dataset) -> None:
    _, proba = insight.load_run_predictions(runs, info.run_id, data)
    cal = insight.calibration(proba, data.y_test)
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("ECE", f"{cal.ece:.4f}", help=f"Expected calibration error over {len(cal.count)} equal-width "
              "confidence bins: the image-weighted mean of |accuracy - confidence|")
    c2.metric("MCE", f"{cal.mce:.4f}", help="Maximum calibration error: the largest gap of any non-empty bin")
    c3.metric("Mean confidence", f"{cal.mean_confidence:.4f}")
    c4.metric("Test accuracy", f"{cal.overall_accuracy:.4f}")
    left, right = st.columns(2)
    with left:
        fig = charts.reliability_diagram(cal.edges, cal.confidence, cal.accuracy, cal.count, cal.ece)
        st.plotly_chart(fig, key="inspect_reliability")
    with right:
        fig = charts.confidence_histogram(cal.hist_edges, cal.hist_correct, cal.hist_wrong)
        st.plotly_chart(fig, key="inspect_confidence")
    st.caption("Bars under the diagonal: the model is more confident than it is right (over-confident); "
               "above it, under-confident. The histogram's count axis is logarithmic.")


def _mistakes(runs: RunStore, info: RunInfo, data: Dataset) -> None:
    _, proba = insight.load_run_predictions(runs, info.run_id, data)
    top = insight.confident_mistakes(proba, data.y_test, MISTAKES)
    counts = insight.confident_mistake_counts(proba, data.y_test)
    st.caption(f"The {len(top)} test images the model got wrong with the highest probability. Mistakes made with "
               f"p ≥ {insight.CONFIDENT}: {int(counts.sum())} in all; per true class: "
               + ", ".join(f"{c.hiragana} {n}" for c, n in zip(CLASSES, counts, strict=True)) + ".")
    if not len(top):
        st.info("This run classifies every test image correctly.", icon=":material/info:")
        return
    with st.container(key="inspect_mistakes"):
        st.image([views.enlarge(data.x_test[i], ZOOM) for i in top.indices], width=28 * ZOOM, caption=[
            f"{CLASSES[t].hiragana} → {CLASSES[p].hiragana} {q:.2f}"
            for t, p, q in zip(top.true, top.pred, top.probability, strict=True)], alt=[
            views.predicted_image_alt(i, t, p, q)
            for i, t, p, q in zip(top.indices, top.true, top.pred, top.probability, strict=True)])
    st.caption("Each caption: the true class → the predicted class and its probability.")


def main() -> None:
    st.title("Inspect")
    runs, data = common.store(), common.dataset()
    if runs is None:
        return
    info = common.pick_run(runs.list_runs())
    if info is None:
        return
    view = st.radio("View", list(VIEWS), format_func=VIEWS.get, key="inspect_view", horizontal=True,
                    bind="query-params")
    if view == "weights":
        _weights(common.run_network(info.run_id))
    elif data is None:
        st.info("This view needs the data, which could not be loaded.", icon=":material/info:")
    elif view == "embedding":
        _embedding(runs, info, data, common.run_network(info.run_id))
    elif view == "calibration":
        _calibration(runs, info, data)
    else:
        _mistakes(runs, info, data)


common.require_frame()
with common.guard():
    main()
