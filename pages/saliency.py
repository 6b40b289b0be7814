"""Saliency: one test image, the run's predictions for it, and where the model looked (Grad-CAM).

Images are browsed by index, by finding, by outcome at the run's saved thresholds, or by
confidence; the same test image is then shown through every other run on the same data file
family (same data root, any size: the test order is the same across sizes).
"""
from __future__ import annotations

from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from core import saliency as S
from core import thresholds as T
from core.data import CLASS_NAMES, N_CLASSES, DataError
from core import runs
from core.runs import RunError, RunInfo
from pages.common import (evaluated_runs, file_mtime, load_data, load_model, load_scores, pick_run,
                          through_app)

MODES = ("Index", "Finding", "Outcome", "Confidence")
OUTCOMES = ("TP", "FP", "FN", "TN")
SHOW_PX = 256


def _big(rgb_or_gray: np.ndarray, px: int = SHOW_PX) -> np.ndarray:
    """Nearest-neighbour upscale for display: every model pixel stays a visible square."""
    return np.asarray(Image.fromarray(rgb_or_gray).resize((px, px), Image.NEAREST))


def _same_root(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except OSError:
        return False


def _run_test_set(info: RunInfo):
    """(images, scores, labels) of a run's test split, checked to be the images it was scored on."""
    if not info.data_root or not info.size:
        raise RunError(f"The config of run {info.id} does not record its data root and size.")
    scores, labels = load_scores(info.path, "test")
    data = load_data(info.data_root, info.size)
    if len(data.test) != len(scores) or not np.array_equal(data.test.labels, labels):
        raise RunError(f"The test split of {data.path} ({len(data.test):,} images) is not the one this run was "
                       f"scored on ({len(scores):,} images): the data file changed since. Re-evaluate with "
                       f"`python -m core.evaluate {info.path}`.")
    return data.test.images, scores, labels


def _thresholds(info: RunInfo) -> tuple[np.ndarray, str | None]:
    try:
        return T.load_thresholds(runs.thresholds_path(info.path), CLASS_NAMES), None
    except T.ThresholdFileError as e:
        return np.full(N_CLASSES, T.FALLBACK_THRESHOLD), str(e)


@st.cache_data(max_entries=256, show_spinner=False)
def _cam(run_dir: str, mtime: float, image: np.ndarray, c: int) -> np.ndarray:
    """Grad-CAM map of one image for class c, cached until the best checkpoint changes (`mtime`): moving the
    opacity slider or changing the colour map redraws the overlay without a backward pass."""
    return S.grad_cam(load_model(run_dir), image[None], c)[0]


def _cam_image(info: RunInfo, image: np.ndarray, c: int, alpha: float, cmap: str) -> tuple[np.ndarray, bool]:
    """(upscaled overlay, whether the map is empty: no positive evidence for class c anywhere)."""
    cam = _cam(str(info.path), file_mtime(runs.checkpoint_path(info.path, "best")), image, c)
    return _big(S.overlay(image, cam, alpha, cmap)), not cam.any()


def _empty_note(empty: bool, c: int) -> str:
    return f" · empty map: nothing in the image raises {CLASS_NAMES[c]}" if empty else ""


def _probability_chart(prob: np.ndarray, thr: np.ndarray, truth: np.ndarray, chosen: int) -> alt.LayerChart:
    df = pd.DataFrame({"Finding": CLASS_NAMES, "Probability": prob, "Threshold": thr,
                       "Truth": np.where(truth == 1, "present", "absent"),
                       "Predicted": np.where(prob >= thr, "present", "absent"),
                       "Chosen": np.arange(N_CLASSES) == chosen})
    y = alt.Y("Finding:N", sort=list(CLASS_NAMES), title=None, axis=alt.Axis(labelOverlap=False))
    tooltip = ["Finding", alt.Tooltip("Probability", format=".3f"), alt.Tooltip("Threshold", format=".3f"),
               "Truth", "Predicted"]
    bars = alt.Chart(df).mark_bar().encode(
        x=alt.X("Probability:Q", scale=alt.Scale(domain=[0, 1]), title="Predicted probability"), y=y,
        color=alt.Color("Truth:N", scale=alt.Scale(domain=["present", "absent"], range=["#d62728", "#9ecae1"]),
                        title="True label", legend=alt.Legend(orient="top")),
        opacity=alt.condition("datum.Chosen", alt.value(1.0), alt.value(0.75)), tooltip=tooltip)
    ticks = alt.Chart(df).mark_tick(color="black", thickness=2, size=16).encode(x="Threshold:Q", y=y, tooltip=tooltip)
    return alt.layer(bars, ticks).properties(height=alt.Step(22), title="Probability · tick = threshold")


through_app()
st.title("Saliency")
st.caption("Grad-CAM shows which parts of the image raised the model's score for a finding (its last "
           "convolution layer, upsampled; each map is scaled to its own maximum, so compare strengths "
           "by the probability, not the colour).")

available = evaluated_runs()
info = pick_run(available)
if info is None:
    st.stop()
try:
    images, scores, labels = _run_test_set(info)
except (RunError, DataError) as e:
    st.error(f"{e}")
    st.stop()
thr, thr_error = _thresholds(info)
if thr_error:
    st.error(f"{thr_error} Outcomes below use {T.FALLBACK_THRESHOLD:g} for every finding until then "
             "(save thresholds on the **Thresholds** page).")
n = len(images)

# --- which image -----------------------------------------------------------------------------
top = st.columns([1, 1, 1])
c = top[0].selectbox("Finding", range(N_CLASSES), key="sal_class", format_func=lambda i: CLASS_NAMES[i],
                     help="Used to filter images and for the Grad-CAM map.")
mode = top[1].radio("Browse test images by", MODES, key="sal_mode", horizontal=True)
if mode == "Index":
    st.session_state["sal_index"] = min(max(int(st.session_state.get("sal_index", 0)), 0), n - 1)
    idx = int(top[2].number_input(f"Test image index (0–{n - 1})", 0, n - 1, step=1, key="sal_index"))
else:
    if mode == "Finding":
        candidates, what = np.flatnonzero(labels[:, c] == 1), f"positive for {CLASS_NAMES[c]}"
        detail = None
    elif mode == "Outcome":
        outcome = top[2].radio(f"Outcome at threshold {thr[c]:.3f}", OUTCOMES, key="sal_outcome", horizontal=True)
        pred, truth = scores[:, c] >= thr[c], labels[:, c] == 1
        mask = {"TP": pred & truth, "FP": pred & ~truth, "FN": ~pred & truth, "TN": ~pred & ~truth}[outcome]
        candidates, what, detail = np.flatnonzero(mask), f"{outcome} for {CLASS_NAMES[c]}", outcome
    else:
        order = top[2].radio("Order", ("Highest first", "Lowest first"), key="sal_order", horizontal=True)
        ranked = np.argsort(-scores[:, c], kind="stable")
        candidates = ranked if order == "Highest first" else ranked[::-1]
        what, detail = f"sorted by probability of {CLASS_NAMES[c]}, {order.lower()}", order
    signature = (info.id, mode, c, detail)
    if st.session_state.get("sal_filter") != signature:
        st.session_state["sal_filter"] = signature
        st.session_state["sal_pos"] = 1
    if len(candidates) == 0:
        st.info(f"No test image is {what}. Pick another finding or outcome.")
        st.stop()
    st.session_state["sal_pos"] = min(max(int(st.session_state.get("sal_pos", 1)), 1), len(candidates))
    pos = st.number_input(f"Image k of {len(candidates):,} {what}", 1, len(candidates), step=1, key="sal_pos")
    idx = int(candidates[int(pos) - 1])

image, prob, truth = images[idx], scores[idx], labels[idx]
present = [CLASS_NAMES[k] for k in np.flatnonzero(truth)]
st.subheader(f"Test image {idx}")
st.markdown("**True findings:** " + (", ".join(present) if present else "none (no finding)"))

# --- image, Grad-CAM, probabilities ----------------------------------------------------------
view = st.columns([1, 1, 1.4])
with view[1]:
    alpha = st.slider("Map opacity", 0.0, 1.0, 0.45, 0.05, key="sal_alpha")
    cmap = st.selectbox("Colour map", S.COLORMAPS, key="sal_cmap")
view[0].image(_big(image), caption=f"Test image {idx} · {info.size} px", output_format="PNG")
own_cam = None  # (overlay, empty) of the selected run, reused in the panels below
try:
    own_cam = _cam_image(info, image, c, alpha, cmap)
    view[1].image(own_cam[0], output_format="PNG", caption=f"Grad-CAM · {CLASS_NAMES[c]} · p = {prob[c]:.3f} "
                                                           f"(threshold {thr[c]:.3f}){_empty_note(own_cam[1], c)}")
except RunError as e:
    view[1].error(f"No Grad-CAM for this run: {e}")
view[2].altair_chart(_probability_chart(prob, thr, truth, c), width="stretch")

# --- the same image through the other runs ---------------------------------------------------
st.subheader("Same image at every resolution")
others, skipped = [], []
for other in available:
    if other.id == info.id or not _same_root(other.data_root, info.data_root):
        continue
    try:
        o_scores, o_labels = load_scores(other.path, "test")
    except RunError:
        skipped.append(other.id)
        continue
    if len(o_scores) == n and np.array_equal(o_labels, labels):
        others.append(other)
    else:
        skipped.append(other.id)
others.sort(key=lambda r: (r.size or 0, r.id))
if not others:
    st.info("No other evaluated run on this data root with the same test split. Train this data at another "
            "size on the **Train** page to compare what each resolution looks at.")
else:
    st.caption(f"Grad-CAM for **{CLASS_NAMES[c]}** of test image {idx} through each run on {info.data_root}: "
               "★ the selected run, then the others by size; the ? under a panel gives its run id.")
    per_row = 4
    panels = [info] + others
    for start in range(0, len(panels), per_row):
        cols = st.columns(per_row)
        for col, run in zip(cols, panels[start:start + per_row]):
            with col:
                label = f"{'★ ' if run is info else ''}{run.size} px · {run.model}"
                try:
                    if run is info:
                        if own_cam is None:  # its error is shown above
                            st.caption(f"{label}: no Grad-CAM (see above).")
                            continue
                        (rgb, empty), p_run, t_run = own_cam, prob[c], thr[c]
                    else:
                        o_images, o_scores, _ = _run_test_set(run)
                        rgb, empty = _cam_image(run, o_images[idx], c, alpha, cmap)
                        p_run, t_run = o_scores[idx, c], _thresholds(run)[0][c]
                    st.image(rgb, output_format="PNG", caption=f"{label} · p = {p_run:.3f}")
                    st.caption(f"threshold {t_run:.3f}" + (" · empty map" if empty else ""),
                               help=f"Run {run.id}" + (f". Empty map: nothing in the image raises {CLASS_NAMES[c]}."
                                                       if empty else "."))
                except (RunError, DataError) as e:
                    st.error(f"{label} ({run.id}): {e}")
if skipped:
    st.caption(f"Not shown (different test split or unreadable scores): {', '.join(skipped)}.")
