"""Compare's calibration section: reliability diagrams, ECE, Brier and operating points per class.

Not a page (app.py lists the pages). The diagrams are computed from each run's saved test scores
(core.metrics.reliability); the per-class table reads the figures every run's test metrics
carry (core.metrics.summarize), with the positives each number rests on beside it.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from core.data import chestmnist as D
from core import metrics as M
from core.runs import record as runs
from ui import charts
from ui.common import file_mtime, load_scores

POOLED = "pooled (every class with positives and negatives)"
# Short headers for the tables (each must fit a 1400 px window beside the run or class column); the long
# names are the columns' help.
SHORT = {"ECE (pooled)": "ECE pooled", "ECE (mean over classes)": "ECE class mean",
         "sensitivity at 90% specificity (mean)": "sens @ 90% spec", "sensitivity at 95% specificity (mean)": "sens @ 95% spec",
         "sensitivity at 90% specificity": "sens @ 90% spec", "sensitivity at 95% specificity": "sens @ 95% spec",
         "specificity at 90% sensitivity": "spec @ 90% sens", "specificity at 95% sensitivity": "spec @ 95% sens"}


def _number(label: str, fmt: str) -> st.column_config.NumberColumn:
    return st.column_config.NumberColumn(SHORT.get(label, label), format=fmt, help=label)
PER_CLASS = {"support": "test positives", "auc": "test AUC", "ece": "ECE", "brier": "Brier",
             "sens_at_spec90": "sensitivity at 90% specificity", "sens_at_spec95": "sensitivity at 95% specificity",
             "spec_at_sens90": "specificity at 90% sensitivity", "spec_at_sens95": "specificity at 95% sensitivity"}


@st.cache_data(max_entries=32, show_spinner=False)
def _calibration(run_dir: str, mtime: float) -> dict:
    scores, labels = load_scores(run_dir, "test")
    return M.calibration(labels, scores)


def reliability_frame(loaded: list[dict], names: dict[str, str], which: str) -> pd.DataFrame:
    """Reliability bins per run for one class or pooled; empty bins left out."""
    recs = []
    for run in loaded:
        path = run["info"].path
        if not runs.has_scores(path, "test"):
            continue
        try:
            cal = _calibration(str(path), file_mtime(runs.scores_path(path, "test")))
        except runs.RunError:  # damaged scores: that run has no diagram; its error shows above the tables
            continue
        if which == POOLED:
            bins = cal["pooled"]
        else:
            c = D.CLASS_NAMES.index(which)
            bins = {k: cal[k][c] for k in ("count", "mean_score", "frac_pos")}
        for i, (n, mean, frac) in enumerate(zip(bins["count"], bins["mean_score"], bins["frac_pos"])):
            if n > 0 and np.isfinite(mean):
                recs.append({"series": names[run["info"].id], "run id": run["info"].id, "bin": f"{i / 10:.1f}–{(i + 1) / 10:.1f}",
                             "count": int(n), "mean_score": float(mean), "frac_pos": float(frac)})
    return pd.DataFrame(recs, columns=["series", "run id", "bin", "count", "mean_score", "frac_pos"])


def pooled_frame(loaded: list[dict], names: dict[str, str]) -> pd.DataFrame:
    """Per run: pooled ECE, mean ECE and Brier over classes, and the mean operating points."""
    out = []
    for run in loaded:
        test = run["test"]
        if not test:
            continue
        per_class = test.get("per_class") or {}

        def mean(key):
            values = [v[key] for v in per_class.values() if v.get(key) is not None]
            return float(np.mean(values)) if values else None
        out.append({"run": names[run["info"].id], "ECE (pooled)": test.get("ece"), "ECE (mean over classes)": test.get("ece_macro"),
                    "Brier": test.get("brier"), "sensitivity at 90% specificity (mean)": mean("sens_at_spec90"),
                    "sensitivity at 95% specificity (mean)": mean("sens_at_spec95")})
    return pd.DataFrame(out)


def class_frame(run: dict) -> pd.DataFrame:
    """One row per class: positives first, then AUC, ECE, Brier and the operating points."""
    per_class = (run["test"] or {}).get("per_class") or {}
    return pd.DataFrame([{"class": c, **{label: (per_class.get(c) or {}).get(key) for key, label in PER_CLASS.items()}}
                         for c in D.CLASS_NAMES])


def calibration_section(loaded: list[dict], names: dict[str, str]) -> None:
    st.header("Calibration and operating points (test)")
    tested = [run for run in loaded if run["test"]]
    if not tested:
        st.info("None of the selected runs has test metrics yet.")
        return
    which = st.selectbox("Reliability diagram of", [POOLED, *D.CLASS_NAMES], key="compare_calibration_class")
    rel = reliability_frame(tested, names, which)
    if len(rel):
        st.altair_chart(charts.reliability_chart(rel, [names[run["info"].id] for run in tested]), width="stretch")
    st.caption("Ten equal-width probability bins; a point's size is the (image, class) pairs in its bin; on the dashed "
               "diagonal a predicted 30% comes true 30% of the time. A loss weighted by pos_weight pushes rare "
               "findings' probabilities up on purpose, so ECE measures that choice as much as the model.")
    st.dataframe(pooled_frame(tested, names), hide_index=True, key="compare_calibration_runs",
                 column_config={"run": st.column_config.TextColumn(width="medium"), **{k: _number(k, "%.4f") for k in (
                     "ECE (pooled)", "ECE (mean over classes)", "Brier", "sensitivity at 90% specificity (mean)",
                     "sensitivity at 95% specificity (mean)")}})
    by_name = {names[run["info"].id]: run for run in tested}
    pick = st.selectbox("Per class, for run", list(by_name), key="compare_calibration_run")
    st.dataframe(class_frame(by_name[pick]), hide_index=True, key="compare_calibration_classes",
                 column_config={"test positives": st.column_config.NumberColumn("positives", format="%d",
                                                                                help="test positives"),
                                **{label: _number(label, "%.3f") for key, label in PER_CLASS.items() if key != "support"}})
    st.caption("Operating points are read off the test ROC curve (as AUC is): they describe the curve, not thresholds "
               "chosen in advance (choose those on validation, on the Thresholds page). Empty: undefined for a class "
               "without positives or negatives. Few positives make any per-class number uncertain.")
