"""Draw -> prediction as the Draw page does it: preprocess_canvas + the numpy Network, against model.predict."""

from __future__ import annotations

import time

import numpy as np

from .context import Context
from .stats import percentiles_ms
from .training import REFERENCE

CANVAS = 280  # px, the Draw page's canvas
KINDS = ("opaque", "transparent")  # white ink on opaque black (the canvas' background), or on transparent


def drawings(n: int, background: str, seed: int = 0) -> list[np.ndarray]:
    """n different 280x280 RGBA canvas drawings of three white strokes.

    Args:
        background: "opaque" (black, alpha 255) or "transparent" (alpha 0).
    """
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    fill = (0, 0, 0, 255) if background == "opaque" else (0, 0, 0, 0)
    out = []
    for _ in range(n):
        img = Image.new("RGBA", (CANVAS, CANVAS), fill)
        pen = ImageDraw.Draw(img)
        for _ in range(3):
            points = [tuple(p) for p in rng.integers(30, 250, (4, 2)).tolist()]
            pen.line(points, fill=(255, 255, 255, 255), width=int(rng.integers(12, 24)), joint="curve")
        out.append(np.asarray(img))  # (280, 280, 4) uint8
    return out


def section_predict(ctx: Context) -> None:
    """Canvas -> 28x28 -> probabilities, warm, on both backgrounds interleaved; model.predict as the baseline."""
    from kmnist_core.drawing import preprocess_canvas
    from kmnist_core.inference import Network
    from kmnist_core.model import build_model, export_weights

    ctx.log("draw-to-prediction latency (280x280 canvas drawings, opaque black and transparent)")
    model = build_model(REFERENCE)  # untrained: the same work as a trained one
    network = Network(export_weights(model))  # the server's TensorFlow-free forward pass
    canvases = {kind: drawings(8, kind, seed=i) for i, kind in enumerate(KINDS)}
    img = preprocess_canvas(canvases["opaque"][0])
    network.proba(img)
    model.predict(img[None], verbose=0)  # warm the baseline
    ours: dict[str, list[float]] = {kind: [] for kind in KINDS}
    base, prep, model_only = [], [], []
    for i in range(ctx.sizes.predict_calls):
        for kind in KINDS if i % 2 == 0 else KINDS[::-1]:
            rgba = canvases[kind][i % 8]
            t = time.perf_counter()
            img = preprocess_canvas(rgba)
            network.proba(img)
            ours[kind].append(time.perf_counter() - t)
            t = time.perf_counter()
            network.proba(img)
            model_only.append(time.perf_counter() - t)
            t = time.perf_counter()
            preprocess_canvas(rgba)
            prep.append(time.perf_counter() - t)
        if i < ctx.sizes.baseline_predict_calls:
            rgba = canvases[KINDS[i % 2]][i % 8]
            t = time.perf_counter()
            model.predict(preprocess_canvas(rgba)[None], verbose=0)
            base.append(time.perf_counter() - t)
    p50, p99 = percentiles_ms(ours["opaque"] + ours["transparent"])
    base50, base99 = percentiles_ms(base)
    by_kind = {kind: percentiles_ms(ours[kind]) for kind in KINDS}
    ctx.log(f"  {2 * ctx.sizes.predict_calls} calls: ours p50 {p50:.2f} ms p99 {p99:.2f} ms"
            f" (opaque p50 {by_kind['opaque'][0]:.2f}, transparent p50 {by_kind['transparent'][0]:.2f});"
            f" model.predict path p50 {base50:.1f} ms")
    figures = {
        "predict_p50_ms": p50,
        "predict_p99_ms": p99,
        "predict_model_p50_ms": percentiles_ms(model_only)[0],
        "predict_preprocess_p50_ms": percentiles_ms(prep)[0],
        "predict_baseline_p50_ms": base50,
        "predict_baseline_p99_ms": base99,
    }
    for kind, (k50, k99) in by_kind.items():
        figures[f"predict_{kind}_p50_ms"], figures[f"predict_{kind}_p99_ms"] = k50, k99
    ctx.record(figures, "synthetic 280x280 drawings",
               {"predict_p50_ms": "an untrained [128, 64] network: the same work as a trained one"})
