"""Browser scenario: a configuration is a link: set widgets, copy the URL, open it in a fresh browser context."""

import pytest
from e2e_support import enter_number, settle, wait_for
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e


def _command(page) -> str:
    """The Train page's `python -m kmnist_core train ...` line: the configuration the widgets describe."""
    expander = page.get_by_text("The same from the command line", exact=True)
    if not page.locator("[data-testid='stCode']").first.is_visible():
        expander.click()
    code = page.locator("[data-testid='stCode']").first
    expect(code).to_be_visible()
    return code.inner_text().strip()


def test_a_link_reproduces_the_configuration_in_a_new_browser(scenario, server):
    page = scenario.open(server, label="author")
    page.get_by_role("heading", name="Train", level=1).wait_for()
    page.get_by_text("Advanced", exact=True).click()
    enter_number(page, "Epochs", 3)
    enter_number(page, "Seed", 42)
    page.get_by_text("Batch normalisation", exact=True).click()  # a user clicks the label
    settle(page)
    wanted = wait_for(lambda: "--epochs 3" in (c := _command(page)) and "--batch-norm" in c and c, 30,
                      what="the widgets' configuration in the command line")
    url = wait_for(lambda: "train_seed=42" in page.url and "train_batch_norm=true" in page.url and page.url, 30,
                   what="the URL carrying the widgets")

    reader = scenario.open(server, url[len(server.url) + 1:], label="reader")  # a fresh context: a new session
    reader.get_by_role("heading", name="Train", level=1).wait_for()
    assert _command(reader) == wanted
    expect(reader.get_by_label("Batch normalisation", exact=True)).to_be_checked()
    assert not reader.locator("[data-testid='stAlert']").filter(has_text="was ignored").count()

    broken = scenario.open(server, "?train_epochs=0&train_seed=42", label="broken-link")
    expect(broken.get_by_text("the link's train_epochs='0' was ignored: epochs must be an integer")).to_be_visible()
    assert "--seed 42" in _command(broken)
