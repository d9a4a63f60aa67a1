"""KMNIST Lab: the Streamlit entry point: page config, navigation and the sidebar every page shares."""

import streamlit as st

from pages import common

st.set_page_config(page_title="KMNIST Lab", page_icon=common.FAVICON, layout="wide")
pg = st.navigation([
    st.Page(common.TRAIN_PAGE, title="Train", icon=":material/model_training:", default=True),
    st.Page(common.COMPARE_PAGE, title="Compare", icon=":material/table_chart:"),
    st.Page(common.CONFUSION_PAGE, title="Confusion matrix", icon=":material/grid_on:"),
    st.Page(common.DRAW_PAGE, title="Draw", icon=":material/draw:"),
])
st.sidebar.title("KMNIST Lab")
common.frame()
pg.run()
