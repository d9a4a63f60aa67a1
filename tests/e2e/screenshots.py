"""`make screenshots`: regenerate docs/screenshots/*.png from a real server with real runs."""

from __future__ import annotations

import argparse
import io
import re
import sys
import tempfile
import time
from pathlib import Path

from e2e_support import (
    ROOT,
    VIEWPORT,
    StreamlitServer,
    click_confusion_cell,
    configure_training,
    draw_strokes,
    finish_cli,
    job_text,
    largest_confusion,
    launch_chromium,
    plotly_traces,
    submit_training,
    train_cli,
    wait_for,
)
from playwright.sync_api import sync_playwright

MAX_BYTES = 300_000  # larger PNGs are palette-quantised
# Runs the Compare page overlays: the reference study's configurations at their 10 epochs.
STORED = (("--preset", "ref-relu-adam"), ("--preset", "ref-relu-sgd"), ("--preset", "ref-sigmoid-rmsprop"))
LIVE = ("256, 128", 40, 64)  # trained in the browser: layers, epochs, batch size (~30-60 s here)


def save_png(page, path: Path, top_of: str | None = None, height: int = VIEWPORT["height"]) -> int:
    """A viewport screenshot (the page scrolled so `top_of` is at the top), quantised when large.

    Returns:
        The file's size in bytes.
    """
    page.set_viewport_size({"width": VIEWPORT["width"], "height": height})
    if top_of:
        page.locator(top_of).first.evaluate("el => el.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(800)  # let plotly finish redrawing after the scroll
    png = page.screenshot()
    if len(png) > MAX_BYTES:
        from PIL import Image

        buf = io.BytesIO()
        Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(
            buf, format="PNG", optimize=True)
        png = buf.getvalue()
    path.write_bytes(png)
    return len(png)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots", help="folder for the PNGs")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    sizes = {}
    with tempfile.TemporaryDirectory(prefix="kmnist-screenshots-") as tmp:
        runs = Path(tmp) / "runs"
        for preset in STORED:  # one at a time: the machine has two cores
            finish_cli(train_cli(runs, *preset), timeout=600)
        server = StreamlitServer(runs, Path(tmp) / "server.log").start()
        try:
            with sync_playwright() as pw:
                browser = launch_chromium(pw)
                page = browser.new_context(viewport=VIEWPORT).new_page()
                page.set_default_timeout(60_000)

                # Train: a run in the browser, caught mid-way with its live curves.
                page.goto(server.url)
                layers, epochs, batch = LIVE
                configure_training(page, layers, epochs=epochs, batch_size=batch)
                run_id = submit_training(page)
                wait_for(lambda: re.search(rf"epoch ([89]|\d\d)/{epochs}", job_text(page)), 300,
                         what="the run a quarter of the way")
                sizes["train"] = save_png(page, args.out / "train.png", top_of=".st-key-train_job")
                wait_for(lambda: "completed in" in job_text(page), 600, what="the run completing")

                # Compare: the stored runs and the browser's run, overlaid.
                page.goto(f"{server.url}/compare")
                page.get_by_role("heading", name="Compare", level=1).wait_for()
                wait_for(lambda: plotly_traces(page, "compare_curves"), 60, what="the overlay chart")
                sizes["compare"] = save_png(page, args.out / "compare.png", top_of="[data-testid='stDataFrame']",
                                            height=960)

                # Confusion matrix of the browser's run, its most confused cell selected.
                page.goto(f"{server.url}/confusion?run={run_id}")
                traces = wait_for(lambda: plotly_traces(page, "confusion_chart"), 60, what="the confusion chart")
                true, pred = largest_confusion(next(t for t in traces if t["type"] == "heatmap")["z"])
                click_confusion_cell(page, true, pred)
                page.locator(".st-key-confusion_gallery [data-testid='stImage']").first.wait_for()
                sizes["confusion"] = save_png(page, args.out / "confusion.png",
                                              top_of=".st-key-confusion_chart", height=960)

                # Draw: a character drawn with the mouse and the model's reading of it.
                page.set_viewport_size(VIEWPORT)
                page.goto(f"{server.url}/draw?run={run_id}")
                page.locator("canvas.upper-canvas").wait_for()
                draw_strokes(page)
                page.locator(".st-key-prediction").wait_for()
                wait_for(lambda: plotly_traces(page, "draw_proba"), 60, what="the probability chart")
                page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollTo(0, 0)")
                sizes["draw"] = save_png(page, args.out / "draw.png")
                browser.close()
        finally:
            server.stop()
    for name, size in sizes.items():
        print(f"{args.out / name}.png  {size / 1000:.0f} KB")
    return 0


if __name__ == "__main__":
    started = time.monotonic()
    code = main()
    print(f"done in {time.monotonic() - started:.0f} s", file=sys.stderr)
    sys.exit(code)
