"""The one server-and-browser helper of the benchmark and the browser tests: `streamlit run`, Chromium, page actions."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
# The offline data beside the repo (../shared/data): the one place Python names it; the Makefile has its own.
SHARED_DATA = ROOT.parent / "shared" / "data"
SUBSET = SHARED_DATA / "kmnist-subset"  # the official test split re-split 8,000 / 2,000
OFFICIAL = SHARED_DATA / "kmnist"  # md5-verified official files: the test split and the train labels
CHROMIUM = "/usr/bin/chromium"
# Debian's Chromium headless in a container: no sandbox, no GPU, nothing that phones home.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
PORTS = range(8700, 8800)  # the browser tests' servers, recognisable among other Streamlit processes
VIEWPORT = {"width": 1200, "height": 800}
RUN_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]+")
QUIET_TF = {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"}
WORKER_MARK = "spawn_main"  # in the command line of a multiprocessing spawn child (not the resource tracker's)


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


def free_port(ports: range = PORTS) -> int:
    """A loopback port in `ports` that nothing listens on right now.

    Raises:
        RuntimeError: every port of the range is taken.
    """
    for port in ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1}")


def process_gone(pid: int) -> bool:
    """True once a process has exited (a zombie waiting for its reaper counts as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


def peak_rss_mib(pid: int) -> float:
    """VmHWM of one process: its peak resident memory so far, in MiB.

    Raises:
        FileNotFoundError: the process is gone.
        RuntimeError: its /proc status has no VmHWM line.
    """
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


class StreamlitServer:
    """`streamlit run dashboard.py` on a free loopback port, with its own data and runs folders.

    The server runs in its own process group, so stop() and kill() reach it and anything it spawned.

    Args:
        runs_dir: its KMNIST_RUNS_DIR.
        log_path: its stdout and stderr are appended here.
        data: its KMNIST_DATA_DIR; default data_dir().
        script: the page to run, relative to the repository root or absolute (a minimal page, for a floor).
        options: more `streamlit run` options, e.g. ("--runner.postScriptGC", "true").
        ports: where to look for a free port.
        env: more environment variables, e.g. {"KMNIST_SCHEDULER": "tcp://127.0.0.1:8786"}.
    """

    def __init__(self, runs_dir: Path, log_path: Path, data: Path | None = None, script: str | Path = "dashboard.py",
                 options: Sequence[str] = (), ports: range = PORTS, env: dict[str, str] | None = None):
        self.runs_dir = Path(runs_dir)
        self.env = dict(env or {})
        self.log_path = Path(log_path)
        self.data = data or data_dir()
        self.script, self.options, self.ports = str(script), tuple(options), ports
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
        self.port = free_port(self.ports)
        env = {**os.environ, **QUIET_TF, "KMNIST_DATA_DIR": str(self.data), "KMNIST_RUNS_DIR": str(self.runs_dir),
               **self.env}
        cmd = [sys.executable, "-m", "streamlit", "run", self.script, "--server.port", str(self.port),
               "--server.address", "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none",
               "--browser.gatherUsageStats", "false", *self.options]
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
            time.sleep(0.02)  # fine-grained: the cold-start figure starts counting at spawn
        self.stop()
        raise RuntimeError(f"streamlit did not answer /_stcore/health within {timeout} s:\n{self.log_tail()}")

    def __enter__(self) -> StreamlitServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

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

    def peak_rss_mib(self) -> float:
        """VmHWM of the server process alone (not its workers), in MiB."""
        return peak_rss_mib(self.proc.pid)

    def worker_pids(self) -> list[int]:
        """The processes the server spawned with multiprocessing (its training workers), alive now."""
        pids = []
        for child in psutil.Process(self.proc.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if any(WORKER_MARK in part for part in child.cmdline()):
                    pids.append(child.pid)
        return pids

    def worker_peak_rss_mib(self) -> dict[int, float]:
        """VmHWM of each live worker process, in MiB, by pid."""
        peaks = {}
        for pid in self.worker_pids():
            with contextlib.suppress(FileNotFoundError):
                peaks[pid] = peak_rss_mib(pid)
        return peaks

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


def text_of(page, selector: str) -> str:
    """inner_text of the first element matching selector, or '' when there is none."""
    loc = page.locator(selector)
    try:
        return loc.first.inner_text(timeout=2000) if loc.count() else ""
    except Exception:  # noqa: BLE001 - replaced by a rerun while reading
        return ""


def job_text(page) -> str:
    """The text of this session's job panel on the Train page."""
    return text_of(page, ".st-key-train_job")


# --- acting on a page as a user does ---


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


def shown_run_id(page, timeout_ms: float = 30000) -> str:
    """The run id the Train page's job panel shows, once it shows one."""
    heading = page.locator(".st-key-train_job").get_by_role("heading", name=RUN_ID)
    heading.wait_for(timeout=timeout_ms)
    return RUN_ID.search(heading.inner_text()).group(0)


def submit_training(page) -> str:
    """Press Train; returns the run id the job panel shows."""
    page.get_by_role("button", name="Train", exact=True).click()
    return shown_run_id(page)


# Three strokes in canvas pixels (the canvas is 280x280): something like つ with a bar.
STROKES = (
    ((80, 60), (90, 140), (100, 220)),
    ((60, 120), (140, 110), (220, 100)),
    ((180, 60), (200, 160), (170, 230)),
)


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
