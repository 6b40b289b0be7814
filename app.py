"""ChestMNIST Resolution Explorer: `streamlit run app.py`.

One idea per page; every page is widgets, calls into `core`, then charts.
"""
import streamlit as st

from pages.common import sidebar_settings

st.set_page_config(page_title="ChestMNIST Resolution Explorer", page_icon="🫁", layout="wide")

nav = st.navigation([
    st.Page("pages/home.py", title="Data & runs", icon="🏠", default=True),
    st.Page("pages/train.py", title="Train", icon="🏋️"),
    st.Page("pages/compare.py", title="Compare", icon="📈"),
    st.Page("pages/thresholds.py", title="Thresholds", icon="🎚️"),
    st.Page("pages/saliency.py", title="Saliency", icon="🔥"),
])
sidebar_settings()
nav.run()
