"""Timing pages in Chromium: switch page from the sidebar, and wait until what a page shows is painted and settled."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

PAGE_TIMEOUT_MS = 120_000
TRAIN_BUTTON = ".st-key-train_submit button"

# True once Streamlit has finished running the script (the app root says notRunning) and every
# asked-for part is there: plotly charts drawn (their SVG exists), data grids drawn (their canvas; st.dataframe's
# key is not a class of its element, so they are counted),
# every image of a gallery decoded, selectors present or absent, and an element's src changed.
_PAINTED_JS = """
([charts, frames, galleries, present, absent, changed]) => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.dataset.testScriptState !== 'notRunning') return false;
  const one = s => document.querySelector(s);
  for (const k of charts) if (!one(`.st-key-${k} .js-plotly-plot .main-svg`)) return false;
  const grids = document.querySelectorAll('[data-testid="stMain"] [data-testid="stDataFrame"]');
  if ([...grids].filter(g => g.querySelector('canvas[data-testid="data-grid-canvas"]')).length < frames) return false;
  for (const [k, n] of galleries) {
    const imgs = [...document.querySelectorAll(`.st-key-${k} img`)];
    if (imgs.length < n || !imgs.every(i => i.complete && i.naturalWidth > 0)) return false;
  }
  for (const s of present) if (!one(s)) return false;
  for (const s of absent) if (one(s)) return false;
  if (changed) {
    const el = one(changed[0]);
    if (!el || el.getAttribute('src') === changed[1]) return false;
  }
  return true;
}
"""


def wait_painted(page: Any, charts: Sequence[str] = (), frames: int = 0,
                 galleries: Sequence[tuple[str, int]] = (), present: Sequence[str] = (), absent: Sequence[str] = (),
                 changed: tuple[str, str | None] | None = None, timeout_ms: float = PAGE_TIMEOUT_MS) -> None:
    """Wait until the script run has ended and these parts of the page are painted.

    Args:
        charts: keys of plotly charts that must be drawn.
        frames: how many st.dataframe grids the main area must show drawn, at least.
        galleries: (container key, at least this many images), every one decoded.
        present: CSS selectors that must match.
        absent: CSS selectors that must not match (e.g. a panel the rerun removes).
        changed: (selector, old src): the element's src must differ from the old one.
    """
    page.wait_for_function(_PAINTED_JS, arg=[list(charts), frames, [list(g) for g in galleries], list(present),
                                             list(absent), list(changed) if changed else None],
                           polling=50, timeout=timeout_ms)


def nav(page: Any, title: str) -> None:
    """Click a page's link in the sidebar navigation (no waiting: time it with wait_painted)."""
    page.locator("[data-testid='stSidebarNav']").get_by_role("link", name=title, exact=True).click()


def timed(action: Callable[[], Any], wait: Callable[[], Any]) -> float:
    """Seconds from just before `action` until `wait` returns."""
    t = time.perf_counter()
    action()
    wait()
    return time.perf_counter() - t
