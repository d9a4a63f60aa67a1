"""Data page: the loaded dataset's classes, samples, mean images, ink, unusual images and where it came from."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import streamlit as st

from kmnist_core import charts, insight
from kmnist_core.data import CLASSES, Dataset
from pages import common

SAMPLES = 12  # per class
UNUSUAL = 8  # per class (insight.explore's default)
ZOOM = 2  # 28 px -> 56 px
SEED = "data_seed"
ss = st.session_state


def _reshuffle() -> None:
    ss[SEED] = ss.get(SEED, 0) + 1


def _strips(per_class: list[np.ndarray], key: str, captions: list[str] | None = None) -> None:
    """One row per class: its label, then its images side by side (one picture per row)."""
    with st.container(key=key):
        for c, images in enumerate(per_class):
            label, row = st.columns([1, 9], vertical_alignment="center")
            label.markdown(f"**{CLASSES[c].label}**")
            row.image(charts.image_strip(images, ZOOM), caption=captions[c] if captions else None,
                      alt=f"{len(images)} images of class {CLASSES[c].label}, side by side")


def _classes(explorer: insight.DataExplorer) -> None:
    rows = explorer.classes
    st.subheader("Classes")
    train, val, test = (sum(getattr(r, split) for r in rows) for split in ("train", "validation", "test"))
    c1, c2, c3 = st.columns(3)
    c1.metric("Train (fitted on)", f"{train:,}")
    c2.metric("Validation", f"{val:,}", help="The default hold-out of the training split: stratified, seeded")
    c3.metric("Test", f"{test:,}")
    st.dataframe([{**asdict(r), "total": r.total} for r in rows], hide_index=True, key="data_classes")
    st.plotly_chart(charts.class_counts(rows), key="data_class_counts")
    st.caption(f"Train + validation = the {train + val:,} images of the training split; test = the {test:,} "
               "images of the test split, used only for final scores.")


def _samples(data: Dataset) -> None:
    st.subheader("Samples")
    seed = ss.setdefault(SEED, 0)
    left, right = st.columns([1, 5], vertical_alignment="center")
    left.button("Reshuffle", key="data_reshuffle", icon=":material/shuffle:", on_click=_reshuffle)
    right.caption(f"{SAMPLES} random training images per class (seed {seed}).")
    _strips([data.x_train[idx] for idx in insight.sample_indices(data.y_train, SAMPLES, seed)], "data_samples")


def _means(explorer: insight.DataExplorer) -> None:
    st.subheader("Mean image and ink per class")
    with st.container(key="data_means"):
        for col, mean, cls in zip(st.columns(len(CLASSES)), explorer.mean_images, CLASSES, strict=True):
            col.image(charts.gray_image(mean, 3, stretch=True), caption=cls.label, width="stretch",
                      alt=f"the mean training image of {cls.label}")
    st.caption("Each class's average training image, brightened to its own maximum.")
    ink = explorer.ink
    st.plotly_chart(charts.ink_histograms(ink.edges, ink.counts, ink.mean), key="data_ink")
    st.caption("Ink mass: an image's pixel sum / 255, i.e. how many fully inked pixels it is worth; "
               "a proxy for how many and how thick its strokes are.")


def _unusual(explorer: insight.DataExplorer, data: Dataset) -> None:
    st.subheader("Unusual images")
    kinds = {"mean": "farthest from their class's mean image (training split)"}
    if explorer.knn_mistakes is not None:
        kinds["knn"] = "misclassified by 4-NN (test split), most confident first"
    kind = st.radio("Show the images", list(kinds), format_func=kinds.get, key="data_unusual", horizontal=True)
    if kind == "mean":
        _strips([data.x_train[idx] for idx in explorer.unusual.indices], "data_unusual_images")
    else:
        wrong = [explorer.knn_mistakes.of_class(c) for c in range(len(CLASSES))]
        _strips([data.x_test[m.indices[:UNUSUAL]] for m in wrong], "data_unusual_images",
                [f"{len(m)} mistakes; 4-NN said " + " ".join(CLASSES[p].hiragana for p in m.pred[:UNUSUAL])
                 for m in wrong])
    if explorer.knn_mistakes is None:
        st.caption("The test images 4-NN gets wrong show here once the k-NN baselines are computed.")
        common.compute_baselines_button("data_baselines")


def _provenance(p: insight.Provenance) -> None:
    st.subheader("Where the data came from")
    split = ("the official split" if p.split == "official" else "a subset, not the official 60,000 / 10,000 split")
    origin = "tensorflow-datasets" if p.origin == "tfds" else "the official files' formats, read from a folder"
    st.markdown(f"**Source:** {p.source}  \n**Read from:** {origin}  \n**Split:** {split} "
                f"({p.n_train:,} train / {p.n_test:,} test)  \n**Fingerprint:** `{p.fingerprint}` (sha1 of the arrays; "
                "a run remembers the fingerprint of the data it was trained on)")
    if p.files:
        st.dataframe([{"role": f.role, "file": f.name, "format": f.format, "bytes": f.size,
                       "md5": "verified (official file)" if f.md5_verified else "not checked: not an official file"}
                      for f in p.files], hide_index=True, key="data_files")


def main() -> None:
    st.title("Data")
    data, explorer = common.dataset(), common.explorer()
    if data is None or explorer is None:
        st.info("The data could not be loaded (see the message above).", icon=":material/info:")
        return
    _classes(explorer)
    _samples(data)
    _means(explorer)
    _unusual(explorer, data)
    _provenance(explorer.provenance)


common.require_frame()
with common.guard():
    main()
