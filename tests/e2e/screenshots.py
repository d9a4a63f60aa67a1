"""`make screenshots`: regenerate docs/screenshots/*.png from a real server with real runs."""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo: benchmarks.harness, kmnist_core

from e2e_support import (  # noqa: E402 - after the repo is on the path
    ROOT,
    VIEWPORT,
    StreamlitServer,
    click_confusion_cell,
    configure_training,
    count_points,
    draw_strokes,
    enter_number,
    finish_cli,
    job_text,
    largest_confusion,
    launch_chromium,
    next_frames,
    plotly_traces,
    read_dataframe,
    settle,
    shown_epoch,
    submit_training,
    train_cli,
    wait_for,
)
from playwright.sync_api import sync_playwright

MAX_BYTES = 300_000  # larger PNGs are palette-quantised
# Runs the Compare page overlays: the reference study's configurations at their 10 epochs.
STORED = (("--preset", "ref-relu-adam"), ("--preset", "ref-relu-sgd"), ("--preset", "ref-sigmoid-rmsprop"))
LIVE = ("256, 128", 40, 64)  # trained in the browser: layers, epochs, batch size (~30-60 s here)
SWEEP = ('epochs = 2\nbatch_size = 256\nhidden_layers = [[32], [64], [128], [64, 32]]\n'
         'optimizer = ["adam", "rmsprop", "sgd"]\n')  # the Sweep page's screenshot: 8 quick trials


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


def save_apng(frames: list[bytes], path: Path, ms: int = 700) -> int:
    """The frames (PNG bytes of the same element) as one animated PNG that loops; returns its size in bytes."""
    from PIL import Image

    images = [Image.open(io.BytesIO(f)).convert("RGB") for f in frames]
    size = images[0].size
    images = [im.resize(size) if im.size != size else im for im in images]
    palette = [im.quantize(colors=96, method=Image.Quantize.MEDIANCUT) for im in images]
    palette[0].save(path, save_all=True, append_images=palette[1:], duration=ms, loop=0, optimize=True)
    return path.stat().st_size


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
                frames = []  # the live curves growing: frames of an animated PNG
                page.locator(".st-key-train_job").first.evaluate("el => el.scrollIntoView({block: 'start'})")
                for epoch in (2, 5, 9, 14, 20, 27, 34):
                    wait_for(lambda e=epoch: shown_epoch(job_text(page)) >= e
                             and count_points(plotly_traces(page, "train_curves"), "loss") >= e, 300,
                             what=f"epoch {epoch} on the chart")
                    next_frames(page)  # the chart has been drawn with it
                    frames.append(page.locator(".st-key-train_job").first.screenshot())
                    if epoch == 9:
                        sizes["train"] = save_png(page, args.out / "train.png", top_of=".st-key-train_job")
                        page.locator(".st-key-train_job").first.evaluate("el => el.scrollIntoView({block: 'start'})")
                wait_for(lambda: "completed in" in job_text(page), 600, what="the run completing")
                frames.append(page.locator(".st-key-train_job").first.screenshot())
                sizes["live"] = save_apng(frames, args.out / "live.png")

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
                sizes["draw"] = save_png(page, args.out / "draw.png", height=1400)

                # Inspect: the embedding map of the browser's run.
                page.set_viewport_size(VIEWPORT)
                page.goto(f"{server.url}/inspect?run={run_id}")
                page.get_by_role("heading", name="Inspect", level=1).wait_for()
                page.get_by_text("Embedding map", exact=True).click()
                wait_for(lambda: plotly_traces(page, "inspect_embedding"), 120, what="the embedding map")
                sizes["inspect"] = save_png(page, args.out / "inspect.png", top_of=".st-key-inspect_embedding",
                                            height=900)

                # Data: the class table, samples and mean images. Reached from the sidebar, as a user does: on a
                # fresh page load Chromium can draw the first hiragana as a missing-glyph box while the served
                # font is still loading (README, Known issues).
                page.locator("[data-testid='stSidebarNav']").get_by_role("link", name="Data", exact=True).click()
                page.get_by_role("heading", name="Data", level=1).wait_for()
                page.locator(".st-key-data_samples [data-testid='stImage']").first.wait_for()
                settle(page)
                sizes["data"] = save_png(page, args.out / "data.png", height=1300)

                # Sweep: a small sweep of one-epoch trials, its table and charts filled.
                page.goto(f"{server.url}/sweep")
                page.get_by_role("heading", name="Sweep", level=1).wait_for()
                page.get_by_label("…or paste a space file (TOML or JSON); it replaces the widgets above").fill(SWEEP)
                settle(page)
                enter_number(page, "How many trials", 8)
                page.get_by_role("button", name="Start sweep").click()
                wait_for(lambda: len([r for r in read_dataframe(page, "trial") if r.get("status", "").startswith(
                    ("completed", "pruned"))]) >= 8, 900, what="the sweep's trials")
                settle(page)
                sizes["sweep"] = save_png(page, args.out / "sweep.png", top_of=".st-key-sweep_trials", height=1300)
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
