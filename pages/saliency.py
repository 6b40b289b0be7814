"""Saliency: one test image, the run's predictions for it, where the model looked, and how far to trust it.

Images are browsed by index, by finding, by outcome at the run's saved thresholds, or by
confidence; the page opens on a true positive at those thresholds (see _opening). Maps come
from the chosen method (core.explain.saliency), one per true finding, with the image's deletion and
insertion curves; checks over a set of images (core.explain.sanity) run on request. The same test image
is shown through the runs the user picks on the same data file family (same data root, any size).
"""
from __future__ import annotations

from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from core.errors import UserError
from core.explain import saliency as S
from core.explain import sanity as Q
from core.metrics import thresholds as T
from core.metrics import bootstrap_auc_ci
from core.data.chestmnist import CLASS_NAMES, N_CLASSES, DataError
from core.runs import checkpoints
from core.runs import groups as G
from core.runs import record as runs
from core.runs.record import RunError
from core.runs.folder import RunInfo
from ui.common import (evaluated_runs, file_mtime, load_data, load_scores, pick_run, run_label, through_app)

MODES = ("Index", "Finding", "Outcome", "Confidence")
OUTCOMES = ("TP", "FP", "FN", "TN")
SHOW_PX = 256
PROB_ROW_PX = 22  # a finding's bar in the probability chart; PROB_CHART_PX adds its title, legend and axis
PROB_CHART_PX = PROB_ROW_PX * N_CLASSES + 110


@st.cache_resource(max_entries=8, show_spinner="Loading model…")
def _load_model(run_dir: str, mtime: float):
    return checkpoints.load_model(run_dir, "best")


def load_model(run_dir: str | Path):
    """The run's best model in eval mode, cached until its best checkpoint changes (raises RunError)."""
    return _load_model(str(run_dir), file_mtime(runs.checkpoint_path(run_dir, "best")))


def _big(rgb_or_gray: np.ndarray, px: int = SHOW_PX) -> np.ndarray:
    """Nearest-neighbour upscale for display: every model pixel stays a visible square."""
    return np.asarray(Image.fromarray(rgb_or_gray).resize((px, px), Image.NEAREST))


def _same_folder(a: RunInfo, b: RunInfo) -> bool:
    """Both runs' data folders resolve to one (core.runs.groups' source of test images)."""
    return bool(a.data_root and b.data_root) and \
        G.images_source({"data_root": a.data_root}) == G.images_source({"data_root": b.data_root})


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


@st.cache_data(max_entries=256, show_spinner="Computing the map…")
def _map(run_dir: str, mtime: float, image: np.ndarray, c: int, method: str) -> np.ndarray:
    """One image's map for class c, cached until the best checkpoint changes (`mtime`): moving the opacity
    slider or changing the colour map redraws the overlay without recomputing it."""
    return S.attribute(load_model(run_dir), image[None], c, method)[0]


def _map_of(info: RunInfo, image: np.ndarray, c: int, method: str) -> np.ndarray:
    return _map(str(info.path), file_mtime(runs.checkpoint_path(info.path, "best")), image, c, method)


def _cam_image(info: RunInfo, image: np.ndarray, c: int, alpha: float, cmap: str,
               method: str) -> tuple[np.ndarray, bool]:
    """(upscaled overlay, whether the map is empty: no positive evidence for class c anywhere)."""
    cam = _map_of(info, image, c, method)
    return _big(S.overlay(image, cam, alpha, cmap)), not cam.any()


def _empty_note(empty: bool, c: int) -> str:
    return f" · empty map: nothing in the image raises {CLASS_NAMES[c]}" if empty else ""


@st.cache_data(max_entries=16, show_spinner=False)
def _auc_ci(run_dir: str, mtime: float, labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    return bootstrap_auc_ci(labels, scores, n_boot=300)


@st.cache_data(max_entries=128, show_spinner=False)
def _curves(run_dir: str, mtime: float, image: np.ndarray, c: int, cam: np.ndarray) -> Q.Faithfulness:
    return Q.faithfulness(load_model(run_dir), image[None], c, cam[None])


CURVE_PLOT_PX = 170  # the curves' plot; CURVE_CHART_PX adds the title, x axis and the two legends below it
CURVE_CHART_PX = CURVE_PLOT_PX + 150


def _curve_chart(f: Q.Faithfulness, title: str) -> alt.Chart:
    """Mean deletion and insertion curves of `f`, solid, with the random-order ones dashed.

    Drawn with height=CURVE_CHART_PX: Streamlit otherwise fits the whole chart, legends included, into the
    plot's own height, and in a narrow column the plot collapsed to a line. The legends sit below the plot,
    one entry per line, so they keep their labels in a third of the window.
    """
    rows = []
    for curve in ("deletion", "insertion", "random_deletion", "random_insertion"):
        kind = curve.split("_")[-1]
        order = "random" if curve.startswith("random") else "salient first"  # short: a third of the window
        for x, y in zip(f.fractions, getattr(f, curve).mean(axis=0)):
            rows.append({"Pixels removed or revealed": x, "Probability": y, "Curve": kind, "Order": order,
                         "Area": float(f.auc(curve).mean())})
    df = pd.DataFrame(rows)
    legend = dict(orient="bottom", direction="vertical", labelLimit=200)
    return alt.Chart(df).mark_line().encode(
        x=alt.X("Pixels removed or revealed:Q", axis=alt.Axis(format="%")),
        y=alt.Y("Probability:Q", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("Curve:N", legend=alt.Legend(**legend)),
        strokeDash=alt.StrokeDash("Order:N", legend=alt.Legend(**legend)),
        tooltip=["Curve", "Order", alt.Tooltip("Area:Q", format=".3f")]).properties(height=CURVE_PLOT_PX, title=title)


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
    # A fixed height, not a step per finding: Streamlit fits charts to their box and drops a step height
    # with a console warning ("Dropping fit-y because spec has discrete height").
    return alt.layer(bars, ticks).properties(height=PROB_ROW_PX * N_CLASSES, title="Probability · tick = threshold")


def _opening(info: RunInfo, scores: np.ndarray, labels: np.ndarray, thr: np.ndarray) -> tuple[int, int, str]:
    """(finding, image, why) to open on: an image the model gets right, so the first map shown is of a real
    detection. Of the findings with a true positive at the run's saved thresholds, the one with the best test
    AUC, and its most confident true positive; with none, the first finding's most confident positive (a miss)."""
    hits = (labels == 1) & (scores >= thr)
    found = np.flatnonzero(hits.any(axis=0))
    if not len(found):
        pool = np.flatnonzero(labels[:, 0] == 1)
        pool = pool if len(pool) else np.arange(len(scores))
        return 0, int(pool[np.argmax(scores[pool, 0])]), (
            f"the most confident {CLASS_NAMES[0]} image: no finding has a true positive at the run's saved thresholds")
    try:
        per_class = runs.read_test_metrics(info.path).get("per_class") or {}
    except RunError:  # no AUC to rank by: the first finding with a true positive
        per_class = {}
    aucs = [per_class.get(CLASS_NAMES[k], {}).get("auc") for k in found]
    c = int(found[int(np.argmax([-1.0 if a is None else a for a in aucs]))])
    pool = np.flatnonzero(hits[:, c])
    return c, int(pool[np.argmax(scores[pool, c])]), (
        f"the most confident true positive for {CLASS_NAMES[c]} at the run's saved threshold ({thr[c]:.3f}), of the "
        "findings with one the best by test AUC")


def _set_checks(info: RunInfo, images: np.ndarray, scores: np.ndarray, labels: np.ndarray, c: int,
                method: str) -> None:
    """Randomisation and mean deletion/insertion over the k most confident true positives, on request."""
    with st.expander("Checks over a set of images: parameter randomisation, deletion and insertion"):
        pos = np.flatnonzero(labels[:, c] == 1)
        if not len(pos):
            st.info(f"No test image is positive for {CLASS_NAMES[c]}: no set to check.")
            return
        k = st.slider("Images (the most confident true positives of the finding)", 1, min(32, len(pos)),
                      min(8, len(pos)), key="sal_set_k")
        chosen = pos[np.argsort(-scores[pos, c], kind="stable")[:k]]
        signature = (info.id, c, method, tuple(chosen.tolist()))
        if st.button("Run the checks", key="sal_run_checks"):
            bar = st.progress(0.0, text="Randomising the model, layer group by layer group…")
            try:
                model = load_model(info.path)
                r = Q.randomisation(model, images[chosen], c, method,
                                    progress=lambda d, t: bar.progress(d / t, text=f"Randomisation: {d}/{t} maps"))
                maps = S.attribute(model, images[chosen], c, method)
                f = Q.faithfulness(model, images[chosen], c, maps)
                st.session_state["sal_checks"] = (signature, r, f)
            except (ValueError, RunError) as e:
                st.error(f"The checks could not run: {e}")
            bar.empty()
        held = st.session_state.get("sal_checks")
        if not held or held[0] != signature:
            st.caption(f"{k} image(s), {S.METHOD_LABELS[method]}, {CLASS_NAMES[c]}: press **Run the checks**.")
            return
        _, r, f = held
        left, right = st.columns(2)
        # Short headers, the long names as help: at 1400 px the table gets half of a column, and the long
        # header pushed the values out of sight.
        df = pd.DataFrame({"Layers re-initialised": r.layers, "Spearman ρ": r.mean()})
        left.dataframe(df, hide_index=True, width="stretch", column_config={
            "Layers re-initialised": st.column_config.TextColumn(width="medium", help="Cumulative, from the head down."),
            "Spearman ρ": st.column_config.NumberColumn(format="%.3f", width="small", help=(
                "Spearman ρ of the maps with the trained model's maps, mean over the images."))})
        left.caption("Near 0 after the head is randomised: the maps depend on the learned weights, as they "
                     "should. Near 1: the method shows the image, not what the model learned.")
        right.altair_chart(_curve_chart(f, f"Mean over {len(f.deletion)} images"), width="stretch",
                           height=CURVE_CHART_PX)


through_app()
st.title("Saliency")
st.caption("A map shows which pixels raised the model's score for a finding in *this* image; each map is "
           "scaled to its own maximum, so compare strengths by the probability, not the colour. It does not "
           "show what a radiologist would look at, nor that the finding is there.")

available = evaluated_runs()
info = pick_run(available)
if info is None:
    st.stop()
try:
    images, scores, labels = _run_test_set(info)
except UserError as e:
    st.error(f"{e}")
    st.stop()
thr, thr_error = _thresholds(info)
if thr_error:
    st.error(f"{thr_error} Outcomes below use {T.FALLBACK_THRESHOLD:g} for every finding until then "
             "(save thresholds on the **Thresholds** page).")
n = len(images)
if n == 0:
    st.error("The run's test split has no images: nothing to explain.")
    st.stop()

# --- which image -----------------------------------------------------------------------------
if "sal_class" not in st.session_state:  # open on an image the model gets right, not image 0
    c, st.session_state["sal_index"], why = _opening(info, scores, labels, thr)
    st.session_state["sal_class"] = c
    st.session_state["sal_opened_on"] = (info.id, c, st.session_state["sal_index"], why)  # why: of this run
top = st.columns([1, 1, 1, 1])
c = top[0].selectbox("Finding", range(N_CLASSES), key="sal_class", format_func=lambda i: CLASS_NAMES[i],
                     help="Used to filter images and for the map.")
method = top[1].selectbox("Method", S.METHODS, key="sal_method", format_func=S.METHOD_LABELS.get,
                          help="Grad-CAM here weights each activation by its own gradient (HiResCAM, Draelos & "
                               "Carin 2020), not by its channel's mean gradient as classic Grad-CAM does; it is "
                               "instant. Guided Grad-CAM is captum's (classic weights times guided backpropagation). "
                               "The others take up to a few seconds per map at 224 px.")
mode = top[2].radio("Browse test images by", MODES, key="sal_mode", horizontal=True)
if mode == "Index":
    st.session_state["sal_index"] = min(max(int(st.session_state.get("sal_index", 0)), 0), n - 1)
    idx = int(top[3].number_input(f"Test image index (0–{n - 1})", 0, n - 1, step=1, key="sal_index"))
else:
    if mode == "Finding":
        candidates, what = np.flatnonzero(labels[:, c] == 1), f"positive for {CLASS_NAMES[c]}"
        detail = None
    elif mode == "Outcome":
        outcome = top[3].radio(f"Outcome at threshold {thr[c]:.3f}", OUTCOMES, key="sal_outcome", horizontal=True)
        pred, truth = scores[:, c] >= thr[c], labels[:, c] == 1
        mask = {"TP": pred & truth, "FP": pred & ~truth, "FN": ~pred & truth, "TN": ~pred & ~truth}[outcome]
        candidates, what, detail = np.flatnonzero(mask), f"{outcome} for {CLASS_NAMES[c]}", outcome
    else:
        order = top[3].radio("Order", ("Highest first", "Lowest first"), key="sal_order", horizontal=True)
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
if st.session_state.get("sal_opened_on", ())[:3] == (info.id, c, idx):
    st.caption(f"Opened on test image {idx}: {st.session_state['sal_opened_on'][3]}.")
st.markdown("**True findings:** " + (", ".join(present) if present else "none (no finding)"))
ci = _auc_ci(str(info.path), file_mtime(runs.scores_path(info.path, "test")), labels, scores)[c]
if not np.isfinite(ci).all():
    st.warning(f"The test set has no positive (or no negative) for {CLASS_NAMES[c]}: the model's AUC for it is "
               "undefined, so nothing says its maps mean anything.")
elif ci[0] <= 0.5:
    st.warning(f"The model's test AUC for {CLASS_NAMES[c]} has a 95% CI of {ci[0]:.2f}–{ci[1]:.2f}, which includes "
               "0.5 (chance): its maps for this finding mean little.")

# --- image, map, probabilities, faithfulness -------------------------------------------------
view = st.columns([1, 1, 1.4])
with view[1]:
    alpha = st.slider("Map opacity", 0.0, 1.0, 0.45, 0.05, key="sal_alpha")
    cmap = st.selectbox("Colour map", S.COLORMAPS, key="sal_cmap")
view[0].image(_big(image), caption=f"Test image {idx} · {info.size} px", output_format="PNG")
own_cam = None  # (overlay, empty) of the selected run, reused in the panels below
label = S.METHOD_LABELS[method]
try:
    own_cam = _cam_image(info, image, c, alpha, cmap, method)
    view[1].image(own_cam[0], output_format="PNG", caption=f"{label} · {CLASS_NAMES[c]} · p = {prob[c]:.3f} "
                                                           f"(threshold {thr[c]:.3f}){_empty_note(own_cam[1], c)}")
    if own_cam[1]:
        view[1].warning(f"Empty map: no pixel raised {CLASS_NAMES[c]}; there is nothing here to read.")
    f = _curves(str(info.path), file_mtime(runs.checkpoint_path(info.path, "best")), image, c, _map_of(info, image, c, method))
    view[0].altair_chart(_curve_chart(f, "Deletion / insertion"), width="stretch", height=CURVE_CHART_PX)
except (RunError, ValueError) as e:
    view[1].error(f"No map for this run: {e}")
view[2].altair_chart(_probability_chart(prob, thr, truth, c), width="stretch", height=PROB_CHART_PX)

if own_cam is not None and present:
    st.subheader("Every true finding of this image")
    cols = st.columns(min(len(present), 4))
    for i, k in enumerate(np.flatnonzero(truth)):
        with cols[i % len(cols)]:
            rgb, empty = _cam_image(info, image, int(k), alpha, cmap, method)
            st.image(rgb, output_format="PNG", caption=f"{CLASS_NAMES[k]} · p = {prob[k]:.3f}"
                                                       + (" · empty map" if empty else ""))
if own_cam is not None:
    _set_checks(info, images, scores, labels, c, method)

# --- the same image through the other runs ---------------------------------------------------
st.subheader("Same image at every resolution")
others, skipped = [], []
for other in available:
    if other.id == info.id or not _same_folder(other, info):
        continue
    try:
        same = G.same_images(info.path, other.path)
    except RunError:
        same = False
    if same:
        others.append(other)
    else:
        skipped.append(other.id)
others.sort(key=lambda r: (r.size or 0, r.id))
if not others:
    st.info("No other evaluated run on this data root with the same test split. Train this data at another "
            "size on the **Train** page to compare what each resolution looks at.")
else:
    by_id = {r.id: r for r in others}
    # One run per other size by default (the selected run's recipe and seed where there is one), so every
    # resolution is on the strip without picking, not the first few runs of one size.
    kin = set(G.one_per_size(info.path, [r.path for r in others]))
    picked = st.multiselect("Runs in the strip", list(by_id), default=[i for i in by_id if str(by_id[i].path) in kin],
                            key="sal_strip", format_func=lambda i: run_label(by_id[i]))
    st.caption(f"{label} for **{CLASS_NAMES[c]}** of test image {idx} through each run on {info.data_root}: "
               "★ the selected run, then the chosen others by size; the ? under a panel gives its run id.")
    per_row = 4
    panels = [info] + [by_id[i] for i in picked]
    for start in range(0, len(panels), per_row):
        cols = st.columns(per_row)
        for col, run in zip(cols, panels[start:start + per_row]):
            with col:
                head = f"{'★ ' if run is info else ''}{run.size} px · {run.model}"
                try:
                    if run is info:
                        if own_cam is None:  # its error is shown above
                            st.caption(f"{head}: no map (see above).")
                            continue
                        (rgb, empty), p_run, t_run = own_cam, prob[c], thr[c]
                    else:
                        o_images, o_scores, _ = _run_test_set(run)
                        rgb, empty = _cam_image(run, o_images[idx], c, alpha, cmap, method)
                        p_run, t_run = o_scores[idx, c], _thresholds(run)[0][c]
                    st.image(rgb, output_format="PNG", caption=f"{head} · p = {p_run:.3f}")
                    st.caption(f"threshold {t_run:.3f}" + (" · empty map" if empty else ""),
                               help=f"Run {run.id}" + (f". Empty map: nothing in the image raises {CLASS_NAMES[c]}."
                                                       if empty else "."))
                except (RunError, DataError, ValueError) as e:
                    st.error(f"{head} ({run.id}): {e}")
if skipped:
    st.caption(f"Not shown (different test split or unreadable scores): {', '.join(skipped)}.")
