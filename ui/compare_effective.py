"""Compare's "Which pixels matter" section: a larger model tested at effective resolutions beside runs trained
at those sizes, what the gap says, and which findings gain or lose with resolution (core.evaluate.effective,
core.runs.groups, core.metrics.decisions)."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from core import metrics
from core.errors import UserError
from core.evaluate import effective as EF
from core.runs import groups as G
from core.runs import record as runs
from ui import charts
from ui import compare_data as CD
from ui.common import file_mtime


def _tested(g: CD.Group) -> list[str]:
    return [str(run["info"].path) for run in g.runs if run["test"]]


@st.cache_data(max_entries=16, show_spinner=False)
def _curve(dirs: tuple[str, ...], sizes: tuple[int, ...], mtimes: tuple[float, ...]) -> list[dict]:
    return EF.effective_curve(list(dirs), sizes, n_boot=CD.N_BOOT)


@st.cache_data(max_entries=32, show_spinner=False)
def _gap(low: tuple[str, ...], high: tuple[str, ...], r: int, mtimes: tuple[float, ...]) -> dict:
    return EF.information_or_training(list(low), list(high), r, n_boot=CD.N_BOOT)


@st.cache_data(max_entries=32, show_spinner=False)
def _difference(a: tuple[str, ...], b: tuple[str, ...], mtimes: tuple[float, ...]) -> dict:
    return G.group_difference(list(a), list(b), n_boot=CD.N_BOOT)


def _mtimes(dirs: list[str]) -> tuple[float, ...]:
    """What the cached results depend on: each run's test scores and best checkpoint."""
    return tuple(file_mtime(runs.scores_path(d, "test")) for d in dirs) + tuple(
        file_mtime(runs.checkpoint_path(d, "best")) for d in dirs)


def effective_section(groups: list[CD.Group]) -> None:
    st.header("Which pixels matter")
    tested = [g for g in groups if g.size and _tested(g)]
    if not tested:
        st.info("Pick tested runs to see how their test AUC changes with the detail in the images.")
        return
    top = st.selectbox("Model trained at", tested, index=len(tested) - 1, format_func=lambda g: g.name,
                       key="compare_effective_group",
                       help="Its test images are brought down to each smaller size and back up (bicubic), and "
                            "scored again: does the model use the detail it was given?")
    dirs = _tested(top)
    lower = [g for g in tested if g.recipe == top.recipe and g.size < top.size]
    sizes = tuple(sorted({r for r in EF.GRID if r < top.size} | {g.size for g in lower}))
    try:  # the run's own data file is needed (and checked) to score its test images again
        have = [EF.effective_scores(d, sizes, cached_only=True) for d in dirs]
        if any(("resampled", r) not in h for h in have for r in sizes):
            ask = st.empty()  # the offer goes once the scores are there
            with ask.container():
                st.caption(f"Not scored yet: {len(dirs)} run(s) x {len(sizes)} effective sizes "
                           f"({', '.join(map(str, sizes))} px); kept in each run folder afterwards.")
                go = st.button(f"Score {len(dirs) * len(sizes)} degraded test sets", key="compare_effective_go")
            if not go:
                return
            with st.spinner("Scoring the test images at each effective size..."):
                for d in dirs:
                    EF.effective_scores(d, sizes)
            ask.empty()
        curve = _curve(tuple(dirs), sizes, _mtimes(dirs))
    except UserError as e:
        st.info(f"No effective-resolution curve for {top.name}: {e}")
        return
    points = [{"series": f"{top.name}, tested at r" + (" (the data's own r px file)" if p["source"] == "file" else ""),
               "kind": "tested at r", "size": p["effective_size"], "auc": p["auc"],
               "lo": p["native_auc"] + p["ci"][0], "hi": p["native_auc"] + p["ci"][1]} for p in curve]
    points.append({"series": f"{top.name}, tested at r", "kind": "tested at r", "size": top.size,
                   "auc": curve[0]["native_auc"] if curve else None, "lo": None, "hi": None})
    for g in lower:
        aucs = pd.Series([run["test"]["auc"] for run in g.runs if run["test"]], dtype=float)
        sd = aucs.std() if len(aucs) > 1 else 0.0
        points.append({"series": "trained at r (mean ± sd over seeds)", "kind": "trained at r", "size": g.size,
                       "auc": aucs.mean(), "lo": aucs.mean() - sd, "hi": aucs.mean() + sd})
    st.altair_chart(charts.effective_chart(pd.DataFrame(points)), width="stretch", height=440)
    st.caption("Line: the chosen model on its own test images with less detail (band: its paired 95% interval of "
               "the change, seed-aware); diamonds: runs of the same recipe trained at that size. The gap between "
               "the two at one size says whether a model trained there is limited by the information or by its "
               "training.")
    for g in lower:
        try:
            gap = _gap(tuple(_tested(g)), tuple(dirs), g.size, _mtimes(_tested(g) + dirs))
        except (UserError, metrics.PairingError) as e:
            st.caption(f"{g.name}: not compared ({e})")
            continue
        st.markdown(f"**{g.size} px.** " + gap["words"].replace("*", r"\*"))
    findings_part(top, lower)


def findings_part(top: CD.Group, lower: list[CD.Group]) -> None:
    st.subheader("Which findings need pixels")
    if not lower:
        st.info("Pick runs of the same recipe at a smaller size to see which findings gain from resolution.")
        return
    low = st.selectbox("Against", lower, index=0, format_func=lambda g: g.name, key="compare_findings_low")
    try:
        result = _difference(tuple(_tested(top)), tuple(_tested(low)), _mtimes(_tested(top) + _tested(low)))
    except (UserError, metrics.PairingError) as e:
        st.info(f"Not paired: {e}")
        return
    rows, apart_rows = EF.finding_rows(result)
    frame = pd.DataFrame(rows).rename(columns={"ci_low": "lo", "ci_high": "hi"})
    apart = [f"{r['finding']} ({r['positives']} positives)" for r in apart_rows]
    if len(frame):
        st.altair_chart(charts.findings_chart(frame), width="stretch", height=24 * len(frame) + 140)
    st.caption(f"Test AUC of {top.name} minus {low.name}, per finding, paired on the same {result['n_images']} test "
               f"images (seed-aware); p adjusted over the {len(frame)} findings compared (Holm). "
               + (f"Too few test positives (under {result['min_positives']}) for a verdict: {', '.join(apart)}."
                  if apart else "Every finding had enough test positives."))
    table = frame.rename(columns={"lo": "ci_low", "hi": "ci_high"})
    st.download_button("Download the per-finding table (CSV)", table.to_csv(index=False), "findings.csv",
                       "text/csv", key="compare_findings_csv")
