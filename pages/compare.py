"""Compare: does resolution matter for these runs? Paired differences, seed groups, curves, cost, calibration.

The question is the study's: what does resolution buy in AUC, and at what cost? The page opens with
the answer for the selected runs (paired differences between sizes on the same test images, and
test AUC against cost with mean ± sd over seeds), then the evidence. Every number is read from the
run folders (ui.compare_data) except the inference time, which is measured here with
core.evaluate.measure_inference (once per checkpoint, cached, after the rest of the page is drawn).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from core.errors import UserError
from core.data import chestmnist as D
from core.runs import record as runs
from core.runs import folder as runs_folder
from core.evaluate.scoring import measure_inference
from core.data.provenance import run_data_label
from ui import charts
from ui import compare_data as CD
from ui.common import (RUN_LINK_COLUMN, file_mtime, load_data, page_link, read_runs, run_label, run_url, runs_dir,
                          runs_dir_problem, through_app)
from ui.compare_calibration import calibration_section
from ui.compare_effective import effective_section
from ui.compare_frontier import frontier_section
from ui.url_state import Control, remember, restore

INFER_N = 64  # test images timed per checkpoint: few, so the page stays quick; the study times more
INFER_COL = f"inference ms per image (CPU, {INFER_N} test images)"


@st.cache_data(max_entries=64, show_spinner=False)  # the page shows its own spinner, naming the run
def inference_ms(run_dir: str, data_root: str, size: int, mtime: float, n: int = INFER_N) -> float | None:
    """Milliseconds per image for the best checkpoint on up to `n` test images, on CPU, one batch
    (core.evaluate.measure_inference, the study's way of timing).

    `mtime` (of the best checkpoint) is part of the cache key, so a new checkpoint is timed again.
    """
    try:
        images = load_data(data_root, size).test.images[:n]
        return measure_inference(run_dir, images, "cpu", batch_size=n)["inference_ms_per_image"]
    except UserError:
        return None


def default_selection(infos: list[runs_folder.RunInfo]) -> list[str]:
    """Every run of one recipe, the most recent run's (the latest sweep or study): its sizes and seeds (and a
    study's training subsets), and no run of another recipe (a best-per-size pick mixed recipes: a 12-epoch run
    stood in for the sweep's)."""
    latest = max(infos, key=lambda r: r.id)  # run ids begin with their creation time
    keys = CD.selection_keys(latest.path)
    picked = [r for r in infos if r.id == latest.id or keys & CD.selection_keys(r.path)]
    return [r.id for r in sorted(picked, key=lambda r: (r.size or 0, r.id))]


# The view controls a link carries (ui.url_state); the run selection is `?runs=`, kept by pick_runs.
CONTROLS = (Control("compare_margin", 0.01, low=0.001, high=0.2),
            Control("compare_correction", "holm", options=("holm", "bh")), Control("compare_equivalence", False),
            Control("compare_x", "GFLOPs per image", options=("GFLOPs per image", "seconds per epoch (median)")),
            Control("compare_overlay", True), Control("compare_bands", True), Control("compare_logloss", True),
            Control("compare_smooth", 0.0, low=0.0, high=0.95))


def _auc_ci_text(auc, lo, hi) -> str | None:
    if CD.num(auc) is None:
        return None
    return f"{auc:.3f}" if CD.num(lo) is None or CD.num(hi) is None else f"{auc:.3f} [{lo:.3f}, {hi:.3f}]"


_NUM, _TEXT = st.column_config.NumberColumn, st.column_config.TextColumn
_RUN = _TEXT("run", pinned=True, help="Full name: size, model, the settings that tell recipes apart, seed; the "
                                      "colour key of the charts.")
# The summary as two tables that each fit a 1400 px window: short labels, the long names as help.
_AUC = "AUC (medmnist): mean over classes with positives of the per-class ROC AUC"
SCORES_TABLE = {
    "run": _RUN,
    "epochs done": _NUM("epochs", format="%d", help="Epochs done."),
    "best val AUC (medmnist)": _NUM("best val AUC", format="%.3f", help=f"Highest val {_AUC}, over the epochs."),
    "best val AUC epoch": _NUM("epoch", format="%d", help="The epoch of the best val AUC."),
    "tested checkpoint epoch": _NUM("tested", format="%d", help="Epoch of the checkpoint evaluated on test "
                                                                "(chosen by the run's select-by metric)."),
    "test AUC [95% CI]": _TEXT("test AUC [95% CI]", help=f"Test {_AUC}; in brackets its 95% bootstrap confidence "
                                                         "interval over test images."),
    "test ACC (medmnist, 0.5)": _NUM("test ACC", format="%.3f", help="test ACC (medmnist): mean per-label "
                                                                    "accuracy at 0.5."),
    "test macro F1 (val-tuned thresholds)": _NUM("macro F1", format="%.3f", help="Test macro F1 at per-class "
                                                                                "thresholds tuned on val."),
    "test micro F1 (val-tuned thresholds)": _NUM("micro F1", format="%.3f", help="Test micro F1 at per-class "
                                                                                "thresholds tuned on val."),
    "test exact-match accuracy (val-tuned thresholds)": _NUM("exact", format="%.3f", help=(
        "Test exact-match accuracy: images with all 14 findings right, at per-class thresholds tuned on val.")),
}
COST_TABLE = {
    "run": _RUN,
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
_NO_SD = "; '—': one seed, no spread."
GROUP_TABLE = {
    "group": _TEXT("group", pinned=True, help="Runs sharing a recipe and a size: their seeds."),
    "runs": _NUM("runs", format="%d", help="Runs counted: each seed once."), "seeds": _TEXT("seeds"),
    "test AUC mean": _NUM("test AUC", format="%.3f", help=f"Mean over the group's tested runs of the test {_AUC}."),
    "test AUC sd": _TEXT("sd", help="Standard deviation over seeds of the test AUC" + _NO_SD),
    "best val AUC mean": _NUM("best val AUC", format="%.3f", help=f"Mean over the runs of the best val {_AUC}."),
    "best val AUC sd": _TEXT("sd ", help="Standard deviation over seeds of the best val AUC" + _NO_SD),
    "GFLOPs per image": _NUM("GFLOPs/image", format="%.3f", help="GFLOPs of one forward pass per image."),
    "seconds per epoch (mean)": _NUM("s/epoch", format="%.1f", help="Mean over the runs of each run's median "
                                                                    "seconds per epoch (training + validation)."),
}


def diff_table(correction: str) -> dict:
    """The paired differences' shown columns: numbers short, each meaning in its header's help; the sentences
    (verdict, non-inferiority, seeds needed) and the raw p are under the table."""
    name = {"holm": "Holm", "bh": "Benjamini-Hochberg"}[correction]
    return {
        "comparison": _TEXT("comparison", pinned=True, help="Size a vs size b, within one recipe."),
        "family": _TEXT("family", help="primary: each size against the largest (the resolution question); "
                                       "exploratory: adjacent sizes. p is adjusted within a family."),
        "runs": _TEXT("runs", help="Seeds in each group. A group's AUC is the mean of its seeds' AUCs; a seed run "
                                   "twice (a copy, a sweep and a study of one recipe) counts once, its most recent "
                                   "run. One run each: the numbers speak of those two runs, not their recipes."),
        "Δ AUC [95% CI]": _TEXT("Δ AUC [95% CI]", help=f"Test {_AUC}, of a minus b over classes with enough "
                                                       "positives; in brackets its unadjusted 95% CI from seed and "
                                                       "image variance (the decision uses the family-adjusted p, so "
                                                       "a CI clear of 0 can still be not distinguishable)."),
        "p adjusted": _NUM(f"p ({'BH' if correction == 'bh' else 'Holm'})", format="%.2g", help=(
            f"Two-sided p adjusted by {name} within the family; the decision uses it. Raw p: under the table.")),
        "decision": _TEXT("decision", help="Which size is better at the adjusted p < 0.05, or not distinguishable. "
                                           "The verdict in full, with its numbers: under the table."),
    }


def show_table(slot, frame: pd.DataFrame, config: dict, key: str) -> None:
    """The columns named in `config`, a link to each run's page, into `slot`."""
    shown = frame[list(config) + ["run id"]].assign(details=[run_url(i) for i in frame["run id"]])
    slot.dataframe(shown, hide_index=True, column_config={**config, "run id": None, "details": RUN_LINK_COLUMN},
                   key=key)


def download(frame: pd.DataFrame, name: str, label: str) -> None:
    st.download_button(f"CSV: {label}", frame.to_csv(index=False).encode(), file_name=f"{name}.csv",
                       mime="text/csv", key=f"csv_{name}", icon=":material/download:")


def tradeoff_points(summary: pd.DataFrame, groups: pd.DataFrame, x: str, group_x: str) -> pd.DataFrame:
    """Runs (their 95% CI) and seed groups (mean ± sd) for the AUC-against-cost chart."""
    runs_ = summary.dropna(subset=["test AUC (medmnist)", x])
    pts = [{"kind": "run", "group": r["group"], "name": r["run"], "x": r[x], "auc": r["test AUC (medmnist)"],
            "lo": r["test AUC 95% CI low"], "hi": r["test AUC 95% CI high"], "runs": 1, "run id": r["run id"]}
           for _, r in runs_.iterrows()]
    for _, g in groups.dropna(subset=["test AUC mean", group_x]).iterrows():
        sd = g["test AUC sd"] if pd.notna(g["test AUC sd"]) else 0.0
        pts.append({"kind": "group", "group": g["group"], "name": g["group"], "x": g[group_x], "auc": g["test AUC mean"],
                    "lo": g["test AUC mean"] - sd, "hi": g["test AUC mean"] + sd, "runs": g["tested runs"], "run id": None})
    return pd.DataFrame(pts, columns=["kind", "group", "name", "x", "auc", "lo", "hi", "runs", "run id"])


def per_class_frame(loaded: list[dict], names: dict[str, str], short: dict[str, str]) -> pd.DataFrame:
    recs = []
    for run in loaded:
        test = run["test"]
        if not test:
            continue
        reasons = {u["name"]: u["reason"] for u in test.get("auc_undefined_classes") or []}
        for c in D.CLASS_NAMES:
            pc = (test.get("per_class") or {}).get(c, {})
            auc, lo, hi = CD.num(pc.get("auc")), CD.num(pc.get("auc_ci_low")), CD.num(pc.get("auc_ci_high"))
            if auc is None:
                text = f"undefined ({reasons.get(c, 'no positives')})"
            elif lo is None or hi is None:
                text = f"{auc:.3f} (no CI)"
            else:
                text = f"{auc:.3f} (95% CI {lo:.3f}–{hi:.3f})"
            recs.append({"class": c, "positives": pc.get("support"), "series": names[run["info"].id],
                         "short": short[run["info"].id], "run id": run["info"].id, "auc": auc, "ci_low": lo, "ci_high": hi,
                         "label": "—" if auc is None else f"{auc:.2f}", "test AUC": text})
    return pd.DataFrame(recs, columns=["class", "positives", "series", "short", "run id", "auc", "ci_low", "ci_high",
                                       "label", "test AUC"])


def pick_runs(infos: list[runs_folder.RunInfo]) -> list[runs_folder.RunInfo]:
    """The runs to compare: the URL's (`?runs=…`, a shared link) on a session's first visit, else the default;
    kept in the URL. A run the link names that is not in this runs folder is left out, and the page says so."""
    by_id = {r.id: r for r in infos}
    key = "compare_runs"
    if key not in st.session_state:
        wanted = st.query_params.get_all("runs")
        known = [i for i in dict.fromkeys(wanted) if i in by_id]
        if len(known) < len(set(wanted)):
            # The ids are not shown: messages render markdown, and a crafted link would draw in them.
            st.warning(f"{len(set(wanted)) - len(known)} run(s) this link names are not in {runs_dir()} (deleted, "
                       "or the link names another runs folder); they are left out.")
        st.session_state[key] = known or default_selection(infos)
    else:  # runs deleted meanwhile drop out of the selection
        st.session_state[key] = [i for i in st.session_state[key] if i in by_id]
    picked = st.multiselect("Runs", list(by_id), key=key, format_func=lambda i: run_label(by_id[i]),
                            help="Default: every run of the most recent recipe (the latest sweep or study), all its "
                                 "sizes and seeds. The selection is kept in the page's URL.")
    if not picked:
        st.query_params.pop("runs", None)
    elif st.query_params.get_all("runs") != picked:
        st.query_params["runs"] = picked
    return sorted((by_id[i] for i in picked), key=lambda r: (r.size or 0, r.id))


def data_note(loaded: list[dict], names: dict[str, str]) -> None:
    """Which data each run used: NIH or imported numbers must never pass as ChestMNIST results. One line on the
    page, which runs used which data in an expander (the list grows with every run picked)."""
    labels = {run["info"].id: run_data_label(run["config"]) if run["config"] else (False, "unknown (no readable run config)")
              for run in loaded}
    others = [rid for rid, (official, _) in labels.items() if not official]
    if not others:
        st.caption("All selected runs used the official ChestMNIST files (MD5 checked when the run was prepared).")
        return
    which = "All" if len(others) == len(labels) else f"{len(others)} of the {len(labels)}"
    st.warning(f"Not ChestMNIST: {which} selected runs used other data; their numbers describe that data.",
               icon=":material/warning:")
    by_data: dict[str, list[str]] = {}
    for rid in others:
        by_data.setdefault(labels[rid][1].removeprefix("NOT ChestMNIST: "), []).append(f"{names[rid]} ({rid})")
    with st.expander("Which runs, which data"):
        st.markdown("\n".join(f"- **{data}**: " + "; ".join(who) for data, who in by_data.items()))


def difference_details(diffs: pd.DataFrame, correction: str) -> None:
    """Per comparison, what the table leaves out: the verdict sentence, raw p, non-inferiority, seeds needed."""
    name = {"holm": "Holm", "bh": "Benjamini-Hochberg"}[correction]
    with st.expander("Each comparison in full: verdict, raw p, non-inferiority, seeds needed"):
        for _, d in diffs.iterrows():
            parts = [f"**{d['comparison']}** ({d['family']}): {d['verdict']}."]
            if pd.notna(d["p"]):
                parts.append(f"p {d['p']:.2g} raw, {d['p adjusted']:.2g} {name}-adjusted within the family.")
            parts += [f"{text[0].upper()}{text[1:]}." for text in (d["non-inferiority"], d["seeds needed"])
                      if isinstance(text, str) and text]
            if d["left out"]:
                parts.append(f"Left out of the mean: {d['left out']}.")
            st.markdown(" ".join(parts))


def answer_section(groups: list[CD.Group], summary: pd.DataFrame, group_table: pd.DataFrame) -> None:
    st.header("Does resolution matter here?")
    c = st.columns(3)
    margin = c[0].number_input("Non-inferiority margin (AUC)", 0.001, 0.2, step=0.005, format="%.3f",
                               key="compare_margin", help="How much test AUC a smaller size may lose and still count "
                               "as good enough; also the difference 'seeds needed' is sized for.")
    correction = c[1].radio("Correction within a family", ["holm", "bh"], horizontal=True, key="compare_correction",
                            format_func={"holm": "Holm", "bh": "Benjamini-Hochberg"}.get)
    equivalence = c[2].toggle("Also test equivalence (TOST)", key="compare_equivalence",
                              help="Equivalent: the difference lies within ±margin either way, not only above -margin.")
    diffs = CD.differences_frame(groups, margin, correction, equivalence)
    if len(diffs):
        shown = diff_table(correction)
        st.dataframe(diffs[list(shown)], hide_index=True, column_config=shown, key="compare_diffs")
        difference_details(diffs, correction)
        st.caption("Paired on the same test images: each size against the largest (primary family) and adjacent "
                   "sizes (exploratory), within one recipe. A seed group's AUC is the mean of its seeds'; the interval "
                   f"and p carry seed-to-seed variance and image variance ({CD.N_BOOT:,} image resamples), so they speak "
                   "of the recipes; with one run per group they speak of those two runs only. The verdict uses p "
                   "adjusted within its family. Runs are paired only when they scored the same images.")
        download(diffs, "paired_differences", "paired differences")
    else:
        st.info("No paired difference to show: pick tested runs of one recipe at two or more sizes.")
    st.subheader("Seed groups")
    sd_text = {c: [f"{v:.3f}" if pd.notna(v) else "—" for v in group_table[c]] for c in ("test AUC sd", "best val AUC sd")}
    st.dataframe(group_table.assign(**sd_text)[list(GROUP_TABLE)], hide_index=True, column_config=GROUP_TABLE,
                 key="compare_groups")
    download(group_table, "seed_groups", "seed groups")
    st.subheader("Test AUC against compute")
    x = st.radio("x axis", ["GFLOPs per image", "seconds per epoch (median)"], horizontal=True, key="compare_x")
    group_x = "GFLOPs per image" if x == "GFLOPs per image" else "seconds per epoch (mean)"
    points = tradeoff_points(summary, group_table, x, group_x)
    if len(points):
        st.altair_chart(charts.tradeoff_chart(points, x, [g.name for g in groups]), width="stretch")
        st.caption("Small points: runs with their 95% bootstrap CI; diamonds: seed groups, mean ± sd over seeds. "
                   "The chart's toolbar saves it as PNG.")
    else:
        st.info("None of the selected runs has test metrics yet.")


SEED_GROUPS, EACH_RUN = "recipe and size (seed groups)", "run"


def curve_controls(loaded: list[dict]) -> tuple[str, str, str]:
    """(x axis, group by, colour by), each a setting that differs among the runs or the default; kept in the URL."""
    fields = CD.recipe_fields(loaded)
    controls = (Control("compare_curve_x", "epoch", options=tuple(CD.X_AXES)),
                Control("compare_group_by", SEED_GROUPS, options=(SEED_GROUPS, *fields)),
                Control("compare_colour", EACH_RUN, options=(EACH_RUN, *fields)))
    restore(controls)
    c = st.columns(3)
    x = c[0].radio("x axis", list(CD.X_AXES), horizontal=True, key="compare_curve_x",
                   help="Step: batches trained, from each epoch's images. Wall time: the logged seconds of each "
                        "epoch (training and validation) summed; pauses between a stop and a resume are not in it.")
    group_by = c[1].selectbox("Group by", [SEED_GROUPS, *fields], key="compare_group_by",
                              help="What the mean ± sd lines average over: the seeds of a recipe at a size, or every "
                                   "run with the same value of a setting that differs among these runs.")
    colour = c[2].selectbox("Colour by", [EACH_RUN, *fields], key="compare_colour",
                            help="One line per run either way; coloured by run, or by one of its settings.")
    remember(controls)
    return x, group_by, colour


def curves_section(loaded: list[dict], names: dict[str, str], groups: list[CD.Group]) -> None:
    st.header("Learning curves")
    x, group_by, colour = curve_controls(loaded)
    c = st.columns([2, 2, 2, 3])
    overlay = c[0].toggle("Overlay runs", key="compare_overlay",
                          help="On: one panel per metric. Off: small multiples, one column per run.")
    counted = CD.counted_ids(groups)  # each seed once: of a seed run twice, its most recent run
    group_of = ({run["info"].id: g.name for g in groups for run in g.runs} if group_by == SEED_GROUPS
                else CD.field_labels(loaded, [group_by]))
    sizes = pd.Series([group_of[i] for i in counted]).value_counts()
    several = bool((sizes > 1).any())
    grouped = c[1].toggle("Mean ± sd over runs", key="compare_bands", disabled=not (overlay and several),
                          help="One line per group (mean over its runs) with a ±1 sd band; needs a group with "
                               "several runs among the selected ones. Drawn against epochs.") and several and overlay
    log_loss = c[2].toggle("Log scale for loss", key="compare_logloss")
    weight = c[3].slider("Smoothing", 0.0, 0.95, step=0.05, key="compare_smooth",
                         help="Exponential moving average as TensorBoard's (debiased); hover shows the logged value.")
    epochs = CD.epoch_frame(loaded, names, groups, weight)
    labels = [label for _, label in CD.EPOCH_METRICS]
    if grouped:
        if x != "epoch" or colour != EACH_RUN:  # the bands are means per epoch, one colour per group
            st.caption("Mean ± sd lines are drawn against epochs, coloured by group: the x axis and colour chosen "
                       "above apply with **Mean ± sd over runs** off.")
        mine = epochs[epochs["run"].isin(counted)]
        bands = CD.band_frame(mine.assign(group=mine["run"].map(group_of))).rename(columns={"group": "series"})
        lines = bands.assign(run=bands["runs"].astype(str) + " runs", value=bands["mean"], raw=bands["raw"])
        order = list(dict.fromkeys(sorted(bands["series"], key=str)) if group_by != SEED_GROUPS else
                     [g.name for g in groups])
        st.altair_chart(charts.curves_chart(lines, order, labels, True, bands, log_loss,
                                            charts.CurveView(colour_title="group")), width="stretch")
    else:
        order = [names[run["info"].id] for run in loaded]
        view = charts.CurveView(*CD.X_AXES[x])
        if colour != EACH_RUN:
            epochs = epochs.assign(colour=epochs["run"].map(CD.field_labels(loaded, [colour])))
            view = charts.CurveView(*CD.X_AXES[x], "colour", colour)
        st.altair_chart(charts.curves_chart(epochs, order, labels, overlay, None, log_loss, view), width="stretch")
    st.caption("Solid: validation, dashed: training (training metrics are averaged over the epoch while the weights "
               "change). Open diamonds: each run's kept (best) checkpoint; a dotted rule: training resumed there "
               "after a stop. Hover a panel for every run's value at that point. AUC (medmnist) is the mean over "
               "classes with positives; ACC (medmnist, 0.5) the mean per-label accuracy at 0.5; F1 here uses each "
               "run's fixed per-epoch threshold. The chart's toolbar saves it as PNG.")
    download(epochs, "learning_curves", "learning curves (logged and smoothed)")


def summary_section(loaded: list[dict], summary: pd.DataFrame, names: dict[str, str]):
    st.header("Runs")
    st.subheader("Validation and test")
    show_table(st, summary, SCORES_TABLE, "compare_scores")
    st.caption("Best val: the epoch with the highest val AUC. Test metrics come from the run's evaluation, computed "
               "with the checkpoint chosen by the run's select-by metric ('tested epoch'); the 95% CI is a bootstrap "
               "over test images. F1 and exact-match accuracy use per-class thresholds tuned on val (Youden's J). "
               "Hover a column header for its full name; 'open' shows a run's config, log, curves and files. The val loss at "
               "the best epoch is in the CSV of every run's numbers below.")
    missing_test = [names[run["info"].id] for run in loaded if not run["test"]]
    if missing_test:
        st.caption(f"Not evaluated on test yet (still training, stopped or failed): {', '.join(missing_test)}.")
    st.subheader("Compute cost")
    cost_slot, timing_slot = st.empty(), st.container()
    show_table(cost_slot, summary, COST_TABLE, "compare_cost")
    st.caption("Seconds per epoch and training images/s are medians over the logged epochs on the machine that "
               f"trained; inference time is measured on this machine ({INFER_N} test images, once per checkpoint). "
               "Peak memory is not shown: it cannot be measured per model cheaply on CPU.")
    download(summary, "runs_summary", "every run's numbers")
    return cost_slot, timing_slot


def time_inference(loaded: list[dict], summary: pd.DataFrame, names: dict[str, str], cost_slot, timing_slot) -> None:
    """Last, so everything else is on screen first: CPU inference time per checkpoint (cached per checkpoint file)."""
    for run in loaded:
        r = run["info"]
        best_pt = runs.checkpoint_path(r.path, "best")
        if r.data_root and r.size and best_pt.is_file():
            with timing_slot, st.spinner(f"Timing CPU inference of {names[r.id]} on {INFER_N} test images "
                                         "(once per checkpoint)…"):
                ms = inference_ms(str(r.path), r.data_root, r.size, file_mtime(best_pt))
            summary.loc[summary["run id"] == r.id, INFER_COL] = np.nan if ms is None else ms
    show_table(cost_slot, summary, COST_TABLE, "compare_cost_timed")


def main() -> None:
    st.title("Compare runs")
    rdir = runs_dir()
    infos = read_runs(rdir)
    if infos is None:
        st.stop()
    infos = [r for r in infos if r.epochs_done > 0]
    if not infos and (problem := runs_dir_problem(rdir)):
        st.error(problem)
        st.stop()
    if not infos:
        st.info(f"No run in {rdir} has finished an epoch yet. Train one on the Train page; it shows up here after its "
                "first epoch.")
        page_link("pages/train.py", "Train", icon=":material/model_training:")
        st.stop()
    chosen = pick_runs(infos)
    if not chosen:
        st.info("Pick at least one run.")
        st.stop()
    loaded = sorted((CD.load_run(r) for r in chosen), key=CD.run_order)
    for run in loaded:
        if run["error"]:
            st.error(f"Run {run['info'].id}: {run['error']}")
    groups = CD.seed_groups(loaded)
    names = CD.series_names(groups)
    data_note(loaded, names)
    for note in (n for g in groups for n in g.notes):
        st.caption(note)
    summary = CD.summary_frame(loaded, names, groups)
    summary["test AUC [95% CI]"] = [_auc_ci_text(*v) for v in zip(
        summary["test AUC (medmnist)"], summary["test AUC 95% CI low"], summary["test AUC 95% CI high"])]
    summary[INFER_COL] = np.nan  # filled in at the end of the page (timing a checkpoint takes a second or so)
    restore(CONTROLS)
    answer_section(groups, summary, CD.group_frame(summary, groups))
    curves_section(loaded, names, groups)
    remember(CONTROLS)
    cost_slot, timing_slot = summary_section(loaded, summary, names)
    calibration_section(loaded, names)
    effective_section(groups)
    frontier_section(groups)
    st.header("Test AUC per class")
    per_class = per_class_frame(loaded, names, CD.short_names(groups))
    if len(per_class):
        st.altair_chart(charts.heat_chart(per_class), width="stretch", height=charts.heat_height())
        st.caption("Grey, '—': AUC undefined for that class on that run's test split (no positives or no negatives). "
                   "Hover a cell for the run's full name, the 95% bootstrap CI and the class's test positives; the "
                   "AUC is written in the cells when they are wide enough.")
        download(per_class.drop(columns=["label", "short"]), "per_class_auc", "test AUC per class")
    time_inference(loaded, summary, names, cost_slot, timing_slot)


through_app()
main()
