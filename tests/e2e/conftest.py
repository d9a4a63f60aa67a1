"""Browser-test fixtures: a real Streamlit server, Debian's Chromium, and artifacts for every scenario."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from e2e_support import ARTIFACTS, finish_cli, screenshot, train_cli
from playwright.sync_api import expect, sync_playwright

from benchmarks.harness import VIEWPORT, StreamlitServer, launch_chromium

# The run every result page can use at once: the default preset, made small ([32], 2 epochs).
PRETRAIN = ("--preset", "ref-relu-adam", "--hidden", "32", "--epochs", "2")
TIMEOUT_MS = 30_000  # Streamlit reruns and a busy 2-core machine: generous waits, bounded
expect.set_options(timeout=TIMEOUT_MS)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so fixtures can tell a failed scenario at teardown."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def _failed(node) -> bool:
    return any(getattr(getattr(node, f"rep_{when}", None), "failed", False) for when in ("setup", "call"))


@pytest.fixture(scope="session")
def chromium():
    """Debian's Chromium, launched once per test session."""
    playwright = sync_playwright().start()
    try:
        missing = ""
        try:
            browser = launch_chromium(playwright)
        except RuntimeError as e:
            missing = str(e)
        if missing:
            pytest.fail(missing, pytrace=False)
        yield browser
        browser.close()
    finally:
        playwright.stop()


@pytest.fixture(scope="session")
def app_server(tmp_path_factory):
    """One server for the whole session on a temporary run store holding one CLI-trained run.

    The run (`.pretrained`, its id) is trained by the CLI while the server starts: the server's
    job queue reads the same store, so result pages have something to show at once.
    """
    root = tmp_path_factory.mktemp("e2e")
    runs = root / "runs"
    cli = train_cli(runs, *PRETRAIN)
    server = StreamlitServer(runs, root / "server.log")
    try:
        server.start()
        server.pretrained = finish_cli(cli)
        yield server
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
        server.stop()


class Scenario:
    """What one test opened (browser contexts, servers), saved as artifacts and closed at its end."""

    def __init__(self, name: str, chromium, tmp_path: Path):
        self.name = re.sub(r"[^\w.-]+", "_", name)
        self.chromium = chromium
        self.tmp_path = tmp_path
        self.pages: list[tuple[str, object]] = []
        self.contexts: list = []
        self.servers: list[StreamlitServer] = []  # whose logs a failure saves
        self.own: list[StreamlitServer] = []  # started by this test, stopped at its end
        for old in ARTIFACTS.glob(f"{self.name}*"):
            old.unlink()

    def open(self, server: StreamlitServer, path: str = "", label: str = "", color_scheme: str = "light"):
        """A new browser context (its own Streamlit session) showing server/path, in a light or dark theme."""
        context = self.chromium.new_context(viewport=VIEWPORT, color_scheme=color_scheme)
        context.set_default_timeout(TIMEOUT_MS)
        self.contexts.append(context)
        page = context.new_page()
        self.pages.append((label or str(len(self.pages) + 1), page))
        if server not in self.servers:
            self.servers.append(server)
        page.goto(f"{server.url}/{path}")
        return page

    def start_server(self, runs_dir: Path, label: str, env: dict[str, str] | None = None) -> StreamlitServer:
        """A server of this test's own on runs_dir (with more environment `env`); stopped when the test ends."""
        server = StreamlitServer(runs_dir, self.tmp_path / f"server-{label}.log", env=env)
        self.own.append(server)
        self.servers.append(server)
        return server.start()

    def snap(self, page, moment: str) -> None:
        """A full-page screenshot of a moment worth keeping, besides the one taken at the end."""
        screenshot(page, ARTIFACTS / f"{self.name}-{moment}.png")

    def finish(self, failed: bool) -> None:
        """Save a full-page screenshot of every page (and on failure its HTML and the server logs); close all."""
        ARTIFACTS.mkdir(exist_ok=True)
        many = len(self.pages) > 1
        for label, page in self.pages:
            stem = f"{self.name}-{label}" if many else self.name
            try:
                screenshot(page, ARTIFACTS / f"{stem}.png")
                if failed:
                    (ARTIFACTS / f"{stem}.html").write_text(page.content())
            except Exception as e:  # noqa: BLE001 - artifacts must never hide the test's own result
                (ARTIFACTS / f"{stem}.artifact-error.txt").write_text(f"{type(e).__name__}: {e}\n")
        if failed:
            for i, server in enumerate(self.servers):
                if server.log_path.exists():
                    shutil.copy(server.log_path, ARTIFACTS / f"{self.name}-server{i + 1}.log")
        for context in self.contexts:
            try:
                context.close()
            except Exception:  # noqa: BLE001
                pass
        for server in self.own:
            server.stop()


@pytest.fixture
def scenario(request, chromium, tmp_path):
    """Opens pages and servers for one test; screenshots them (and more on failure) and closes them after."""
    s = Scenario(request.node.name, chromium, tmp_path)
    yield s
    s.finish(_failed(request.node))


@pytest.fixture
def server(app_server, scenario):
    """The session's server, with this test's artifacts including its log."""
    scenario.servers.append(app_server)
    return app_server
