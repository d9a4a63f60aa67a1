"""Draw page: draw (or upload) a character and see what a trained model makes of it."""

from __future__ import annotations

import numpy as np
import streamlit as st
from streamlit_drawable_canvas import st_canvas

from kmnist_core import charts, drawing, insight, service, views
from kmnist_core.data import Dataset
from kmnist_core.errors import InputError
from kmnist_core.inference import Network
from pages import common

CANVAS = 280  # px; KMNIST is 28 px, so the canvas is 10x
PREVIEW_ZOOM = 6  # the 28x28 model input, enlarged nearest-neighbour to 168 px
EXAMPLES = 8
NEIGHBOUR_ZOOM = 3  # 28 px -> 84 px
MAX_UPLOAD_BYTES = 2_000_000  # matches server.maxUploadSize = 2 (MB) in .streamlit/config.toml
ss = st.session_state


def _image() -> tuple[np.ndarray | None, str]:
    """The canvas and upload widgets; returns (RGBA image or None, where it came from)."""
    st.space("small")  # room for the canvas toolbar, which floats above the canvas
    width = ss.get("draw_stroke", 18)
    result = st_canvas(
        fill_color="rgba(255, 255, 255, 0)", stroke_width=width, stroke_color="#FFFFFF",
        background_color="#000000", height=CANVAS, width=CANVAS, drawing_mode="freedraw",
        return_image_data=True, update_streamlit=True, key="canvas",
    )
    st.caption("White ink on black, like KMNIST. The toolbar above the canvas undoes, redoes and clears.")
    st.slider("Stroke width", 4, 40, 18, key="draw_stroke", help="Pen width in canvas pixels")
    upload = st.file_uploader("…or upload a PNG or JPEG", type=["png", "jpg", "jpeg"], key="draw_upload",
                              help=f"At most {MAX_UPLOAD_BYTES // 1_000_000} MB")
    if upload is not None:
        try:
            return drawing.decode_upload(upload.getvalue(), max_bytes=MAX_UPLOAD_BYTES), "upload"
        except InputError as e:
            st.error(str(e), icon=":material/error:")
            return None, "upload"
    try:
        return result.image_data, "canvas"  # None until the first stroke
    except (ValueError, OSError) as e:  # a canvas message that is not a PNG data URL
        st.error(f"the drawing could not be read ({type(e).__name__}); clear the canvas and draw again",
                 icon=":material/error:")
        return None, "canvas"


def _prediction(prediction: service.Prediction, data) -> None:
    top, p = prediction.top
    with st.container(key="prediction"):
        st.markdown(f"<div style='font-size:6rem;line-height:1.1'>{top.hiragana}</div>", unsafe_allow_html=True)
        st.markdown(f"### {top.romaji} · {p:.1%}")
    st.plotly_chart(charts.probability_bars(prediction.proba), key="draw_proba")
    if data is not None:
        st.caption(f"Training images of {top.label}, for comparison:")
        idx = views.class_examples(data.y_train, top.index, EXAMPLES)
        cols = st.columns(len(idx) or 1)
        for col, i in zip(cols, idx, strict=False):
            col.image(views.enlarge(data.x_train[i], 3))


def _evidence(run_id: str, network: Network, prediction: service.Prediction, data: Dataset | None) -> None:
    """Why: the top-3 classes, which ink drove the top one, and the nearest training images in the last layer."""
    st.subheader("Evidence")
    ranked, heat, near = st.columns([2, 2, 6])
    with ranked, st.container(key="draw_top3"):
        st.markdown("**Top 3**")
        for rank, (cls, p) in enumerate(prediction.ranked(insight.TOP_CLASSES), start=1):
            st.markdown(f"{rank}. <span style='font-size:1.6rem'>{cls.hiragana}</span> {cls.romaji} · {p:.1%}",
                        unsafe_allow_html=True)
    evidence = None
    with near:
        st.markdown(f"**The {insight.NEIGHBOURS} nearest training images** (in the model's last hidden layer)")
        if data is None:
            st.caption("They need the data, which could not be loaded.")
        with common.guard():  # e.g. a run trained on other data: one line instead of the neighbours
            if data is not None:
                evidence = insight.evidence(network, prediction.image, common.train_activations(run_id))
                with st.container(key="draw_neighbours"):
                    st.image([views.enlarge(data.x_train[i], NEIGHBOUR_ZOOM) for i in evidence.neighbours],
                             width=28 * NEIGHBOUR_ZOOM, caption=[
                                 f"{charts.CLASS_LABELS[c]} · d={d:.2f}"
                                 for c, d in zip(evidence.neighbour_labels, evidence.neighbour_distances, strict=True)],
                             alt=[f"training image #{i}, class {charts.CLASS_LABELS[c]}, distance {d:.2f}"
                                  for i, c, d in zip(evidence.neighbours, evidence.neighbour_labels,
                                                     evidence.neighbour_distances, strict=True)])
    saliency = evidence.saliency if evidence else insight.saliency(network, prediction.image)
    top = prediction.top[0]
    with heat, st.container(key="draw_saliency"):
        st.markdown(f"**What drove {top.hiragana}**")
        st.image(charts.saliency_overlay(prediction.image, saliency, zoom=PREVIEW_ZOOM),
                 caption=f"red: ink that raised p({top.romaji}); blue: ink that lowered it",
                 alt=f"the model input with its saliency for {top.romaji} overlaid")


def main() -> None:
    st.title("Draw")
    runs_store = common.store()
    if runs_store is None:
        return
    info = common.pick_run(runs_store.list_runs(), label="Model")
    if info is None:
        return
    left, middle, right = st.columns([3, 2, 3])
    with left:
        rgba, source = _image()
    network = common.run_network(info.run_id)  # after the canvas is on screen, so the first stroke is fast
    try:
        prediction = service.predict_image(network, rgba) if rgba is not None else None
    except InputError as e:
        with middle:
            st.error(str(e), icon=":material/error:")
        return
    with middle:
        st.markdown("**Model input (28×28)**")
        with st.container(key="draw_preview"):
            if prediction is None:
                st.info("Draw a character on the canvas (or upload an image) to classify it.",
                        icon=":material/draw:")
            else:
                st.image(views.enlarge(prediction.image, PREVIEW_ZOOM), caption=f"from the {source}",
                         alt=f"the 28×28 model input made from the {source}")
    if prediction is not None:
        with right:
            _prediction(prediction, common.dataset())
        _evidence(info.run_id, network, prediction, common.dataset())


common.require_frame()
with common.guard():
    main()
