"""Browser scenario of a sweep: a pasted space, a two-trial budget, the trials table and best-so-far chart filling."""

import itertools
import math

import pytest
from e2e_support import enter_number, plotly_traces, read_dataframe, settle, stored_metrics, stored_status, wait_for
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

# Four configurations of one epoch each: two of them train in seconds on the subset.
SPACE = """\
epochs = 1
batch_size = 512
hidden_layers = [[16], [32]]
optimizer = ["adam", "rmsprop"]
"""
SPACE_LINE = "Space: epochs: 1; batch_size: 512; hidden_layers: one of 16, 32; optimizer: one of adam, rmsprop"
CONFIGS = set(itertools.product(("16", "32"), ("adam", "rmsprop")))
TRIALS = 2


def _choose(page, label: str, option: str) -> None:
    """Pick an option of a selectbox as a user does: open it, click the option.

    A rerun that lands while the list is open redraws the box and closes the list unpicked (seen
    under load), so a user would click again: up to three tries.
    """
    box = page.get_by_role("combobox", name=label, exact=True)
    for _ in range(3):
        settle(page)
        box.click()
        try:
            page.get_by_role("option", name=option, exact=True).click(timeout=5_000)
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
            continue
        settle(page)
        if box.input_value() == option:
            break
    expect(box).to_have_value(option)


def _completed(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [r for r in rows if r.get("status") == "completed"]


def test_a_tiny_sweep_fills_the_trials_table_and_the_best_so_far_chart(scenario, tmp_path):
    # A server of this test's own: the sweep's runs and its study stay out of the session's store.
    server = scenario.start_server(tmp_path / "runs", "sweep")
    page = scenario.open(server, "sweep")
    expect(page.get_by_role("heading", name="Sweep", level=1)).to_be_visible()
    expect(page.get_by_text("No sweep yet")).to_be_visible()

    space = page.locator(".st-key-sweep_text textarea")
    space.fill(SPACE)
    space.press("Control+Enter")  # commits a text area, as clicking elsewhere would
    settle(page)
    expect(page.get_by_text(SPACE_LINE)).to_be_visible()  # the pasted file replaced the widgets' space
    enter_number(page, "How many trials", TRIALS)
    # Grid: two distinct configurations. TPE's random start-up may draw one twice (seen here: its
    # second trial was then answered from the store, and only one model trained).
    _choose(page, "Sampler", "grid")
    _choose(page, "Pruner", "none")
    page.locator(".st-key-sweep_start").get_by_role("button").click()

    # Watch the page, never reloading it: the trials table and the chart must fill by themselves
    # (the page's fragment polls while the sweep runs). A page that only showed the sweep's end
    # after a reload, or never, fails here; so does one whose table never had a trial unfinished.
    states: list[tuple[int, int]] = []  # (rows shown, completed rows) at each look

    def finished():
        rows = read_dataframe(page, first_column="trial")
        states.append((len(rows), len(_completed(rows))))
        best = plotly_traces(page, "sweep_best")
        points = next((t["y"] for t in best if t["name"] == "trial"), None) or []
        return len(_completed(rows)) == TRIALS and len(points) == TRIALS and (rows, best)

    rows, best = wait_for(finished, 240, interval=0.5, what=f"{TRIALS} completed trials in the table and the chart")
    assert any(shown and done < TRIALS for shown, done in states), f"no trial was ever shown unfinished: {states}"
    expect(page.get_by_text(f"{TRIALS} completed", exact=False).first).to_be_visible()

    # The table: trials 0 and 1, two different configurations of the space, each a stored run.
    assert [r["trial"] for r in rows] == [str(n) for n in range(TRIALS)], rows
    configs = {(r["hidden_layers"], r["optimizer"]) for r in rows}
    assert len(configs) == TRIALS and configs <= CONFIGS, rows
    assert len({r["run"] for r in rows}) == TRIALS, rows
    for r in rows:
        assert r["epochs"] == "1", r
        assert stored_status(server.runs_dir, r["run"]) == "completed"
        stored = stored_metrics(server.runs_dir, r["run"])["best_val_accuracy"]
        assert math.isclose(float(r["val accuracy"]), stored, abs_tol=1e-6), (r, stored)
        assert 0.1 < stored <= 1.0  # better than chance after one epoch

    # The chart: one point per completed trial, and the best so far is their running maximum.
    traces = {t["name"]: t for t in best}
    values = traces["trial"]["y"]
    assert sorted(values) == pytest.approx(sorted(float(r["val accuracy"]) for r in rows))
    assert traces["best so far"]["y"] == pytest.approx(list(itertools.accumulate(values, max)))
