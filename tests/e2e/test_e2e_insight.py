"""Browser scenarios of looking inside: click a point of the embedding map, the Data page, a drawing's evidence."""

import re

import numpy as np
import pytest
from e2e_support import draw_strokes, plotly_traces, read_dataframe, settle, wait_for
from playwright.sync_api import expect

from kmnist_core.data import CLASSES

pytestmark = pytest.mark.e2e

# Where plotly draws each point of the embedding map's class traces, in viewport pixels: [x, y, test index].
_POINTS_JS = """
(gd) => {
  const fl = gd._fullLayout, r = gd.getBoundingClientRect(), out = [];
  gd.data.slice(0, 10).forEach(t => t.x.forEach((x, i) => out.push([r.left + fl.xaxis._offset + fl.xaxis.l2p(x),
    r.top + fl.yaxis._offset + fl.yaxis.l2p(t.y[i]), t.customdata[i][0]])));
  return {points: out, top: r.top + fl.yaxis._offset, left: r.left + fl.xaxis._offset};
}
"""

# An <img>'s own pixels, drawn at its natural size: its size, and how many pixels are coloured (r, g, b differ).
_PIXELS_JS = """
async (img) => {
  await img.decode();
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const ctx = c.getContext('2d');
  ctx.drawImage(img, 0, 0);
  const d = ctx.getImageData(0, 0, c.width, c.height).data;
  let coloured = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (Math.max(d[i], d[i + 1], d[i + 2]) - Math.min(d[i], d[i + 1], d[i + 2]) > 40) coloured++;
  }
  return {width: img.naturalWidth, height: img.naturalHeight, coloured};
}
"""


def _isolated_point(points, top, viewport_height):
    """The point farthest from any other, below the chart's top strip (where the mode bar floats), on screen."""
    xy = np.array([p[:2] for p in points], dtype=float)
    gaps = np.sqrt(((xy[:, None, :] - xy[None, :, :]) ** 2).sum(axis=2))
    np.fill_diagonal(gaps, np.inf)
    nearest = gaps.min(axis=1)
    nearest[(xy[:, 1] < top + 40) | (xy[:, 1] > viewport_height - 10)] = -1
    return points[int(np.argmax(nearest))], float(nearest.max())


def test_clicking_a_point_of_the_embedding_map_shows_its_image(scenario, server):
    page = scenario.open(server, f"inspect?run={server.pretrained}")
    expect(page.get_by_role("heading", name="Inspect", level=1)).to_be_visible()
    page.get_by_text("Embedding map", exact=True).click()
    traces = wait_for(lambda: plotly_traces(page, "inspect_embedding"), 60, what="embedding map")
    assert [t["name"] for t in traces[:10]] == [c.label for c in CLASSES]
    assert sum(len(t["x"]) for t in traces[:10]) == 2000  # every test image of the subset, once
    graph = page.locator(".st-key-inspect_embedding .js-plotly-plot")
    graph.scroll_into_view_if_needed()
    settle(page)
    placed = graph.evaluate(_POINTS_JS)
    (x, y, index), gap = _isolated_point(placed["points"], placed["top"], page.viewport_size["height"])
    assert gap > 4, "some point stands apart by more than its marker's radius"

    page.mouse.click(x, y)

    detail = page.locator(".st-key-inspect_point_detail")
    expect(detail).to_contain_text(f"Test image #{index}", timeout=30_000)
    expect(detail).to_contain_text(re.compile(r"Predicted \S+ \(\w+\) \((correct|wrong)\), p = 0\.\d{3}"))
    image = detail.locator("[data-testid='stImage'] img").first
    expect(image).to_be_visible()
    assert image.evaluate(_PIXELS_JS)["width"] == 168  # the 28x28 test image, enlarged 6x
    bars = wait_for(lambda: plotly_traces(page, "inspect_point_proba"), 30, what="its probabilities")[0]
    assert abs(sum(bars["y"]) - 1) < 1e-3
    star = next(t for t in plotly_traces(page, "inspect_embedding") if t["name"] == "selected")
    assert [c[0] for c in star["customdata"]] == [index]  # the clicked point is marked on the map


def test_the_data_page_counts_add_up_to_the_split_sizes(scenario, server):
    page = scenario.open(server, "data")
    expect(page.get_by_role("heading", name="Data", level=1)).to_be_visible()
    sidebar = page.locator("[data-testid='stSidebar']")
    expect(sidebar).to_contain_text("8,000 train / 2,000 test")
    rows = wait_for(lambda: read_dataframe(page, "index"), 60, what="the class table")
    assert [r["hiragana"] for r in rows] == [c.hiragana for c in CLASSES]
    number = lambda text: int(text.replace(",", ""))  # noqa: E731
    assert sum(number(r["train"]) + number(r["validation"]) for r in rows) == 8000
    assert sum(number(r["test"]) for r in rows) == 2000
    assert all(number(r["total"]) == number(r["train"]) + number(r["validation"]) + number(r["test"]) for r in rows)
    expect(page.locator(".st-key-data_samples [data-testid='stImage'] img")).to_have_count(10)  # a row per class


def test_a_drawing_shows_the_saliency_overlay_and_five_neighbours(scenario, server):
    page = scenario.open(server, f"draw?run={server.pretrained}")
    expect(page.get_by_role("heading", name="Draw", level=1)).to_be_visible()
    expect(page.locator("canvas.upper-canvas")).to_be_visible()

    draw_strokes(page)

    overlay = page.locator(".st-key-draw_saliency [data-testid='stImage'] img")
    expect(overlay).to_be_visible(timeout=60_000)
    seen = overlay.evaluate(_PIXELS_JS)
    assert (seen["width"], seen["height"]) == (168, 168)  # the 28x28 input, enlarged 6x
    assert seen["coloured"] > 36 * 10, seen  # red and blue over the strokes: at least ten input pixels' worth
    neighbours = page.locator(".st-key-draw_neighbours")
    expect(neighbours.locator("img")).to_have_count(5)
    captions = neighbours.locator("[data-testid='stImageCaption']").all_inner_texts()
    assert len(captions) == 5 and all(re.fullmatch(r"\S+ \(\w+\) · d=\d+\.\d\d", c) for c in captions), captions
    distances = [float(c.rsplit("=", 1)[1]) for c in captions]
    assert distances == sorted(distances)  # nearest first
    top3 = page.locator(".st-key-draw_top3")
    expect(top3.locator("li")).to_have_count(3)
    shares = [float(re.search(r"· (\d+\.\d)%", t).group(1)) for t in top3.locator("li").all_inner_texts()]
    assert shares == sorted(shares, reverse=True) and sum(shares) <= 100.05, shares
    scenario.snap(page, "evidence")
