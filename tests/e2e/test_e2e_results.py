"""Browser scenarios on a trained run: click a confusion-matrix cell, draw a character and classify it."""

import math

import pytest
from e2e_support import click_confusion_cell, draw_strokes, largest_confusion, plotly_traces, stored_metrics, wait_for
from playwright.sync_api import expect

from kmnist_core.data import CLASSES

pytestmark = pytest.mark.e2e

# Ink in an <img> on the page, measured by drawing it at 28x28: how many pixels are bright.
_INK_JS = """
async (img) => {
  await img.decode();
  const c = document.createElement('canvas');
  c.width = c.height = 28;
  const ctx = c.getContext('2d');
  ctx.drawImage(img, 0, 0, 28, 28);
  const d = ctx.getImageData(0, 0, 28, 28).data;
  let ink = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i] > 127) ink++;
  return {ink, width: img.naturalWidth, height: img.naturalHeight};
}
"""


def test_confusion_cell_click_shows_that_cells_images(scenario, server):
    run_id = server.pretrained
    page = scenario.open(server, f"confusion?run={run_id}")
    expect(page.get_by_role("heading", name="Confusion matrix", level=1)).to_be_visible()

    traces = wait_for(lambda: plotly_traces(page, "confusion_chart"), 60, what="confusion chart")
    heatmap = next(t for t in traces if t["type"] == "heatmap")
    counts = heatmap["z"]
    metrics = stored_metrics(server.runs_dir, run_id)
    assert counts == metrics["confusion"], "the heatmap shows the stored matrix"
    assert sum(map(sum, counts)) == sum(metrics["per_class"]["support"])  # every test image, once
    true, pred = largest_confusion(counts)
    n = counts[true][pred]
    assert n > 0, "a 2-epoch model confuses some classes"

    click_confusion_cell(page, true, pred)

    gallery = page.locator(".st-key-confusion_gallery")
    expect(gallery).to_contain_text(
        f"True {CLASSES[true].label}, predicted as {CLASSES[pred].label}: {n} test images", timeout=30_000)
    images = gallery.locator("[data-testid='stImage'] img")
    expect(images).to_have_count(min(n, 36))
    sizes = images.evaluate_all(
        "els => Promise.all(els.map(async e => { const i = new Image(); i.src = e.src; await i.decode();"
        " return [i.naturalWidth, i.naturalHeight]; }))")  # fresh copies: the page's own may load lazily
    assert all(s == [84, 84] for s in sizes), sizes  # 28x28 test images, enlarged 3x
    # The clicked cell is outlined and the class pickers follow the click.
    graph = page.locator(".st-key-confusion_chart .js-plotly-plot")
    outlined = graph.evaluate("gd => (gd.layout.shapes || []).map(s => [s.x0, s.y0])")
    assert outlined == [[pred - 0.5, true - 0.5]]
    expect(page.get_by_text(CLASSES[true].label, exact=True).first).to_be_visible()


def test_draw_shows_preview_and_prediction_and_clear_removes_it(scenario, server):
    page = scenario.open(server, f"draw?run={server.pretrained}")
    expect(page.get_by_role("heading", name="Draw", level=1)).to_be_visible()
    preview = page.locator(".st-key-draw_preview")
    expect(preview).to_contain_text("Draw a character")
    expect(page.locator("canvas.upper-canvas")).to_be_visible()

    draw_strokes(page)

    # The 28x28 model input appears (enlarged 6x), with ink where the strokes were.
    image = preview.locator("img")
    expect(image).to_be_visible(timeout=60_000)
    seen = image.evaluate(_INK_JS)
    assert (seen["width"], seen["height"]) == (168, 168)
    assert 20 < seen["ink"] < 400, seen  # of 784 pixels: three strokes, not blank, not flooded

    # A prediction with ten probabilities summing to 1; the headline is the tallest bar.
    prediction = page.locator(".st-key-prediction")
    expect(prediction).to_be_visible(timeout=60_000)
    bars = wait_for(lambda: plotly_traces(page, "draw_proba"), 30, what="probability chart")[0]
    assert bars["x"] == [c.label for c in CLASSES]
    assert len(bars["y"]) == 10 and all(0 <= p <= 1 for p in bars["y"])
    assert math.isclose(sum(bars["y"]), 1.0, abs_tol=1e-3)
    top = max(range(10), key=lambda i: bars["y"][i])
    expect(prediction).to_contain_text(f"{CLASSES[top].romaji} · {bars['y'][top]:.1%}")
    scenario.snap(page, "prediction")

    # Clearing the canvas (its toolbar's bin) takes the prediction away.
    page.get_by_role("button", name="Reset canvas & history").click()
    expect(prediction).to_have_count(0, timeout=30_000)
    expect(page.locator(".st-key-draw_proba")).to_have_count(0)
    expect(preview).to_contain_text("Draw a character")
    expect(preview.locator("img")).to_have_count(0)
