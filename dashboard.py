"""KMNIST Lab: the Streamlit entry point: page config, navigation and the sidebar every page shares."""


def main() -> None:
    """Draw the frame and run the page the URL asks for."""
    import streamlit as st

    from pages import common

    st.set_page_config(page_title="KMNIST Lab", page_icon=common.FAVICON, layout="wide")
    pg = st.navigation(common.navigation_pages())
    common.frame()
    pg.run()


# Streamlit runs this file as "__main__". A training worker, started with multiprocessing's spawn
# from the server, imports it as "__mp_main__": Python's rule for spawn is that the main module
# imports without side effects, so the app is drawn only under the first name.
if __name__ == "__main__":
    main()
