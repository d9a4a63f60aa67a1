"""Canary for pages/legacy_mpa.py: Streamlit still runs a pages/ script alone, without the entry script.

If this test fails after a Streamlit upgrade, Streamlit no longer treats a pages/ folder as a
legacy multipage app: delete pages/legacy_mpa.py and its two calls in pages/common.py.
"""

from streamlit.testing.v1 import AppTest

MAIN = """
import streamlit as st
st.markdown("entry script ran")
pg = st.navigation([st.Page("pages/home.py", default=True), st.Page("pages/other.py")])
pg.run()
"""


def test_streamlit_still_runs_a_pages_folder_script_without_the_entry_script(tmp_path):
    (tmp_path / "pages").mkdir()
    (tmp_path / "main.py").write_text(MAIN)
    (tmp_path / "pages" / "home.py").write_text('import streamlit as st\nst.markdown("home page ran")\n')
    (tmp_path / "pages" / "other.py").write_text('import streamlit as st\nst.markdown("other page ran")\n')
    at = AppTest.from_file(str(tmp_path / "main.py"))
    at.run()
    assert [m.value for m in at.markdown] == ["entry script ran", "home page ran"]
    at.switch_page("pages/other.py").run()
    shown = [m.value for m in at.markdown]
    assert "other page ran" in shown
    assert "entry script ran" not in shown, "Streamlit now runs the entry script first: remove pages/legacy_mpa.py"
