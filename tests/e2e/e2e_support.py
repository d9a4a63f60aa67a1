"""Browser-test support: a real `streamlit run` server, Chromium, and readers of what a page shows."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SUBSET = ROOT.parent / "shared" / "data" / "kmnist-subset"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
PORTS = range(8700, 8800)  # this suite's servers, recognisable among other Streamlit processes
VIEWPORT = {"width": 1200, "height": 800}
RUN_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]+")
QUIET_TF = {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"}


def data_dir() -> Path:
    """$KMNIST_DATA_DIR as an absolute path, default the 8,000/2,000 KMNIST subset."""
    return Path(os.environ.get("KMNIST_DATA_DIR") or SUBSET).resolve()


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.25, what: str = "condition") -> Any:
    """Poll predicate() until it returns something truthy; AssertionError after `timeout` seconds.

    Returns:
        The first truthy value.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout:g} s")
        time.sleep(interval)


def free_port() -> int:
    """A loopback port in PORTS that nothing listens on right now."""
    for port in PORTS:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORTS.start}-{PORTS.stop - 1}")


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


class StreamlitServer:
    """`streamlit run dashboard.py` on a free loopback port, with its own data and runs folders.

    The server runs in its own process group, so stop() and kill() reach it and anything it spawned.
    """

    def __init__(self, runs_dir: Path, log_path: Path, data: Path | None = None):
        self.runs_dir = Path(runs_dir)
        self.log_path = Path(log_path)
        self.data = data or data_dir()
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0  # time.monotonic() at spawn
        self.healthy_after = 0.0  # seconds from spawn to /_stcore/health answering 200

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90) -> StreamlitServer:
        """Spawn the server and wait until /_stcore/health answers.

        Raises:
            RuntimeError: the server exited or did not answer within `timeout` seconds.
        """
        self.port = free_port()
        env = {**os.environ, **QUIET_TF, "KMNIST_DATA_DIR": str(self.data), "KMNIST_RUNS_DIR": str(self.runs_dir)}
        cmd = [sys.executable, "-m", "streamlit", "run", "dashboard.py", "--server.port", str(self.port),
               "--server.address", "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none",
               "--browser.gatherUsageStats", "false"]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"$ {' '.join(cmd)}  (KMNIST_RUNS_DIR={self.runs_dir})\n".encode())
            log.flush()
            self.started_at = time.monotonic()
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = self.started_at + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        self.healthy_after = time.monotonic() - self.started_at
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"streamlit did not answer /_stcore/health within {timeout} s:\n{self.log_tail()}")

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM the server's process group, SIGKILL it if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill_server_only(self) -> list[int]:
        """SIGKILL the server process alone, as a crash or the OOM killer would; returns the pids it had spawned.

        Its training workers are left to notice on their own (a killed parent runs no cleanup).
        """
        import psutil

        children = [c.pid for c in psutil.Process(self.proc.pid).children(recursive=True)]
        self.proc.kill()
        self.proc.wait(15)
        return children

    def kill(self) -> None:
        """SIGKILL the server and every process in its group, as a crash or the OOM killer would."""
        if self.proc is None:
            return
        self._signal(signal.SIGKILL)
        self.proc.wait(15)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def launch_chromium(playwright):
    """Debian's Chromium through Playwright; fails with a clear message when it is not installed."""
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} not found: the browser tests need Debian's Chromium. Install it with "
                           "`make browser` (apt-get update && apt-get install -y chromium).")
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


# --- reading what a page shows ---

# Plotly figures carry numpy arrays as {dtype, bdata (base64), shape}; decode them to plain arrays.
_PLOTLY_TRACES_JS = """
(gd) => {
  const types = {i1: Int8Array, u1: Uint8Array, i2: Int16Array, u2: Uint16Array, i4: Int32Array,
                 u4: Uint32Array, f4: Float32Array, f8: Float64Array};
  const decode = (v) => {
    if (v && typeof v === 'object' && typeof v.bdata === 'string' && types[v.dtype]) {
      const bytes = Uint8Array.from(atob(v.bdata), c => c.charCodeAt(0));
      const flat = Array.from(new types[v.dtype](bytes.buffer));
      const shape = typeof v.shape === 'string' ? v.shape.split(',').map(Number) : v.shape;
      if (shape && shape.length === 2) {
        const [rows, cols] = shape;
        return Array.from({length: rows}, (_, r) => flat.slice(r * cols, (r + 1) * cols));
      }
      return flat;
    }
    if (ArrayBuffer.isView(v)) return Array.from(v);
    if (Array.isArray(v)) return v.map(decode);
    return v;
  };
  return (gd.data || []).map(t => ({
    type: t.type, name: t.name, x: decode(t.x), y: decode(t.y), z: decode(t.z),
    customdata: decode(t.customdata),
  }));
}
"""


def plotly_traces(page, key: str) -> list[dict[str, Any]]:
    """The traces of the plotly chart with this Streamlit key, read from the graph div's `data`.

    Returns:
        [{type, name, x, y, z, customdata}], or [] while the chart is not on the page.
    """
    graph = page.locator(f".st-key-{key} [data-testid='stPlotlyChart'] .js-plotly-plot")
    if graph.count() == 0:
        return []
    try:
        return graph.first.evaluate(_PLOTLY_TRACES_JS)
    except Exception:  # noqa: BLE001 - the chart was replaced by a rerun while we read it; read again later
        return []


def count_points(traces: list[dict[str, Any]], name_part: str) -> int:
    """Data points of the traces whose name contains name_part (e.g. 'loss')."""
    return sum(len(t.get("x") or []) for t in traces if name_part in (t.get("name") or ""))


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


def text_of(page, selector: str) -> str:
    """inner_text of the first element matching selector, or '' when there is none."""
    loc = page.locator(selector)
    try:
        return loc.first.inner_text(timeout=2000) if loc.count() else ""
    except Exception:  # noqa: BLE001 - replaced by a rerun while reading
        return ""


def go_to(page, title: str) -> None:
    """Switch page through the sidebar navigation, inside the same Streamlit session."""
    page.locator("[data-testid='stSidebarNav']").get_by_role("link", name=title, exact=True).click()
    page.get_by_role("heading", name=title, level=1).wait_for()


def settle(page, timeout: float = 20) -> None:
    """Wait (bounded) until Streamlit is not running a script for this page."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not page.locator("[data-testid='stStatusWidget']").is_visible():
            return
        page.wait_for_timeout(100)


def enter_number(page, label: str, value: int | float) -> None:
    """Type a value into a number/text input and commit it (Enter), as a user does."""
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Enter")
    settle(page)
    page.wait_for_function(
        "([el, v]) => el.value === v", arg=[box.element_handle(), str(value)], timeout=15000)


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


def submit_training(page) -> str:
    """Press Train; returns the run id the job panel shows."""
    page.get_by_role("button", name="Train", exact=True).click()
    heading = page.locator(".st-key-train_job").get_by_role("heading", name=RUN_ID)
    heading.wait_for(timeout=30000)
    return RUN_ID.search(heading.inner_text()).group(0)


def job_text(page) -> str:
    """The text of this session's job panel on the Train page."""
    return text_of(page, ".st-key-train_job")


def stored_metrics(runs_dir: Path, run_id: str) -> dict[str, Any]:
    """metrics.json of a stored run, straight from disk."""
    return json.loads((Path(runs_dir) / run_id / "metrics.json").read_text())


def process_gone(pid: int) -> bool:
    """True once a process has exited (a zombie waiting for its reaper counts as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


def stored_status(runs_dir: Path, run_id: str) -> str:
    """The status a run's status.json records on disk, without RunStore's is-its-owner-alive check."""
    return json.loads((Path(runs_dir) / run_id / "status.json").read_text())["status"]


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
        page.wait_for_timeout(300)
        page.screenshot(path=str(path), full_page=True)
    finally:
        page.set_viewport_size(size)


# --- acting on a page as a user does ---

# Three strokes in canvas pixels (the canvas is 280x280): something like つ with a bar.
STROKES = (
    ((80, 60), (90, 140), (100, 220)),
    ((60, 120), (140, 110), (220, 100)),
    ((180, 60), (200, 160), (170, 230)),
)

_CELL_CENTRE_JS = """
(gd, [t, p]) => {
  const fl = gd._fullLayout, r = gd.getBoundingClientRect();
  return {x: r.left + fl._size.l + fl.xaxis.l2p(p), y: r.top + fl._size.t + fl.yaxis.l2p(t)};
}
"""


def draw_strokes(page, strokes=STROKES) -> None:
    """Draw with the mouse on the canvas component (it sits in a shadow root; CSS locators pierce it)."""
    canvas = page.locator("canvas.upper-canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    for stroke in strokes:
        (x, y), rest = stroke[0], stroke[1:]
        page.mouse.move(box["x"] + x, box["y"] + y)
        page.mouse.down()
        for x, y in rest:
            page.mouse.move(box["x"] + x, box["y"] + y, steps=8)
        page.mouse.up()


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
