"""Compare: learning curves, test metrics and compute cost of runs side by side, and AUC per class.

The question is the study's: what does resolution buy in AUC, and at what cost? Every number
here is read from the run folders (through core.runs; per-run summaries from core.summary, as the
study report) except the inference time, which is measured here with core.summary.measure_inference
(once per checkpoint, cached, after the rest of the page is drawn).
"""
from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from core import data as D
from core import runs
from core.summary import measure_inference, run_data_label, summarize
from pages.common import file_mtime, load_data, page_link, read_runs, run_label, runs_dir, through_app

# (key in a metrics row after "train_"/"val_", label). Per-epoch F1 uses the run's fixed threshold.
EPOCH_METRICS = (("loss", "loss"), ("auc", "AUC (medmnist)"), ("acc", "ACC (medmnist, 0.5)"),
                 ("macro_f1", "macro F1 (fixed threshold)"), ("micro_f1", "micro F1 (fixed threshold)"))
INFER_N = 64  # test images timed per checkpoint: few, so the page stays quick; the study times more
INFER_COL = f"inference ms per image (CPU, {INFER_N} test images)"
SPLIT_DASH = alt.Scale(domain=["val", "train"], range=[[1, 0], [5, 3]])
# The split legend draws line samples (solid / dashed), not the points' dots, so it shows the dash.
SPLIT_LEGEND = alt.Legend(symbolType="stroke", symbolStrokeColor="#555", symbolStrokeWidth=2, symbolSize=300)
PANEL_W, PANEL_H = 235, 170  # overlay panels: three to a row fit a 1400 px window beside the sidebar
# Categorical colours; runs are ordered by size, so with one run per size a resolution keeps its
# colour in every chart on the page.
SCHEME = "tableau10"


@st.cache_data(max_entries=64, show_spinner=False)  # the page shows its own spinner, naming the run
def inference_ms(run_dir: str, data_root: str, size: int, mtime: float, n: int = INFER_N) -> float | None:
    """Milliseconds per image for the best checkpoint on up to `n` test images, on CPU, one batch
    (core.summary.measure_inference, the study's way of timing).

    `mtime` (of the best checkpoint) is part of the cache key, so a new checkpoint is timed again.
    """
    try:
        images = load_data(data_root, size).test.images[:n]
        return measure_inference(run_dir, images, "cpu", batch_size=n)["inference_ms_per_image"]
    except (runs.RunError, D.DataError):
        return None


def default_selection(infos: list[runs.RunInfo]) -> list[str]:
    """The best run per size by best val AUC (runs without a val AUC only when a size has nothing else)."""
    best: dict[int | None, runs.RunInfo] = {}
    for r in infos:
        cur = best.get(r.size)
        score = -1.0 if r.best_val_auc is None else r.best_val_auc
        if cur is None or score > (-1.0 if cur.best_val_auc is None else cur.best_val_auc):
            best[r.size] = r
    return [r.id for r in sorted(best.values(), key=lambda r: (r.size or 0, r.id))]


def series_names(chosen: list[runs.RunInfo]) -> dict[str, str]:
    """Legend name per run: its resolution, plus name/model and id suffix when several share a size."""
    sizes = [r.size for r in chosen]
    return {r.id: f"{r.size} px" if sizes.count(r.size) == 1 else f"{r.size} px · {r.name or r.model} · {r.id[-4:]}"
            for r in chosen}


def load_run(r: runs.RunInfo) -> dict:
    """Everything the page shows about one run, from its files; `error` set when something is unreadable."""
    out = {"info": r, "rows": runs.read_metrics(r.path), "config": {}, "test": None, "error": None}
    try:
        out["config"] = runs.read_config(r.path)
    except runs.RunError as e:
        out["error"] = str(e)
    if runs.has_test_metrics(r.path):
        try:
            out["test"] = runs.read_test_metrics(r.path)
        except runs.RunError as e:
            out["error"] = str(e)
    return out


def _num(v) -> float | None:
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)


def epoch_frame(loaded: list[dict], names: dict[str, str]) -> pd.DataFrame:
    recs = []
    for run in loaded:
        r = run["info"]
        for row in run["rows"]:
            for split in ("train", "val"):
                for key, label in EPOCH_METRICS:
                    value = _num(row.get(f"{split}_{key}"))
                    if value is not None:
                        recs.append({"run": r.id, "series": names[r.id], "size": r.size, "epoch": row["epoch"],
                                     "split": split, "metric": label, "value": value})
    return pd.DataFrame(recs, columns=["run", "series", "size", "epoch", "split", "metric", "value"])


def curves_chart(df: pd.DataFrame, order: list[str], overlay: bool) -> alt.TopLevelMixin:
    """Every logged per-epoch metric; colour = run/resolution, dash = split (val solid, train dashed)."""
    color = alt.Color("series:N", sort=order, scale=alt.Scale(domain=order, scheme=SCHEME), title="run")
    tooltip = ["run", "size", "split", "epoch", alt.Tooltip("value:Q", format=".4f")]
    labels = [label for _, label in EPOCH_METRICS]
    enc = dict(x=alt.X("epoch:Q", axis=alt.Axis(tickMinStep=1, format="d")),
               y=alt.Y("value:Q", scale=alt.Scale(zero=False), title=None), color=color, tooltip=tooltip)
    # Points as their own layer, without the dash: on one mark (line with point overlay) the split
    # legend drew the points' dots for val and train alike, hiding the dash that tells them apart.
    base = alt.layer(
        alt.Chart(df).mark_line().encode(strokeDash=alt.StrokeDash("split:N", scale=SPLIT_DASH, legend=SPLIT_LEGEND),
                                         **enc),
        alt.Chart(df).mark_point(filled=True, size=20).encode(detail="split:N", **enc))
    if overlay:
        # Rows built explicitly (three panels, then two): a 3-column facet of five metrics drew an
        # x axis under its empty sixth cell.
        panels = [base.transform_filter(alt.datum.metric == label).properties(width=PANEL_W, height=PANEL_H,
                                                                              title=label) for label in labels]
        return alt.vconcat(alt.hconcat(*panels[:3]), alt.hconcat(*panels[3:])).resolve_scale(
            y="independent").configure_legend(orient="top")
    # Small multiples: one row per metric (shared y within the row), one column per run.
    rows = [base.transform_filter(alt.datum.metric == label).properties(width=170, height=140)
            .facet(column=alt.Column("series:N", sort=order, title=None)).properties(title=label) for label in labels]
    return alt.vconcat(*rows).configure_legend(orient="top")


def summary_frame(loaded: list[dict], names: dict[str, str]) -> pd.DataFrame:
    """One row per run: validation, test and compute numbers from its files (inference time is added later)."""
    out = []
    for run in loaded:
        r, rows, cfg, test = run["info"], run["rows"], run["config"], run["test"] or {}
        trained = summarize(rows)
        scored = [row for row in rows if _num(row.get("val_auc")) is not None]
        best = max(scored, key=lambda row: row["val_auc"]) if scored else {}
        ci = test.get("auc_ci") or [None, None]
        model = cfg.get("model", {})
        flops = model.get("flops_per_image")
        out.append({
            "run": names[r.id], "run id": r.id, "size (px)": r.size, "model": r.model, "epochs done": len(rows),
            "best val AUC (medmnist)": best.get("val_auc"), "best val AUC epoch": best.get("epoch"),
            "val loss at that epoch": best.get("val_loss"),
            "tested checkpoint epoch": trained.best_epoch,
            "test AUC (medmnist)": test.get("auc"), "test AUC 95% CI low": ci[0], "test AUC 95% CI high": ci[1],
            "test ACC (medmnist, 0.5)": test.get("acc"),
            "test macro F1 (val-tuned thresholds)": test.get("macro_f1"),
            "test micro F1 (val-tuned thresholds)": test.get("micro_f1"),
            "test exact-match accuracy (val-tuned thresholds)": test.get("exact_match_accuracy"),
            "parameters": model.get("params"), "GFLOPs per image": flops / 1e9 if flops else None,
            "seconds per epoch (median)": trained.seconds_per_epoch,
            "training images/s (median)": trained.train_images_per_s,
        })
    return pd.DataFrame(out)


def _ci_text(lo, hi) -> str | None:
    return None if _num(lo) is None or _num(hi) is None else f"{lo:.4f}–{hi:.4f}"


_NUM, _TEXT = st.column_config.NumberColumn, st.column_config.TextColumn
# The summary as two tables that each fit a 1400 px window: short labels, the long names as help.
SCORES_TABLE = {
    "run": _TEXT("run", pinned=True, help="Resolution (plus name and id suffix when runs share a size); the "
                                          "colour key of the charts."),
    "epochs done": _NUM("epochs", format="%d", help="Epochs done."),
    "best val AUC (medmnist)": _NUM("best val AUC", format="%.4f", help="Highest val AUC (medmnist: mean over "
                                                                        "classes with positives) over the epochs."),
    "best val AUC epoch": _NUM("at epoch", format="%d", help="The epoch of the best val AUC."),
    "val loss at that epoch": _NUM("val loss", format="%.4f", help="Val loss at the best-val-AUC epoch."),
    "tested checkpoint epoch": _NUM("tested epoch", format="%d", help="Epoch of the checkpoint evaluated on test "
                                                                      "(chosen by the run's select-by metric)."),
    "test AUC (medmnist)": _NUM("test AUC", format="%.4f", help="test AUC (medmnist)."),
    "test AUC 95% CI": _TEXT("95% CI", help="95% bootstrap confidence interval of the test AUC."),
    "test ACC (medmnist, 0.5)": _NUM("test ACC", format="%.4f", help="test ACC (medmnist): mean per-label "
                                                                     "accuracy at 0.5."),
    "test macro F1 (val-tuned thresholds)": _NUM("macro F1", format="%.4f", help="Test macro F1 at per-class "
                                                                                 "thresholds tuned on val."),
    "test micro F1 (val-tuned thresholds)": _NUM("micro F1", format="%.4f", help="Test micro F1 at per-class "
                                                                                 "thresholds tuned on val."),
    "test exact-match accuracy (val-tuned thresholds)": _NUM("exact match", format="%.4f", help=(
        "Test images with all 14 findings right, at per-class thresholds tuned on val.")),
}
COST_TABLE = {
    "run": SCORES_TABLE["run"],
    "size (px)": _NUM("size (px)", format="%d"),
    "model": _TEXT("model"),
    "parameters": _NUM("parameters", format="localized"),
    "GFLOPs per image": _NUM("GFLOPs/image", format="%.4f", help="GFLOPs of one forward pass per image."),
    "seconds per epoch (median)": _NUM("s/epoch", format="%.1f", help="Median seconds per epoch (training + "
                                                                      "validation) on the machine that trained."),
    "training images/s (median)": _NUM("train img/s", format="%.0f", help="Median training images per second on "
                                                                          "the machine that trained."),
    INFER_COL: _NUM("inference ms/image", format="%.3f", help=f"Best checkpoint on {INFER_N} test images, CPU, "
                                                              "one batch; measured on this machine once per "
                                                              "checkpoint."),
}


def show_table(slot, summary: pd.DataFrame, config: dict) -> None:
    """The summary columns named in `config` (plus the hidden run id that keys them) into `slot`."""
    slot.dataframe(summary[list(config) + ["run id"]], hide_index=True, column_config={**config, "run id": None})


def tradeoff_chart(summary: pd.DataFrame, x: str) -> alt.LayerChart:
    """Test AUC against compute, one point per run coloured by resolution, with 95% CI bars."""
    df = summary.dropna(subset=["test AUC (medmnist)", x]).rename(columns={
        "test AUC (medmnist)": "auc", "test AUC 95% CI low": "lo", "test AUC 95% CI high": "hi", x: "x",
        "size (px)": "size"})
    sizes = sorted(df["size"].unique().tolist())
    enc = dict(x=alt.X("x:Q", scale=alt.Scale(type="log"), title=f"{x} (log scale)"),
               color=alt.Color("size:N", scale=alt.Scale(domain=sizes, scheme=SCHEME), title="resolution (px)"))
    tooltip = ["run", "run id", "size", alt.Tooltip("auc:Q", format=".4f", title="test AUC (medmnist)"),
               alt.Tooltip("lo:Q", format=".4f", title="95% CI low"), alt.Tooltip("hi:Q", format=".4f", title="95% CI high"),
               alt.Tooltip("x:Q", format=".4g", title=x)]
    bars = alt.Chart(df).mark_rule(strokeWidth=2).encode(y=alt.Y("lo:Q", scale=alt.Scale(zero=False)), y2="hi:Q", **enc)
    points = alt.Chart(df).mark_point(filled=True, size=90).encode(
        y=alt.Y("auc:Q", scale=alt.Scale(zero=False), title="test AUC (medmnist) with 95% CI"), tooltip=tooltip, **enc)
    return (bars + points).properties(height=320)


def per_class_frame(loaded: list[dict], names: dict[str, str]) -> pd.DataFrame:
    recs = []
    for run in loaded:
        test = run["test"]
        if not test:
            continue
        reasons = {u["name"]: u["reason"] for u in test.get("auc_undefined_classes") or []}
        for c in D.CLASS_NAMES:
            pc = (test.get("per_class") or {}).get(c, {})
            auc, lo, hi = _num(pc.get("auc")), _num(pc.get("auc_ci_low")), _num(pc.get("auc_ci_high"))
            if auc is None:
                text = f"undefined ({reasons.get(c, 'no positives')})"
            elif lo is None or hi is None:
                text = f"{auc:.3f} (no CI)"
            else:
                text = f"{auc:.3f} (95% CI {lo:.3f}–{hi:.3f})"
            recs.append({"class": c, "series": names[run["info"].id], "run id": run["info"].id, "auc": auc,
                         "ci_low": lo, "ci_high": hi, "label": "—" if auc is None else f"{auc:.2f}", "test AUC": text})
    return pd.DataFrame(recs, columns=["class", "series", "run id", "auc", "ci_low", "ci_high", "label", "test AUC"])


def heat_chart(df: pd.DataFrame, order: list[str]) -> alt.LayerChart:
    base = alt.Chart(df).encode(
        x=alt.X("series:N", sort=order, title="run", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("class:N", sort=list(D.CLASS_NAMES), title=None),
        tooltip=["class", "series", "run id", alt.Tooltip("test AUC:N", title="test AUC (95% CI)")])
    defined = base.transform_filter("isValid(datum.auc)").mark_rect().encode(
        color=alt.Color("auc:Q", scale=alt.Scale(scheme="viridis"), title="test AUC"))
    undefined = base.transform_filter("!isValid(datum.auc)").mark_rect(color="#d9d9d9")
    text = base.mark_text(fontSize=11).encode(
        text="label:N", color=alt.condition("isValid(datum.auc) && datum.auc < 0.75", alt.value("white"), alt.value("black")))
    return (defined + undefined + text).properties(height=14 * 26)


through_app()
st.title("Compare runs")
rdir = runs_dir()
infos = read_runs(rdir)
if infos is None:
    st.stop()
infos = [r for r in infos if r.epochs_done > 0]
if not infos:
    st.info(f"No run in {rdir} has finished an epoch yet. Train one on the Train page; it shows up here after its "
            "first epoch.")
    page_link("pages/train.py", "Train", icon="🏋️")
    st.stop()

by_id = {r.id: r for r in infos}
KEY = "compare_runs"
if KEY not in st.session_state:
    st.session_state[KEY] = default_selection(infos)
else:  # runs deleted meanwhile drop out of the selection
    st.session_state[KEY] = [i for i in st.session_state[KEY] if i in by_id]
picked = st.multiselect("Runs", list(by_id), key=KEY, format_func=lambda i: run_label(by_id[i]),
                        help="Default: the best run per size by best val AUC.")
if not picked:
    st.info("Pick at least one run.")
    st.stop()

chosen = sorted((by_id[i] for i in picked), key=lambda r: (r.size or 0, r.id))
names = series_names(chosen)
order = [names[r.id] for r in chosen]
loaded = [load_run(r) for r in chosen]
for run in loaded:
    if run["error"]:
        st.error(f"Run {run['info'].id}: {run['error']}")

# Which data each run used: NIH-1000 or imported numbers must never pass as ChestMNIST results.
labels = {run["info"].id: run_data_label(run["config"]) if run["config"] else (False, "unknown (no readable run config)")
          for run in loaded}
others = [rid for rid, (official, _) in labels.items() if not official]
if others:
    st.warning("Not ChestMNIST: " + "; ".join(f"**{names[rid]}** ({rid}) used {labels[rid][1].removeprefix('NOT ChestMNIST: ')}"
                                               for rid in others)
               + ". Their numbers describe that data, not ChestMNIST.")
else:
    st.caption("All selected runs used the official ChestMNIST files (MD5 checked when the run was prepared).")

st.header("Learning curves")
overlay = st.toggle("Overlay runs (one panel per metric); off: small multiples, one column per run", value=True,
                    key="compare_overlay")
epochs = epoch_frame(loaded, names)
st.altair_chart(curves_chart(epochs, order, overlay), width="stretch")
st.caption("Solid: validation, dashed: training (training metrics are averaged over the epoch while the weights "
           "change). AUC (medmnist) is the mean over classes with positives; ACC (medmnist, 0.5) is the mean "
           "per-label accuracy at 0.5; F1 here uses each run's fixed per-epoch threshold (Advanced, default 0.3).")

st.header("Summary")
summary = summary_frame(loaded, names)
summary["test AUC 95% CI"] = [_ci_text(lo, hi) for lo, hi in
                              zip(summary["test AUC 95% CI low"], summary["test AUC 95% CI high"])]
summary[INFER_COL] = np.nan  # filled in at the end of the page (timing a checkpoint takes a second or so)
st.subheader("Validation and test")
show_table(st, summary, SCORES_TABLE)
st.caption("Best val: the epoch with the highest val AUC. Test metrics come from the run's evaluation, computed with the "
           "checkpoint chosen by the run's select-by metric ('tested epoch'); the 95% CI is a bootstrap "
           "over test images. F1 and exact-match accuracy use per-class thresholds tuned on val (Youden's J). "
           "Hover a column header for its full name.")
missing_test = [names[run["info"].id] for run in loaded if not run["test"]]
if missing_test:
    st.caption(f"Not evaluated on test yet (still training, stopped or failed): {', '.join(missing_test)}.")
st.subheader("Compute cost")
cost_slot, timing_slot = st.empty(), st.container()
show_table(cost_slot, summary, COST_TABLE)
st.caption("Seconds per epoch and training images/s are medians over the logged epochs on the machine that trained; "
           f"inference time is measured on this machine ({INFER_N} test images, once per checkpoint). Peak memory is "
           "not shown: it cannot be measured per model cheaply on CPU.")

st.header("Test AUC against compute")
x = st.radio("x axis", ["GFLOPs per image", "seconds per epoch (median)"], horizontal=True, key="compare_x")
if summary["test AUC (medmnist)"].notna().any():
    st.altair_chart(tradeoff_chart(summary, x), width="stretch")
else:
    st.info("None of the selected runs has test metrics yet.")

st.header("Test AUC per class")
per_class = per_class_frame(loaded, names)
if len(per_class):
    st.altair_chart(heat_chart(per_class, order), width="stretch")
    st.caption("Grey, '—': AUC undefined for that class on that run's test split (no positives or no negatives). "
               "Hover a cell for the 95% bootstrap CI.")

# Last, so everything above is on screen first: CPU inference time per checkpoint (cached per checkpoint file).
for run in loaded:
    r = run["info"]
    best_pt = runs.checkpoint_path(r.path, "best")
    if r.data_root and r.size and best_pt.is_file():
        with timing_slot, st.spinner(f"Timing CPU inference of {names[r.id]} on {INFER_N} test images "
                                     "(once per checkpoint)…"):
            ms = inference_ms(str(r.path), r.data_root, r.size, file_mtime(best_pt))
        summary.loc[summary["run id"] == r.id, INFER_COL] = np.nan if ms is None else ms
show_table(cost_slot, summary, COST_TABLE)
