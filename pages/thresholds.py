"""Thresholds: per-class decision thresholds of a run, their precision/sensitivity trade-off, saved back.

Thresholds are chosen on VALIDATION scores (presets via core.metrics.thresholds.choose, or by hand);
the test split only shows what those thresholds give, never chooses them. The page saves to the
user's own file (core.runs.user_thresholds_path), never over the set evaluation chose on
validation, and can go back to that set.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st
from sklearn.metrics import precision_recall_curve, roc_curve

from core import metrics
from core.runs import record as runs
from core.runs import folder as runs_folder
from core.metrics import thresholds as T
from core.data.chestmnist import CLASS_NAMES, N_CLASSES
from core.runs.record import RunError
from ui.common import evaluated_runs, file_mtime, load_scores, pick_run, runs_dir, through_app

PRESETS = {
    "0.5": ("fixed", {"value": 0.5}),
    "Global 0.3 (the study's)": ("fixed", {"value": 0.3}),
    "Youden's J": ("youden", {}),
    "F1-optimal": ("f1", {}),
    "Sensitivity at least X": ("sensitivity", {}),
}
MAX_CURVE_POINTS = 800


def _key(c: int) -> str:
    return f"thr_{c}"


def _fmt(x: float) -> str:
    return "undefined" if x is None or not np.isfinite(x) else f"{x:.4f}"


@st.cache_data(max_entries=32, show_spinner=False)
def _auc_per_class(run_dir: str, split: str, mtime: float) -> np.ndarray:
    scores, labels = load_scores(run_dir, split)
    return metrics.auc_per_class(labels, scores)


def _thin(df: pd.DataFrame, n: int = MAX_CURVE_POINTS) -> pd.DataFrame:
    """Keep at most n points of a curve (ends included): enough to draw, cheap to send."""
    if len(df) <= n:
        return df
    return df.iloc[np.unique(np.linspace(0, len(df) - 1, n).round().astype(int))]


@st.cache_data(max_entries=64, show_spinner=False)
def _curves(run_dir: str, split: str, c: int, mtime: float) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """(ROC, PR) points of class c on the split; None when it lacks positives or negatives."""
    scores, labels = load_scores(run_dir, split)
    y, s = labels[:, c], scores[:, c]
    if y.all() or not y.any():
        return None
    fpr, tpr, _ = roc_curve(y, s)
    precision, recall, _ = precision_recall_curve(y, s)
    roc = pd.DataFrame({"False positive rate (1 − specificity)": fpr, "Sensitivity": tpr})
    pr = pd.DataFrame({"Sensitivity (recall)": recall, "Precision": precision})
    return _thin(roc), _thin(pr)


def _set_thresholds(choice: T.ThresholdChoice) -> None:
    """Put exact values in the sliders' state (off the slider grid if need be: the table shows core's
    numbers), with the choice's method and fallback classes."""
    for c in range(N_CLASSES):
        st.session_state[_key(c)] = float(choice.thresholds[c])
    st.session_state["thr_method"] = choice.method
    st.session_state["thr_fallback"] = list(choice.fallback)
    st.session_state["thr_tuned_on_test"] = False


def _apply_preset(val_labels: np.ndarray, val_scores: np.ndarray) -> None:
    method, kw = PRESETS[st.session_state["thr_preset"]]
    if method == "sensitivity":
        kw = {"target": float(st.session_state["thr_target"])}
    _set_thresholds(T.choose(method, val_labels, val_scores, **kw))


def _moved() -> None:
    st.session_state["thr_method"] = "manual"
    if st.session_state.get("thr_on_test"):
        st.session_state["thr_tuned_on_test"] = True


def _json_bytes(values: np.ndarray, method: str, fallback: list[int], split: str) -> bytes:
    """The file save_thresholds writes, as bytes (written to a temp folder and read back)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "choice.json"
        T.save_thresholds(path, T.ThresholdChoice(np.asarray(values), method, fallback), CLASS_NAMES, split=split)
        return path.read_bytes()


def _curve_chart(df: pd.DataFrame, x: str, y: str, point: dict, title: str, diagonal: bool) -> alt.LayerChart:
    axis = alt.Scale(domain=[0, 1])
    layers = []
    if diagonal:
        layers.append(alt.Chart(pd.DataFrame({x: [0, 1], y: [0, 1]})).mark_line(strokeDash=[4, 4], color="gray")
                      .encode(x=alt.X(x, scale=axis), y=alt.Y(y, scale=axis)))
    layers.append(alt.Chart(df).mark_line().encode(x=alt.X(x, scale=axis), y=alt.Y(y, scale=axis)))
    layers.append(alt.Chart(pd.DataFrame([point])).mark_point(filled=True, size=140, color="crimson")
                  .encode(x=x, y=y, tooltip=[alt.Tooltip(k, format=".3f") if k != "Threshold" else k for k in point]))
    return alt.layer(*layers).properties(title=title, height=300)


@st.cache_resource(max_entries=64, show_spinner=False)
def _curve_charts(run_dir: str, split: str, c: int, mtime: float, threshold: float, recall: float, fpr: float,
                  precision: float, auc_text: str) -> tuple[alt.LayerChart, alt.LayerChart] | None:
    """ROC and PR charts of class c with the operating point marked.

    Built once per operating point: moving another class's slider re-sends the same charts
    (building an altair chart validates it against the Vega-Lite schema, tens of ms each).
    """
    curves = _curves(run_dir, split, c, mtime)
    if curves is None:
        return None
    roc, pr = curves
    thr = f"{threshold:.3f}"
    return (_curve_chart(roc, *roc.columns, {roc.columns[0]: fpr, roc.columns[1]: recall, "Threshold": thr},
                         f"ROC · {CLASS_NAMES[c]} · AUC {auc_text}", True),
            _curve_chart(pr, *pr.columns, {pr.columns[0]: recall, pr.columns[1]: precision, "Threshold": thr},
                         f"Precision-recall · {CLASS_NAMES[c]}", False))


through_app()
st.title("Thresholds")
st.caption("Each finding is predicted present when its probability is at least its threshold. Thresholds are "
           "chosen on the **validation** split; the test split shows what they give on unseen images.")

info = pick_run(evaluated_runs())
if info is None:
    st.stop()

try:
    val_scores, val_labels = load_scores(info.path, "val")
    test_scores, test_labels = load_scores(info.path, "test")
except RunError as e:
    st.error(f"{e}")
    st.stop()
if val_scores.shape[1] != N_CLASSES:
    st.error(f"{info.path}: its scores have {val_scores.shape[1]} classes, not the {N_CLASSES} ChestMNIST findings. "
             "Re-evaluate the run with `python -m core.evaluate`.")
    st.stop()

user_path, chosen_path = runs.user_thresholds_path(info.path), runs.chosen_thresholds_path(info.path)


def _load_set(path: Path) -> None:
    """Start the sliders from the file at `path` (Youden's J on validation, with the error, if it is unreadable)."""
    try:
        _set_thresholds(T.load_choice(path, CLASS_NAMES))
        st.session_state["thr_file_error"] = None
    except T.ThresholdFileError as e:
        _set_thresholds(T.choose("youden", val_labels, val_scores))
        st.session_state["thr_file_error"] = str(e)
    st.session_state["thr_shown"] = path.name


source = (info.id, file_mtime(user_path), file_mtime(chosen_path))
if st.session_state.get("thr_source") != source:
    st.session_state["thr_source"] = source
    _load_set(user_path if user_path.is_file() else chosen_path)
if st.session_state.get("thr_file_error"):
    st.error(f"{st.session_state['thr_file_error']} The sliders start from Youden's J on validation instead; "
             "**Save thresholds to run** writes a valid file.")
shown = st.session_state.get("thr_shown")
if shown == user_path.name:
    st.caption(f"Showing **your saved thresholds** (`{user_path.name}`). The set chosen on validation when the run "
               f"was evaluated (`{chosen_path.name}`) is kept apart; **Back to the validation-chosen set** loads it.")
elif shown == chosen_path.name:
    st.caption(f"Showing the thresholds **chosen on validation** when the run was evaluated (`{chosen_path.name}`). "
               f"Saving writes your own set (`{user_path.name}`) beside it; evaluation never overwrites yours.")

# --- presets ---------------------------------------------------------------------------------
with st.container(border=True):
    left, mid, right = st.columns([3, 1, 1], vertical_alignment="bottom")
    left.radio("Preset (chosen on validation)", list(PRESETS), key="thr_preset", horizontal=True, index=2)
    mid.number_input("X (sensitivity)", 0.0, 1.0, 0.8, 0.05, key="thr_target", format="%.2f",
                     disabled=st.session_state["thr_preset"] != "Sensitivity at least X",
                     help="For the sensitivity preset: each class gets its highest threshold that still "
                          "finds at least this fraction of its validation positives.")
    right.button("Apply preset", key="thr_apply", on_click=_apply_preset, args=(val_labels, val_scores),
                 type="primary")

on_test = st.toggle("Show on test", key="thr_on_test",
                    help="Show what these validation-chosen thresholds give on the test split.")
split = "test" if on_test else "val"
scores, labels = (test_scores, test_labels) if on_test else (val_scores, val_labels)
split_name = "TEST" if on_test else "validation"
if on_test:
    st.info("Showing the **test** split at thresholds chosen on validation. Tune on validation: moving sliders "
            "while looking at test numbers tunes on test.")

# --- sliders ---------------------------------------------------------------------------------
method = st.session_state["thr_method"]
# Classes without positives or negatives in validation: no threshold can be chosen there, whatever the method.
undefined = T.fallback_classes(val_labels)
with st.expander(f"Per-class thresholds · method: {method}", expanded=True):
    cols = st.columns(2)
    for c, name in enumerate(CLASS_NAMES):
        # A fine step: the first arrow key press moves by 0.001, not onto a coarse grid far from a preset's value.
        cols[c % 2].slider(name, 0.0, 1.0, step=0.001, key=_key(c), format="%.3f", on_change=_moved)
    current = np.array([st.session_state[_key(c)] for c in range(N_CLASSES)], dtype=np.float64)
    if undefined:
        st.caption("No positives or no negatives in validation, so no threshold can be chosen there and the "
                   f"Youden, F1 and sensitivity presets use {T.FALLBACK_THRESHOLD:g}: "
                   + ", ".join(f"{CLASS_NAMES[c]} (now {current[c]:.3f})" for c in undefined) + ".")
# What the file records as fallback: the chosen thresholds' fallback classes (core.metrics.thresholds.choose, or the
# loaded file's) while they still hold the fallback value.
fallback = [c for c in st.session_state["thr_fallback"] if current[c] == T.FALLBACK_THRESHOLD]

# --- metrics at these thresholds -------------------------------------------------------------
tm = metrics.threshold_metrics(labels, scores, current)
aucs = _auc_per_class(str(info.path), split, file_mtime(runs.scores_path(info.path, split)))
defined = np.isfinite(aucs)
mean_auc = float(aucs[defined].mean()) if defined.any() else float("nan")

st.subheader(f"On the {split_name} split ({len(labels):,} images)")
row1 = st.columns(5)
row1[0].metric("AUC (medmnist)", _fmt(mean_auc), help="Mean per-class ROC AUC over classes where it is "
               "defined; threshold-free." + (f" Undefined for: {', '.join(np.array(CLASS_NAMES)[~defined])}."
                                             if not defined.all() else ""))
row1[1].metric("ACC (medmnist, at 0.5)", _fmt(metrics.medmnist_acc(labels, scores)),
               help="medmnist's per-label accuracy at score > 0.5, whatever the sliders say.")
row1[2].metric("Label accuracy (tuned)", _fmt(tm["label_accuracy"]),
               help="Per-label accuracy at the thresholds above (medmnist's ACC uses 0.5 for every class).")
row1[3].metric("Exact-match accuracy", _fmt(tm["exact_match"]), help="Images with all 14 findings right.")
row1[4].metric("Macro F1", _fmt(tm["macro_f1"]))
row2 = st.columns(5)
row2[0].metric("Micro F1", _fmt(tm["micro_f1"]))
row2[1].metric("Macro precision", _fmt(tm["macro_precision"]))
row2[2].metric("Macro recall (sensitivity)", _fmt(tm["macro_recall"]))
row2[3].metric("Micro precision", _fmt(tm["micro_precision"]))
row2[4].metric("Micro recall (sensitivity)", _fmt(tm["micro_recall"]))

table = pd.DataFrame({
    "Finding": CLASS_NAMES,
    "Threshold": current,
    "Precision": tm["precision"],
    "Sensitivity": tm["recall"],
    "Specificity": tm["specificity"],
    "F1": tm["f1"],
    "Support": tm["support"].astype(int),
    "TP": tm["tp"].astype(int),
    "FP": tm["fp"].astype(int),
    "FN": tm["fn"].astype(int),
    "TN": tm["tn"].astype(int),
    "AUC": [_fmt(a) for a in aucs],
})
fmt = st.column_config.NumberColumn(format="%.3f")
st.dataframe(table, key="thr_table", hide_index=True, width="stretch", height=(N_CLASSES + 1) * 35 + 3,  # every row
             column_config={k: fmt for k in ("Threshold", "Precision", "Sensitivity", "Specificity", "F1")})

# --- curves ----------------------------------------------------------------------------------
c = st.selectbox("ROC and precision-recall curves for", range(N_CLASSES), key="thr_curve_class",
                 format_func=lambda i: CLASS_NAMES[i])
charts = _curve_charts(str(info.path), split, c, file_mtime(runs.scores_path(info.path, split)), float(current[c]),
                      float(tm["recall"][c]), float(1 - tm["specificity"][c]), float(tm["precision"][c]),
                      _fmt(aucs[c]))
if charts is None:
    st.info(f"{CLASS_NAMES[c]} has no positives (or no negatives) in the {split_name} split: its ROC and PR "
            "curves and AUC are undefined.")
else:
    left, right = st.columns(2)
    left.altair_chart(charts[0], width="stretch")
    right.altair_chart(charts[1], width="stretch")
    st.caption(f"Red point: the current threshold {current[c]:.3f} on the {split_name} split.")

# --- save ------------------------------------------------------------------------------------
tuned_on_test = bool(st.session_state.get("thr_tuned_on_test"))
chosen_on = "test" if tuned_on_test else "val"
if tuned_on_test:  # said before the Save button, not after it: the choice is the user's to make knowingly
    st.warning("Sliders were moved while the test split was shown: saving records them as **chosen on test**, "
               "and test numbers at these thresholds are then no longer an honest estimate. Apply a preset or "
               "go **Back to the validation-chosen set** to tune on validation again.")
left, right = st.columns(2)
if left.button("Save thresholds to run", key="thr_save", type="primary",
               help=f"Writes your set, {user_path}; the Saliency page uses it. The validation-chosen set stays."):
    try:
        runs_folder.check_runs_dir(runs_dir())
        T.save_thresholds(user_path, T.ThresholdChoice(current, method, fallback), CLASS_NAMES, split=chosen_on)
        st.session_state["thr_source"] = (info.id, file_mtime(user_path), file_mtime(chosen_path))
        st.session_state["thr_shown"] = user_path.name
        st.success(f"Saved {method} thresholds to {user_path}.")
    except RunError as e:
        st.error(f"Not saved: {e}")
    except (OSError, ValueError) as e:
        st.error(f"Could not write {user_path}: {e}. Check that the runs folder is writable.")
if chosen_path.is_file():
    left.button("Back to the validation-chosen set", key="thr_revert", on_click=_load_set, args=(chosen_path,),
                help=f"Load {chosen_path.name} into the sliders; your saved file is kept until you save again.")
right.download_button("Download thresholds JSON", key="thr_download", file_name=f"thresholds-{info.id}.json",
                      mime="application/json",
                      data=lambda: _json_bytes(current, method, fallback, chosen_on), on_click="ignore")
