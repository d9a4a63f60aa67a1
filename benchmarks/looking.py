"""Looking inside a trained run in Chromium: the Inspect views and the Data page once cached, draw -> evidence."""

from __future__ import annotations

import time
from typing import Any

from .browsing import nav, timed, wait_painted
from .context import Context
from .stats import median, percentiles_ms, series
from .stores import TRAIN_PRESET, copy_run

# The Inspect page's views: the radio's label, and what shows once the view is painted.
VIEWS: dict[str, tuple[str, dict[str, Any]]] = {
    "weights": ("First-layer weights", {"charts": ["inspect_weights"]}),
    "embedding": ("Embedding map", {"charts": ["inspect_embedding"]}),
    "calibration": ("Calibration", {"charts": ["inspect_reliability", "inspect_confidence"]}),
    "mistakes": ("Confident mistakes", {"galleries": [("inspect_mistakes", 1)]}),
}
DATA_PAINTED: dict[str, Any] = {
    "frames": 2,  # the class table (its count bars and ink histograms are drawn in the grid) and the files
    "galleries": [("data_samples", 10), ("data_means", 10), ("data_unusual_images", 10)],
}
SALIENCY = ".st-key-draw_saliency img"
EVIDENCE_PAINTED: dict[str, Any] = {"galleries": [("draw_neighbours", 5), ("draw_saliency", 1)],
                                    "present": [".st-key-draw_top3 li"]}


def _in_process(ctx: Context, src: Any, run_id: str) -> tuple[dict[str, float], dict[str, float]]:
    """insight.evidence on canvas drawings with the run's network and training activations (median ms); and the
    t-SNE embedding's first computation (what the Inspect page's t-SNE option costs, once per run)."""
    from kmnist_core import insight
    from kmnist_core.drawing import preprocess_canvas
    from kmnist_core.inference import Network
    from kmnist_core.store import RunStore

    from .predict import drawings

    data = ctx.folder()
    store = RunStore(ctx.runs_folder("evidence", estimate=False))
    copy_run(src, store.root)
    net = Network.load(store.weights_path(run_id))
    train = insight.train_activations(store, run_id, data, net)
    images = [img for img in (preprocess_canvas(d) for d in drawings(16, "opaque")) if img is not None]
    insight.evidence(net, images[0], train)  # warm
    evidence, prediction = [], []
    for i in range(ctx.sizes.evidence_calls):
        img = images[i % len(images)]
        t = time.perf_counter()
        net.proba(img)
        prediction.append(time.perf_counter() - t)
        t = time.perf_counter()
        insight.evidence(net, img, train)
        evidence.append(time.perf_counter() - t)
    t = time.perf_counter()
    tsne = insight.embedding(store, run_id, data, "tsne", net=net)
    tsne_s = time.perf_counter() - t
    return ({"evidence_ms": percentiles_ms(evidence)[0], "evidence_p99_ms": percentiles_ms(evidence)[1],
             "evidence_prediction_ms": percentiles_ms(prediction)[0]},
            {"tsne_s": tsne_s, "tsne_points": len(tsne.indices)})


def _stroke(page: Any, rep: int) -> None:
    """One more stroke on the Draw page's canvas, somewhere else each time."""
    canvas = page.locator("canvas.upper-canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    x0, y0 = 60 + 37 * (rep % 5), 50 + 23 * (rep % 7)
    page.mouse.move(box["x"] + x0, box["y"] + y0)
    page.mouse.down()
    page.mouse.move(box["x"] + x0 + 40, box["y"] + y0 + 120, steps=8)
    page.mouse.up()


def _quiet(page: Any, still_s: float = 1.0, timeout_s: float = 60.0) -> None:
    """Until the saliency overlay has not changed for `still_s` and no script runs: the canvas has sent everything."""
    deadline = time.monotonic() + timeout_s
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        src = page.locator(SALIENCY).first.get_attribute("src")
        running = page.locator('[data-testid="stApp"][data-test-script-state="running"]').count()
        if src != last or running:
            last, since = src, time.monotonic()
        elif time.monotonic() - since >= still_s:
            return
        page.wait_for_timeout(100)
    raise RuntimeError(f"the Draw page did not settle within {timeout_s:.0f} s")


def section_insight_views(ctx: Context) -> None:
    """The Train page's default preset trained once; on a server with it: each Inspect view's paint once computed
    (median over rounds of switching through all four), the Data page's paint once cached (from Train via the
    sidebar), draw one stroke -> evidence shown; and insight.evidence and the t-SNE embedding timed in-process."""
    sizes = ctx.sizes
    src, run_id = ctx.reference_run()
    evidence, tsne = _in_process(ctx, src, run_id)
    ctx.record(evidence, f"run {run_id} ({TRAIN_PRESET}), 280x280 drawings",
               {"evidence_ms": "median: top 3, saliency, 5 nearest training images (the forward pass included)"})
    ctx.record(tsne, f"run {run_id} ({TRAIN_PRESET}) on {ctx.describe_folder()}")
    server = ctx.server("insight")
    copy_run(src, server.runs_dir)  # without the Inspect and Draw caches: the views' first computation is here
    first: dict[str, float] = {}
    times: dict[str, list[float]] = {v: [] for v in VIEWS}
    with server, ctx.tabs(1) as [page]:
        first["weights"] = timed(lambda: page.goto(f"{server.url}/inspect?run={run_id}"),
                                 lambda: wait_painted(page, **VIEWS["weights"][1]))
        radio = page.locator(".st-key-inspect_view")
        for view in ("embedding", "calibration", "mistakes"):
            label, painted = VIEWS[view]
            first[view] = timed(lambda label=label: radio.get_by_text(label, exact=True).click(),
                                lambda painted=painted: wait_painted(page, **painted))
        ctx.log("  Inspect, first computation: " + ", ".join(f"{v} {s:.2f} s" for v, s in first.items()))
        for _ in range(sizes.page_repeats):
            for view, (label, painted) in VIEWS.items():
                times[view].append(timed(lambda label=label: radio.get_by_text(label, exact=True).click(),
                                         lambda painted=painted: wait_painted(page, **painted)))
        ctx.log("  Inspect, cached: " + "; ".join(f"{v} {series(s, 2)} s" for v, s in times.items()))

        data_first = timed(lambda: nav(page, "Data"), lambda: wait_painted(page, **DATA_PAINTED))
        data_times = []
        for _ in range(sizes.page_repeats):
            nav(page, "Train")
            wait_painted(page, present=[".st-key-train_submit button"])
            data_times.append(timed(lambda: nav(page, "Data"), lambda: wait_painted(page, **DATA_PAINTED)))
        ctx.log(f"  Data page: first {data_first:.2f} s (explored), cached {series(data_times, 2)} s")

        nav(page, "Draw")
        page.locator("canvas.upper-canvas").wait_for(timeout=60_000)
        draw_first = timed(lambda: _stroke(page, 0), lambda: wait_painted(page, **EVIDENCE_PAINTED))
        shown = []
        for rep in range(1, sizes.page_repeats + 1):
            _quiet(page)
            before = page.locator(SALIENCY).first.get_attribute("src")
            _stroke(page, rep)
            shown.append(timed(lambda: None, lambda before=before: wait_painted(page, changed=(SALIENCY, before),
                                                                                **EVIDENCE_PAINTED)))
        ctx.log(f"  draw -> evidence: first {draw_first:.2f} s (the training activations computed), then one more"
                f" stroke's mouse-up -> shown {series(shown, 2)} s")
    medians = {v: median(s) for v, s in times.items()}
    slowest = max(medians, key=medians.get)
    n = sizes.page_repeats
    ctx.record({"inspect_view_max_s": medians[slowest], **{f"inspect_{v}_s": s for v, s in medians.items()},
                **{f"inspect_{v}_first_s": s for v, s in first.items()},
                "data_page_paint_s": median(data_times), "data_page_first_s": data_first,
                "draw_evidence_shown_s": median(shown)}, f"run {run_id} ({TRAIN_PRESET}) on {ctx.describe_folder()}", {
        "inspect_view_max_s": f"{slowest}; each view: radio click -> its chart/gallery drawn and the run ended,"
                              f" median of {n}; first computations "
                              + ", ".join(f"{v} {s:.2f} s" for v, s in first.items()),
        "data_page_paint_s": f"median of {n}: sidebar Train -> Data, its two tables drawn and images decoded"
                             f" (first visit {data_first:.2f} s)",
        "draw_evidence_shown_s": f"median of {n}: one stroke's mouse-up -> the new saliency overlay, 5 neighbours"
                                 " and the top 3 shown"})
