"""Browser-test support: what only the tests read and do on a page; the server and Chromium are benchmarks.harness."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

# The server-and-browser helper the benchmark shares; the tests import these names from here.
from benchmarks.harness import QUIET_TF, ROOT, data_dir, enter_number, settle
from benchmarks.harness import RUN_ID as RUN_ID
from benchmarks.harness import VIEWPORT as VIEWPORT
from benchmarks.harness import StreamlitServer as StreamlitServer
from benchmarks.harness import count_points as count_points
from benchmarks.harness import draw_strokes as draw_strokes
from benchmarks.harness import go_to as go_to
from benchmarks.harness import job_text as job_text
from benchmarks.harness import launch_chromium as launch_chromium
from benchmarks.harness import plotly_traces as plotly_traces
from benchmarks.harness import process_gone as process_gone
from benchmarks.harness import submit_training as submit_training
from benchmarks.harness import wait_for as wait_for

ARTIFACTS = ROOT / "test-artifacts"
# A job panel's progress line while its run trains, e.g. 'epoch 9/40' (kmnist_core.views.progress_text).
RUNNING = re.compile(r"epoch (\d+)/\d+")


def shown_epoch(text: str) -> int:
    """The epoch a job panel's progress line shows, else 0."""
    match = RUNNING.search(text)
    return int(match.group(1)) if match else 0


def train_cli(runs_dir: Path, *args: str) -> subprocess.Popen:
    """Start `python -m kmnist_core train ...` into runs_dir (the CLI twin of the Train button)."""
    cmd = [sys.executable, "-m", "kmnist_core", "--data-dir", str(data_dir()), "--runs-dir", str(runs_dir),
           "train", *args]
    return subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **QUIET_TF}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish_cli(proc: subprocess.Popen, timeout: float = 300) -> str:
    """Wait for a train_cli process; returns the id of the run it stored.

    Raises:
        AssertionError: the CLI failed or printed no run id.
    """
    out, _ = proc.communicate(timeout=timeout)
    match = re.search(r"run (\S+): completed", out)
    assert proc.returncode == 0 and match, f"CLI training failed ({proc.returncode}):\n{out}"
    return match.group(1)


# --- reading what a page shows ---

# Collect the cells of the grid whose first column is named `first`: the grid draws on a canvas and
# keeps an accessible table of the visible cells only, so scroll it sideways and gather every column.
_GRID_JS = """
async ([first]) => {
  const grids = [...document.querySelectorAll('[data-testid="stDataFrame"]')];
  const firstHead = g => g.querySelector('[role=columnheader][aria-colindex="1"]');
  const grid = grids.find(g => firstHead(g) && firstHead(g).innerText.trim() === first);
  if (!grid) return null;
  const scroller = grid.querySelector('.dvn-scroller');
  const heads = {}, rows = {};
  const collect = () => {
    grid.querySelectorAll('[role=columnheader]').forEach(
      h => heads[h.getAttribute('aria-colindex')] = h.innerText.trim());
    grid.querySelectorAll('[role=row]').forEach(r => r.querySelectorAll('[role=gridcell]').forEach(c => {
      const ri = r.getAttribute('aria-rowindex');
      (rows[ri] = rows[ri] || {})[c.getAttribute('aria-colindex')] = c.innerText.trim();
    }));
  };
  const pause = () => new Promise(ok => setTimeout(ok, 50));
  const cells = () => [...grid.querySelectorAll('[role=columnheader], [role=gridcell]')]
    .map(c => c.id || c.getAttribute('aria-colindex')).join();
  const scrollTo = async (left, top) => {
    const before = cells(), at = [scroller.scrollLeft, scroller.scrollTop];
    scroller.scrollLeft = left;
    scroller.scrollTop = top;
    if (scroller.scrollLeft === at[0] && scroller.scrollTop === at[1]) return;
    scroller.dispatchEvent(new Event('scroll'));
    for (let i = 0; i < 30 && cells() === before; i++) await pause();  // the grid redraws on its next frames
  };
  const steps = (view, total) => {
    const out = [0];
    while (out[out.length - 1] + view < total) out.push(out[out.length - 1] + Math.max(50, Math.floor(view / 2)));
    return out;
  };
  collect();
  if (scroller) {
    for (const top of steps(scroller.clientHeight, scroller.scrollHeight)) {
      for (const left of steps(scroller.clientWidth, scroller.scrollWidth)) {
        await scrollTo(left, top);
        collect();
      }
    }
    await scrollTo(0, 0);
  }
  return Object.keys(rows).sort((a, b) => a - b).map(ri =>
    Object.fromEntries(Object.entries(rows[ri]).map(([ci, text]) => [heads[ci] || ci, text])));
}
"""


def read_dataframe(page, first_column: str = "run") -> list[dict[str, str]]:
    """Rows of the st.dataframe whose first column is `first_column`, as displayed (header -> cell text).

    Returns:
        One dict per row, or [] while no such table is on the page.
    """
    try:
        return page.evaluate(_GRID_JS, [first_column]) or []
    except Exception:  # noqa: BLE001 - replaced by a rerun while we read it; read again later
        return []


def run_row(page, run_id: str) -> dict[str, str] | None:
    """The Compare table's displayed row of this run, or None."""
    return next((r for r in read_dataframe(page) if r.get("run") == run_id), None)


def stored_metrics(runs_dir: Path, run_id: str) -> dict[str, Any]:
    """metrics.json of a stored run, straight from disk."""
    return json.loads((Path(runs_dir) / run_id / "metrics.json").read_text())


def stored_status(runs_dir: Path, run_id: str) -> str:
    """The status a run's status.json records on disk, without RunStore's is-its-owner-alive check."""
    return json.loads((Path(runs_dir) / run_id / "status.json").read_text())["status"]


def next_frames(page) -> None:
    """Until the browser has drawn two more animation frames: what the page was just given is on screen."""
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")


def screenshot(page, path: Path) -> None:
    """A full-page PNG: Streamlit scrolls inside its main block, so the viewport is grown to fit it."""
    size = page.viewport_size or VIEWPORT
    height = page.evaluate("""() => Math.max(...[
        document.querySelector('[data-testid="stMain"]'),
        document.querySelector('[data-testid="stSidebarContent"]'),
        document.scrollingElement].filter(Boolean).map(e => e.scrollHeight))""")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        page.set_viewport_size({"width": size["width"], "height": min(max(height, size["height"]), 6000)})
        next_frames(page)  # the page has been laid out again at the new size
        page.screenshot(path=str(path), full_page=True)
    finally:
        page.set_viewport_size(size)


# --- acting on a page as a user does ---

def configure_training(page, layers: str, epochs: int, batch_size: int) -> None:
    """On the Train page: start from the default preset, type the layers, set epochs and batch size.

    The other fields keep the default preset's values (relu, adam, weight decay 0.0005).
    """
    page.get_by_role("heading", name="Train", level=1).wait_for()
    toggle = page.get_by_label("Type the layers as text", exact=True)
    if not toggle.is_checked():
        page.get_by_text("Type the layers as text").click()
        settle(page)
    layers_box = page.get_by_label("Hidden layers (units, comma-separated)", exact=True)
    layers_box.wait_for()
    layers_box.fill(layers)
    layers_box.press("Enter")
    settle(page)
    describe = f"[{layers}] relu adam wd=0.0005"
    page.get_by_text(describe, exact=False).first.wait_for()
    advanced = page.get_by_text("Advanced", exact=True)
    if not page.get_by_label("Epochs", exact=True).is_visible():
        advanced.click()
    enter_number(page, "Epochs", epochs)
    enter_number(page, "Batch size", batch_size)


_CELL_CENTRE_JS = """
(gd, [t, p]) => {
  const fl = gd._fullLayout, r = gd.getBoundingClientRect();
  return {x: r.left + fl._size.l + fl.xaxis.l2p(p), y: r.top + fl._size.t + fl.yaxis.l2p(t)};
}
"""


def largest_confusion(counts: list[list[int]]) -> tuple[int, int]:
    """(true, predicted) of the off-diagonal confusion cell with the most images."""
    n = len(counts)
    return max(((t, p) for t in range(n) for p in range(n) if t != p), key=lambda c: counts[c[0]][c[1]])


def click_confusion_cell(page, true: int, pred: int) -> None:
    """Click the confusion-matrix heatmap cell (true, pred), where plotly draws it."""
    graph = page.locator(".st-key-confusion_chart .js-plotly-plot")
    graph.scroll_into_view_if_needed()
    centre = graph.evaluate(_CELL_CENTRE_JS, [true, pred])
    page.mouse.click(centre["x"], centre["y"])
