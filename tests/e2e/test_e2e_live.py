"""Browser scenario of Live mode: a slider change retrains without Train; the old curve stays; others keep theirs."""

import re
from urllib.parse import urlencode

import pytest
from e2e_support import (
    RUN_ID,
    RUNNING,
    configure_training,
    job_text,
    plotly_traces,
    settle,
    stored_status,
    submit_training,
    wait_for,
)
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

# The live configuration, given as a link (the Train widgets are bound to the URL): one hidden layer
# of 128 units, 100 epochs of batch 512. Long enough to be running at each change on this machine,
# and estimated well under live mode's 30 s limit, so it starts by itself.
LIVE_LINK = {"train_n_layers": 1, "train_units_0": 128, "train_epochs": 100, "train_batch_size": 512}
# The other session's job: batch 32 makes 200 epochs last minutes, so it is still running at the end
# (and, never completing, it cannot change the time estimate the live runs are started on).
OTHER = {"layers": "32", "epochs": 200, "batch_size": 32}


def _shown_run(page) -> str | None:
    """The run id the job panel's heading shows now, or None."""
    heading = page.locator(".st-key-train_job").get_by_role("heading", name=RUN_ID)
    try:
        return RUN_ID.search(heading.first.inner_text(timeout=1000)).group(0) if heading.count() else None
    except Exception:  # noqa: BLE001 - replaced by a rerun while we read it
        return None


def _val_points(page, name: str) -> int:
    return sum(len(t.get("x") or []) for t in plotly_traces(page, "train_curves") if t.get("name") == name)


def _wait_new_run(page, before: str, what: str) -> str:
    """Wait until the job panel shows a run other than `before`, and it trains; returns its id."""
    run_id = wait_for(lambda: (r := _shown_run(page)) and r != before and r, 60, what=what)
    wait_for(lambda: _shown_run(page) == run_id and RUNNING.search(job_text(page)) and _val_points(page, "val loss"),
             120, what=f"run {run_id} training, with at least one epoch on the chart")
    return run_id


def _change_units(page, key: str, expected: str) -> None:
    """A user's slider change from the keyboard: focus the thumb of "Units in layer 1", press an arrow."""
    thumb = page.get_by_role("slider", name="Units in layer 1")
    thumb.focus()
    thumb.press(key)
    expect(thumb).to_have_attribute("aria-valuetext", expected)  # a select_slider: valuenow is the index


def test_a_slider_change_retrains_keeps_the_previous_curve_and_leaves_other_sessions_alone(
        scenario, tmp_path, monkeypatch):
    # Two workers: one for the other session's job, one for the live runs, so both train at once.
    monkeypatch.setenv("KMNIST_WORKERS", "2")
    server = scenario.start_server(tmp_path / "runs", "live")

    # Another session presses Train itself.
    other = scenario.open(server, label="other")
    configure_training(other, OTHER["layers"], epochs=OTHER["epochs"], batch_size=OTHER["batch_size"])
    other_run = submit_training(other)

    page = scenario.open(server, "?" + urlencode(LIVE_LINK), label="live")
    live = page.locator(".st-key-train_live")
    expect(live.get_by_text("Live", exact=True)).to_be_visible()
    expect(page.get_by_text(re.compile(r"parameters · \[128\] relu adam wd=0\.0005")).first).to_be_visible()
    settle(page)
    live.get_by_text("Live", exact=True).click()  # the toggle: the page's configuration becomes the live job
    expect(live.get_by_role("switch")).to_be_checked()
    first = _wait_new_run(page, "", "the first live run")
    expect(page.locator(".st-key-train_job")).to_contain_text("[128] relu adam wd=0.0005 · batch 512")

    # A change of the slider, and nothing else: a new run starts (Train is never pressed here).
    # A page that ignored the toggle, or did not follow the widgets, keeps showing `first`.
    _change_units(page, "ArrowLeft", "64")
    second = _wait_new_run(page, first, "a new run after moving the slider, without pressing Train")
    panel = page.locator(".st-key-train_job")
    expect(panel).to_contain_text("[64] relu adam wd=0.0005")
    assert stored_status(server.runs_dir, first) == "cancelled"  # replaced while running: kept, as with Stop

    # Again: the second configuration's curve stays on the chart, faded, named "before: ...".
    # A chart without it fails (e.g. live_mode.previous() forgotten, or its history dropped).
    _change_units(page, "ArrowLeft", "32")
    third = _wait_new_run(page, second, "a third run after moving the slider again")
    expect(panel).to_contain_text("[32] relu adam wd=0.0005")
    before = [t for t in plotly_traces(page, "train_curves") if (t.get("name") or "").startswith("before: [64]")]
    assert before and all(t["x"] for t in before), [t.get("name") for t in plotly_traces(page, "train_curves")]
    assert third not in (first, second)
    scenario.snap(page, "faded")

    # The other session's job was never touched: still running (or done), never cancelled.
    # Live mode cancelling every running job, or this session's job id mixed up with another's, fails here.
    assert stored_status(server.runs_dir, other_run) in ("running", "completed")
    assert "cancelled" not in job_text(other)
    expect(other.locator(".st-key-train_job").get_by_role("heading", name=f"Run {other_run}")).to_be_visible()
    # The runs left going end with this test's own server.
