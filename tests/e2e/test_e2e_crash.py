"""Browser scenario: SIGKILL the server mid-training; its worker exits; after a restart the run reads interrupted."""

import hashlib
import shutil
import signal

import pytest
from e2e_support import (
    configure_training,
    count_points,
    job_text,
    plotly_traces,
    process_gone,
    run_row,
    stored_metrics,
    stored_status,
    submit_training,
    wait_for,
)
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e


def _digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_sigkill_mid_training_leaves_run_interrupted_and_earlier_runs_intact(scenario, app_server, tmp_path):
    runs = tmp_path / "runs"
    earlier = app_server.pretrained  # a completed run, trained before this server ever started
    shutil.copytree(app_server.runs_dir / earlier, runs / earlier)
    before = _digests(runs / earlier)

    first = scenario.start_server(runs, "killed")
    page = scenario.open(first, label="before-kill")
    configure_training(page, "64", epochs=200, batch_size=16)
    run_id = submit_training(page)
    wait_for(lambda: "epoch" in job_text(page) and count_points(plotly_traces(page, "train_curves"), "loss"), 120,
             what="the run training")
    assert stored_status(runs, run_id) == "running"

    spawned = first.kill_server_only()  # SIGKILL to the server alone: no handler, no cleanup runs
    assert first.proc.returncode == -signal.SIGKILL and spawned  # it had a training worker
    # Its worker notices the pipe end within seconds and exits: no orphan keeps the CPU busy.
    wait_for(lambda: all(process_gone(pid) for pid in spawned), 10, what="the orphaned worker exiting")
    assert stored_status(runs, run_id) == "running"  # on disk, the run still claims to be running

    second = scenario.start_server(runs, "restarted")
    page = scenario.open(second, "compare", label="after-restart")
    expect(page.get_by_role("heading", name="Compare", level=1)).to_be_visible()
    row = wait_for(lambda: run_row(page, run_id), 60, what="the killed run in Compare")
    assert row["status"] == "interrupted", row
    assert "stopped before it finished" in row["note"]

    old = run_row(page, earlier)
    assert old["status"] == "completed", old
    assert float(old["test accuracy"]) == pytest.approx(stored_metrics(runs, earlier)["test_accuracy"], abs=5e-5)
    assert _digests(runs / earlier) == before, "a completed run's files changed"
    # Nothing is training after the restart.
    expect(page.locator(".st-key-queue_status")).to_contain_text("idle")
