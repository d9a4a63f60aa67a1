"""Browser scenario: a cold server start paints the first page within a generous bound."""

import json
import re
import time

import pytest
from e2e_support import ARTIFACTS
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

# Spawn to a painted Train page on a loaded 2-core machine measured 9-16 s;
# the benchmark owns the tight number, this only catches a start that has become pathological.
COLD_START_BOUND_S = 30


def test_cold_start_paints_the_train_page(scenario, tmp_path, record_property):
    server = scenario.start_server(tmp_path / "runs", "cold")
    page = scenario.open(server)
    expect(page.get_by_role("heading", name="Train", level=1)).to_be_visible(timeout=COLD_START_BOUND_S * 1000)
    expect(page.get_by_role("button", name="Train", exact=True)).to_be_enabled()
    # The frame loaded the data and the (empty) run store: the sidebar says so.
    sidebar = page.locator("[data-testid='stSidebar']")
    expect(sidebar).to_contain_text(re.compile(r"[\d,]+ train / [\d,]+ test"))
    expect(sidebar.locator(".st-key-queue_status")).to_contain_text("idle")
    painted = time.monotonic() - server.started_at

    timings = {"health_s": round(server.healthy_after, 2), "first_page_s": round(painted, 2)}
    record_property("cold_start", timings)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "cold-start.json").write_text(json.dumps(timings) + "\n")
    assert painted < COLD_START_BOUND_S, f"cold start took {painted:.1f} s"
