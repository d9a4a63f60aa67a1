"""KMNIST Lab: the Streamlit entry point (placeholder until the dashboard pages land)."""

import streamlit as st

st.set_page_config(page_title="KMNIST Lab", page_icon="お")
st.title("KMNIST Lab")
st.write("Train with `python -m kmnist_core train`; the dashboard pages are on their way.")
