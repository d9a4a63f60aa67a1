"""Data page: the loaded dataset's classes, samples, mean images, ink, unusual images and where it came from."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import streamlit as st

from kmnist_core import charts, insight, views
from kmnist_core.data import CLASSES, Dataset
from pages import common

if TYPE_CHECKING:
    import pandas as pd

SAMPLES = 12  # per class
UNUSUAL = 8  # per class (insight.explore's default)
ZOOM = 2  # 28 px -> 56 px
SEED = "data_seed"
SPLIT_HELP = {"train": "The images a run fits on: the training split less the validation hold-out",
              "validation": "The default hold-out of the training split: stratified, seeded",
              "test": "The test split: used only for final scores"}
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


def _class_columns(table: pd.DataFrame, ink: insight.InkHistogram) -> dict:
    """Counts as bars on one scale per split; the ink histogram as a small bar chart in its cell."""
    # Pixel widths: the ten columns fit the centred layout's 740 px without scrolling.
    narrow = {name: st.column_config.Column(width=px) for name, px in
              (("index", 48), ("hiragana", 70), ("romaji", 56), ("codepoint", 80))}
    bars = {split: st.column_config.ProgressColumn(split, format="localized", min_value=0, help=hint, width=82,
                                                   max_value=max(1, int(table[split].max())),
                                                   color=charts.SPLIT_COLOURS[split])
            for split, hint in SPLIT_HELP.items()}
    return {**narrow, **bars, "total": st.column_config.NumberColumn(format="localized", width=56),
            "mean ink": st.column_config.NumberColumn(
                format="%.0f", width=70, help="Mean ink mass of the class's images in the training split, in fully "
                                              "inked pixels"),
            "ink histogram": st.column_config.BarChartColumn(
                y_min=0, y_max=int(ink.counts.max()), width=110, color=charts.TRAIN_COLOUR,
                help=f"Images of the training split (train + validation) per ink mass, {len(ink.edges) - 1} bins "
                     f"from {ink.edges[0]:.0f} to {ink.edges[-1]:.0f} fully inked pixels, the same for every class")}


def _classes(explorer: insight.DataExplorer) -> None:
    st.subheader("Classes")
    table = views.data_class_table(explorer.classes, explorer.ink)
    train, val, test = (int(table[split].sum()) for split in ("train", "validation", "test"))
    c1, c2, c3 = st.columns(3)
    c1.metric("Train (fitted on)", f"{train:,}", help=SPLIT_HELP["train"])
    c2.metric("Validation", f"{val:,}", help=SPLIT_HELP["validation"])
    c3.metric("Test", f"{test:,}", help=SPLIT_HELP["test"])
    st.dataframe(table, hide_index=True, key="data_classes", column_config=_class_columns(table, explorer.ink))
    ink = explorer.ink
    st.caption(f"Train + validation = the {train + val:,} images of the training split; test = the {test:,} "
               "images of the test split, used only for final scores. Ink mass: an image's pixel sum / 255, i.e. "
               "how many fully inked pixels it is worth, a proxy for how many and how thick its strokes are; its "
               f"histogram spans {ink.edges[0]:.0f} to {ink.edges[-1]:.0f} on the training split.")


def _samples(data: Dataset) -> None:
    st.subheader("Samples")
    seed = ss.setdefault(SEED, 0)
    left, right = st.columns([1, 5], vertical_alignment="center")
    left.button("Reshuffle", key="data_reshuffle", icon=":material/shuffle:", on_click=_reshuffle)
    right.caption(f"{SAMPLES} random training images per class (seed {seed}).")
    _strips([data.x_train[idx] for idx in insight.sample_indices(data.y_train, SAMPLES, seed)], "data_samples")


def _means(explorer: insight.DataExplorer) -> None:
    st.subheader("Mean image per class")
    with st.container(key="data_means"):
        for col, mean, cls in zip(st.columns(len(CLASSES)), explorer.mean_images, CLASSES, strict=True):
            col.image(charts.gray_image(mean, 3, stretch=True), caption=cls.label, width="stretch",
                      alt=f"the mean training image of {cls.label}")
    st.caption("Each class's average training image, brightened to its own maximum.")


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
