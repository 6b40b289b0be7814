"""ChestMNIST Resolution Explorer: `streamlit run app.py`.

One idea per page; every page is widgets, calls into `core`, then charts.

`streamlit run` finds `app` below (an st.App) and serves this same file through it, so every response
carries headers that forbid other sites to frame the app; Streamlit then runs the file as the page
script, under the name `__main__`, and draws the pages.
"""
import os
from pathlib import Path

# Before anything imports torch: its OpenMP threads then sleep rather than spin between parallel
# regions, so the app's inference does not fight a background training run for the cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import streamlit as st  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402

from ui.headers import NoFraming  # noqa: E402

ICON = Path(__file__).parent / "ui" / "icon.png"  # lungs, drawn with PIL (64 px)
app = st.App(__file__, middleware=[Middleware(NoFraming)])

if __name__ == "__main__":  # the page script (the server's import of this file, to find `app`, draws nothing)
    # The tab icon is a file here: for a Material Symbol the frontend fetches its SVG from fonts.gstatic.com, which
    # fails offline (and logs an error); an emoji draws as a box where the browser has no emoji font.
    st.set_page_config(page_title="ChestMNIST Resolution Explorer", page_icon=str(ICON), layout="wide")

    # Material Symbols (a web font Streamlit ships), not emoji: a browser without an emoji font draws emoji as boxes.
    nav = st.navigation([
        st.Page("pages/home.py", title="Data & runs", icon=":material/database:", default=True),
        st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
        st.Page("pages/compare.py", title="Compare", icon=":material/monitoring:"),
        st.Page("pages/thresholds.py", title="Thresholds", icon=":material/tune:"),
        st.Page("pages/saliency.py", title="Saliency", icon=":material/visibility:"),
        st.Page("pages/predict.py", title="Your images", icon=":material/upload_file:", url_path="predict"),
        st.Page("pages/run.py", title="Run details", icon=":material/description:", url_path="run"),
        st.Page("pages/reports.py", title="Study reports", icon=":material/summarize:", url_path="reports"),
    ])
    from ui.common import sidebar_settings
    from ui.warmup import page_run, warm_up

    with page_run():
        sidebar_settings()
        nav.run()
    warm_up()
