"""Browser scenarios of training: live curves, the cache, Stop, and several sessions at once."""

import re
import time

import pytest
from e2e_support import (
    RUN_ID,
    RUNNING,
    configure_training,
    count_points,
    go_to,
    job_text,
    plotly_traces,
    run_row,
    stored_metrics,
    stored_status,
    submit_training,
    wait_for,
)
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

# Scenario 2's run: long enough to visit Compare mid-training, short enough to wait for
# (15-60 s for [64] at batch 16 on the 2-core machine, depending on its load).
EPOCHS = 30
LONG_EPOCHS = 200  # the most allowed: a run that cannot finish within a scenario; Stop ends it


def _loss_points(page) -> int:
    return count_points(plotly_traces(page, "train_curves"), "loss")


def _running(page) -> bool:
    text = job_text(page)
    return bool(RUNNING.search(text)) and "completed" not in text


def _shown_metrics(page, container: str) -> dict[str, str]:
    """{label: value} of the st.metric elements inside a keyed container."""
    cards = page.locator(f".st-key-{container} [data-testid='stMetric']")
    expect(cards.first).to_be_visible()  # the page may be between two runs (a job that just ended reruns it)
    return {c.locator("[data-testid='stMetricLabel']").inner_text().strip():
            c.locator("[data-testid='stMetricValue']").inner_text().strip() for c in cards.all()}


def _epoch_points(page, trace_name: str) -> int:
    return sum(len(t["x"] or []) for t in plotly_traces(page, "train_curves") if t["name"] == trace_name)


def _stop_if_running(page) -> None:
    """Safety net: a run left going would hold the session server's single worker for minutes."""
    stop = page.locator(".st-key-train_job").get_by_role("button", name="Stop")
    if stop.count():
        stop.click()


def _wait_running(page, timeout=120) -> int:
    """Wait until the job trains (an 'epoch k/n' line and live loss points); returns the point count."""
    return wait_for(lambda: _running(page) and _loss_points(page), timeout, what="the job training with live points")


def test_live_curves_grow_and_training_survives_a_page_switch(scenario, server):
    page = scenario.open(server)
    configure_training(page, "64", epochs=EPOCHS, batch_size=16)
    run_id = submit_training(page)
    panel = page.locator(".st-key-train_job")
    expect(panel).to_contain_text("[64] relu adam wd=0.0005 · batch 16")

    # The loss chart gains points while the job runs, without any reload or click.
    first = _wait_running(page)
    second = wait_for(lambda: _running(page) and (n := _loss_points(page)) > first and n, 30,
                      what="the loss chart growing while the job runs")

    # Away to Compare mid-training: the run is listed there as in progress...
    go_to(page, "Compare")
    expect(page.get_by_text("In progress: [64] relu adam wd=0.0005")).to_be_visible()
    row = wait_for(lambda: run_row(page, run_id), 30, what="the run in the Compare table")
    assert row["status"] in ("running", "completed"), row  # it may well have finished while we read
    page.wait_for_timeout(1000)
    # ...and back: the job panel returns and training went on meanwhile.
    go_to(page, "Train")
    expect(panel.get_by_role("heading", name=f"Run {run_id}")).to_be_visible()
    # The form still shows what the user typed, not the default preset.
    expect(page.get_by_label("Hidden layers (units, comma-separated)", exact=True)).to_have_value("64")
    expect(page.get_by_text("50,890 parameters · [64] relu adam wd=0.0005")).to_be_visible()
    wait_for(lambda: _loss_points(page) > second, 30, what="more loss points after coming back")
    scenario.snap(page, "live")

    # At the end, the run's accuracy is shown, the very numbers the run store holds.
    expect(panel).to_contain_text("completed in", timeout=240_000)
    metrics = stored_metrics(server.runs_dir, run_id)
    expect(page.locator(".st-key-train_result")).to_be_visible()
    shown = _shown_metrics(page, "train_result")
    assert shown["Test accuracy"] == f"{metrics['test_accuracy']:.4f}"
    assert shown["Best val accuracy"] == f"{metrics['best_val_accuracy']:.4f}"
    assert 0.5 < metrics["test_accuracy"] <= 1.0
    wait_for(lambda: _epoch_points(page, "train loss") == EPOCHS and _epoch_points(page, "val loss") == EPOCHS, 30,
             what="one train and one val loss point per epoch")
    assert stored_status(server.runs_dir, run_id) == "completed"


def test_same_config_again_is_answered_from_cache(scenario, server):
    runs_before = sorted(p.name for p in server.runs_dir.iterdir())
    page = scenario.open(server)
    # The very configuration the CLI trained at session start, now set in the browser.
    configure_training(page, "32", epochs=2, batch_size=128)
    cached = page.locator(".st-key-train_cached")
    expect(cached).to_contain_text(f"already has completed run {server.pretrained}")

    started = time.monotonic()
    run_id = submit_training(page)
    panel = page.locator(".st-key-train_job")
    expect(panel).to_contain_text("cached: this configuration already has a completed run")
    answered = time.monotonic() - started
    assert run_id == server.pretrained
    assert answered < 15, f"a cached answer took {answered:.1f} s"

    metrics = stored_metrics(server.runs_dir, run_id)
    assert _shown_metrics(page, "train_result")["Test accuracy"] == f"{metrics['test_accuracy']:.4f}"
    wait_for(lambda: _epoch_points(page, "val loss") == 2, 30, what="the stored curves")
    # Nothing was trained: no new run folder, the queue idle.
    assert sorted(p.name for p in server.runs_dir.iterdir()) == runs_before
    expect(page.locator(".st-key-queue_status")).to_contain_text("idle")


def test_stop_cancels_within_seconds_and_another_session_sees_it(scenario, server):
    trainer = scenario.open(server, label="A-train")
    watcher = scenario.open(server, "compare", label="B-compare")
    expect(watcher.get_by_role("heading", name="Compare", level=1)).to_be_visible()
    configure_training(trainer, "64, 32", epochs=LONG_EPOCHS, batch_size=16)
    run_id = submit_training(trainer)
    panel = trainer.locator(".st-key-train_job")

    # Session B, untouched, learns of the run from the shared queue and store.
    def status_in_b():
        row = run_row(watcher, run_id)
        return row and row["status"]

    try:
        _wait_running(trainer)
        wait_for(lambda: status_in_b() == "running", 30, what="session B listing the run as running")
        expect(watcher.locator(".st-key-queue_status")).to_contain_text("training", timeout=30_000)
        panel.get_by_role("button", name="Stop").click()
        pressed = time.monotonic()
        expect(panel).to_contain_text("cancelled after", timeout=20_000)
        took = time.monotonic() - pressed
    finally:
        _stop_if_running(trainer)
    assert took < 10, f"Stop took {took:.1f} s"
    assert stored_status(server.runs_dir, run_id) == "cancelled"
    expect(panel.get_by_role("button", name="Stop")).to_have_count(0)
    # The curve no longer grows. "Does not change" has no event to wait for, so it is watched over a
    # window: two of the job panel's 1 s polls (pages/train.py POLL_S), either of which would redraw it.
    frozen = wait_for(lambda: _loss_points(trainer), 10, what="the stopped run's curve")
    trainer.wait_for_timeout(2000)
    assert _loss_points(trainer) == frozen

    # B sees the cancellation without a reload or a click.
    assert wait_for(lambda: status_in_b() == "cancelled" and "cancelled", 30,
                    what="session B showing the run cancelled") == "cancelled"
    assert run_row(watcher, run_id)["hidden layers"] == "64, 32"
    expect(watcher.locator(".st-key-queue_status")).to_contain_text("idle")


def test_two_sessions_train_at_once_and_each_sees_its_own_run(scenario, server):
    pages = {"24": scenario.open(server, label="A"), "40": scenario.open(server, label="B")}
    for layers, page in pages.items():
        configure_training(page, layers, epochs=8, batch_size=16)
    for page in pages.values():  # as close together as two users can click
        page.get_by_role("button", name="Train", exact=True).click()

    seen = {layers: [] for layers in pages}  # every job-panel text each page showed, in order

    def both_done():
        for layers, page in pages.items():
            if text := job_text(page):
                seen[layers].append(text)
        return all(s and "completed in" in s[-1] for s in seen.values())

    wait_for(both_done, 240, interval=0.2, what="both runs completing")
    ids = {layers: RUN_ID.search(texts[-1]).group(0) for layers, texts in seen.items()}
    assert ids["24"] != ids["40"]
    for layers, own, other in (("24", ids["24"], ids["40"]), ("40", ids["40"], ids["24"])):
        texts = seen[layers]
        assert all(f"Run {own}" in t and other not in t for t in texts), f"page {layers} showed another run"
        assert all(f"[{layers}] relu adam wd=0.0005 · batch 16" in t for t in texts)
        metrics = stored_metrics(server.runs_dir, own)
        assert _shown_metrics(pages[layers], "train_result")["Test accuracy"] == f"{metrics['test_accuracy']:.4f}"
        assert stored_status(server.runs_dir, own) == "completed"
    # One worker: while one session's run trained, the other's waited in the queue, and its page said so.
    assert any("queued" in t for texts in seen.values() for t in texts), seen
    in_progress = re.compile(r"queued|starting|epoch \d+/8")
    assert all(any(in_progress.search(t) for t in texts) for texts in seen.values()), seen
