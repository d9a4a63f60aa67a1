"""Browser scenarios of the worker processes: TensorFlow stays out of the server; a killed worker; a first deep link."""

from pathlib import Path

import psutil
import pytest
from e2e_support import (
    configure_training,
    count_points,
    draw_strokes,
    go_to,
    job_text,
    plotly_traces,
    process_gone,
    submit_training,
    wait_for,
)
from playwright.sync_api import expect

from pages.common import PAGE_TABLE

pytestmark = pytest.mark.e2e

TITLES = tuple(title for _, title, _ in PAGE_TABLE)
TENSORFLOW_LIBRARY = "_pywrap_tensorflow_internal"  # the shared object `import tensorflow` maps


def _maps_tensorflow(pid: int) -> bool:
    return TENSORFLOW_LIBRARY in Path(f"/proc/{pid}/maps").read_text()


def _workers(server) -> list[psutil.Process]:
    """The server's training worker processes (multiprocessing spawn children that mapped TensorFlow)."""
    found = []
    for child in psutil.Process(server.proc.pid).children(recursive=True):
        try:
            if _maps_tensorflow(child.pid):
                found.append(child)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def test_the_server_never_loads_tensorflow_while_pages_train_and_predict(scenario, server):
    page = scenario.open(server)
    for title in TITLES:
        go_to(page, title)
    go_to(page, "Train")
    configure_training(page, "32", epochs=2, batch_size=256)
    submit_training(page)
    wait_for(lambda: "completed" in job_text(page), 120, what="the run completing")
    go_to(page, "Draw")
    draw_strokes(page)
    expect(page.locator(".st-key-prediction")).to_be_visible()
    go_to(page, "Confusion matrix")
    go_to(page, "Compare")

    assert not _maps_tensorflow(server.proc.pid), "the Streamlit server process loaded TensorFlow"
    modules = psutil.Process(server.proc.pid).memory_maps()
    assert not [m.path for m in modules if "tensorflow" in m.path or "/keras/" in m.path]
    assert _workers(server), "no worker process holds TensorFlow: the check above could not have failed"


def test_a_killed_worker_fails_its_run_by_name_and_the_dashboard_goes_on(scenario, server):
    watcher = scenario.open(server, label="watcher")
    configure_training(watcher, "64", epochs=200, batch_size=16)
    run_id = submit_training(watcher)
    wait_for(lambda: count_points(plotly_traces(watcher, "train_curves"), "loss"), 120, what="live points")
    [worker] = _workers(server)
    worker.kill()  # SIGKILL, as the OOM killer would

    panel = watcher.locator(".st-key-train_job")
    expect(panel).to_contain_text(f"run {run_id} failed: worker process died: signal 9 (SIGKILL)", timeout=30_000)
    assert process_gone(worker.pid)

    other = scenario.open(server, label="other-session")  # every session keeps working
    configure_training(other, "16", epochs=1, batch_size=512)
    submit_training(other)
    wait_for(lambda: "completed" in job_text(other), 120, what="a run on the fresh worker")
    [fresh] = _workers(server)
    assert fresh.pid != worker.pid


def test_a_first_request_straight_to_a_page_gets_the_apps_navigation_and_frame(scenario, tmp_path):
    fresh = scenario.start_server(tmp_path / "runs", "deep-link")
    page = scenario.open(fresh, "draw")  # the first request of this server's life
    expect(page.get_by_role("heading", name="Draw", level=1)).to_be_visible(timeout=60_000)
    nav = page.locator("[data-testid='stSidebarNav']")
    expect(nav.get_by_role("link")).to_have_count(len(TITLES))
    for title in TITLES:
        expect(nav.get_by_role("link", name=title, exact=True)).to_be_visible()
    expect(page.locator("[data-testid='stSidebar']")).to_contain_text("train /")  # the frame's data line
