"""Browser scenarios of the Dask workers: TensorFlow stays out of the server; a killed worker; a two-node cluster;
a first deep link."""

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

from benchmarks.cluster import DaskNodes
from kmnist_core.store import RunStore
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
    expect(panel).to_contain_text(f"run {run_id} failed: worker tcp://127.0.0.1:", timeout=30_000)
    expect(panel).to_contain_text("died mid-run")
    assert process_gone(worker.pid)

    other = scenario.open(server, label="other-session")  # every session keeps working
    configure_training(other, "16", epochs=1, batch_size=512)
    submit_training(other)
    wait_for(lambda: "completed" in job_text(other), 120, what="a run on the fresh worker")
    [fresh] = _workers(server)
    assert fresh.pid != worker.pid


def test_training_through_a_two_node_cluster_draws_live_curves_and_names_its_worker(scenario, tmp_path):
    with DaskNodes(tmp_path / "nodes") as nodes:
        nodes.start_scheduler()
        nodes.add_worker("node-a", "127.0.0.2")
        nodes.add_worker("node-b", "127.0.0.3")
        runs = tmp_path / "runs"
        server = scenario.start_server(runs, "cluster", env={"KMNIST_SCHEDULER": nodes.address})
        page = scenario.open(server)
        configure_training(page, "64", epochs=40, batch_size=32)
        run_id = submit_training(page)
        wait_for(lambda: count_points(plotly_traces(page, "train_curves"), "loss") >= 3, 120, what="live points")
        expect(page.locator(".st-key-queue_status")).to_contain_text("on worker 127.0.0.")
        page.locator(".st-key-train_stop button").click()
        wait_for(lambda: RunStore(runs).get(run_id).status == "cancelled", 60, what="the stopped run's record")
        assert RunStore(runs).get(run_id).history  # its finished epochs came home from the node
        go_to(page, "Compare")
        page.get_by_text("Workers", exact=True).click()
        panel = page.locator(".st-key-compare_workers_panel")
        expect(panel).to_contain_text("127.0.0.2")
        expect(panel).to_contain_text("127.0.0.3")


def test_a_first_request_straight_to_a_page_gets_the_apps_navigation_and_frame(scenario, tmp_path):
    fresh = scenario.start_server(tmp_path / "runs", "deep-link")
    page = scenario.open(fresh, "draw")  # the first request of this server's life
    expect(page.get_by_role("heading", name="Draw", level=1)).to_be_visible(timeout=60_000)
    nav = page.locator("[data-testid='stSidebarNav']")
    expect(nav.get_by_role("link")).to_have_count(len(TITLES))
    for title in TITLES:
        expect(nav.get_by_role("link", name=title, exact=True)).to_be_visible()
    expect(page.locator("[data-testid='stSidebar']")).to_contain_text("train /")  # the frame's data line
