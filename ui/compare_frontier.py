"""Compare's "Images or pixels" section: when the selected runs trained on different numbers of images, test
AUC against training compute with the Pareto frontier and the answer at equal compute (core.study.frontier)."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from core.errors import UserError
from core.runs import groups as G
from core.runs import record as runs
from core.study import frontier as FR
from ui import charts
from ui import compare_data as CD
from ui.common import file_mtime

AXES = {"training GFLOP": "train_gflop", "measured training seconds": "seconds"}


@st.cache_data(max_entries=32, show_spinner=False)
def _difference(a: tuple[str, ...], b: tuple[str, ...], mtimes: tuple[float, ...]) -> dict:
    return G.group_difference(list(a), list(b), n_boot=CD.N_BOOT)


def _cached(a: list[str], b: list[str], n_boot: int, seed: int, min_positives: int) -> dict:
    return _difference(tuple(a), tuple(b), tuple(file_mtime(runs.scores_path(d, "test")) for d in a + b))


def frontier_section(groups: list[CD.Group]) -> None:
    """Nothing unless the selected tested runs differ in training images per epoch (a --subsets grid)."""
    try:
        points = [FR.run_point(run["info"].path) for g in groups for run in g.runs if run["test"]]
    except (UserError, KeyError) as e:  # an old or damaged config: the rest of the page still shows
        st.caption(f"Images or pixels not shown: {e}")
        return
    if FR.subsets(points) < 2:
        return
    st.header("Images or pixels")
    title = st.radio("x axis", list(AXES), horizontal=True, key="compare_frontier_x")
    with st.spinner("Comparing the equal-compute pairs on the same test images…"):
        grid = FR.frontier(points, n_boot=CD.N_BOOT, difference=_cached)
    key = AXES[title]
    front = "front_gflop" if key == "train_gflop" else "front_seconds"
    frame = pd.DataFrame([{"label": c["label"], "size": c["size"], "x": c[key], "auc": c["auc"],
                           "lo": c["auc"] - (c["auc_sd"] or 0), "hi": c["auc"] + (c["auc_sd"] or 0), "front": c[front]}
                          for c in grid["cells"] if c[key] is not None])
    if len(frame):
        st.altair_chart(charts.frontier_chart(frame, title), width="stretch", height=440)
    for text in grid["sentences"] or [f"No two cells trade images for pixels within {grid['tolerance']:g}x of each "
                                      "other's training GFLOP: no equal-compute comparison."]:
        st.markdown(text)
    st.caption(f"Each point: one recipe at one size and training subset, test AUC (medmnist) mean ± sd over its "
               f"seeds. {grid['convention'].capitalize()}; {grid['seconds_text']}. Diamonds and the dashed line: the "
               "Pareto frontier (no other point has no more compute and no lower AUC). Equal compute: cells within "
               f"{grid['tolerance']:g}x of each other's training GFLOP, paired on the same test images, seed-aware, "
               "Holm-adjusted over the pairs.")
