"""The one workaround for Streamlit's legacy pages/ folder: a first request straight to a page still gets the frame.

Streamlit treats a folder named pages/ beside the entry script as a legacy (v1) multipage app
until the first st.navigation call of the server's life. So the first request of a fresh server
that goes straight to, say, /draw runs pages/draw.py alone, without dashboard.py: no frame, and
a sidebar listing every file in pages/. There is no option to turn that off, and the user's
layout has a top-level pages/ folder. This module notices that case through the project's own
session state (never a Streamlit internal) and repairs it with public API: it calls
st.navigation with the app's pages, which ends legacy mode for the rest of the server's life,
and reruns, so that dashboard.py draws the frame and opens the same page. tests/test_legacy_mpa.py has a canary that
fails once Streamlit stops running pages/ scripts alone; then delete this module.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st
from streamlit import config

_FRAME_DRAWN = "_kmnist_frame_drawn"  # set by the frame each full run, taken by the page that follows it


def frame_drawn() -> None:
    """Note that the frame ran in this script run (dashboard.py calls the frame before the page)."""
    st.session_state[_FRAME_DRAWN] = True


def ensure_frame(pages: Callable[[], list], frame: Callable[[], None]) -> None:
    """At the top of each page: if dashboard.py did not run first (legacy mode), do its work here.

    Args:
        pages: the app's st.Page list, as dashboard.py passes it to st.navigation.
        frame: draws what every page shares.
    """
    if st.session_state.pop(_FRAME_DRAWN, False):
        return
    if config.get_option("global.appTest"):
        # AppTest starts every run in legacy mode, and a rerun would drop the widget event under
        # test: draw the frame in place instead. (AppTest patches config.get_option, which
        # st.get_option captured at import, so only the former sees its flag.)
        frame()
        st.session_state.pop(_FRAME_DRAWN, None)
        return
    st.navigation(pages())  # public API; ends legacy mode for the rest of the server's life
    st.rerun()  # now through dashboard.py, which opens this same page
