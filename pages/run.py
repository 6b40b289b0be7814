"""One run: its state, data, config, curves, test metrics, log and files.

Opened from every run table (a link to `run?run=<id>`, ui.common.run_url) or by picking a run
here. Everything is read from the run folder through core.runs.
"""
from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from core.errors import UserError
from core.runs import annotations
from core.runs import record as runs
from core.runs import folder as runs_folder
from core.data.provenance import run_data_label
from ui import charts
from ui import compare_data as CD
from ui.common import md_literal, page_link, read_runs, run_label, runs_dir, runs_dir_problem, through_app

LOG_TAIL = 200  # lines of the training log shown; the whole file is a download


def pick(infos: list[runs_folder.RunInfo]) -> runs_folder.RunInfo | None:
    """The run named by `?run=<id>`, else the one picked here (kept in the URL, so a reload shows it)."""
    by_id = {r.id: r for r in infos}
    wanted = st.query_params.get("run")
    if wanted and wanted not in by_id:
        # The link's text is not shown: st.warning renders markdown, and a crafted link would draw its own
        # links and remote images inside the app's message.
        st.warning(f"The run this link names is not in {runs_dir()}: it was deleted, or the link names another runs "
                   "folder. Pick one below.")
    # A new link wins over the picker; the picker's own choice is then written to the URL.
    if wanted in by_id and wanted != st.session_state.get("run_page_from_url"):
        st.session_state["run_page_run"] = wanted
    chosen = st.selectbox("Run", list(by_id), key="run_page_run", format_func=lambda i: run_label(by_id[i]))
    if chosen and st.query_params.get("run") != chosen:
        st.query_params["run"] = chosen
    st.session_state["run_page_from_url"] = chosen
    return by_id.get(chosen)


def files_frame(run_dir) -> pd.DataFrame:
    rows = [{"file": p.name, "bytes": p.stat().st_size, "modified": time.strftime("%Y-%m-%d %H:%M:%S",
                                                                                   time.localtime(p.stat().st_mtime))}
            for p in sorted(run_dir.iterdir()) if p.is_file()]
    return pd.DataFrame(rows, columns=["file", "bytes", "modified"])


def show_curves(run: dict) -> None:
    name = f"{run['info'].size} px · {run['info'].model}"
    groups = CD.seed_groups([run])
    epochs = CD.epoch_frame([run], {run["info"].id: name}, groups)
    if not len(epochs):
        st.caption("No epoch finished yet.")
        return
    labels = [label for _, label in CD.EPOCH_METRICS]
    st.altair_chart(charts.curves_chart(epochs, [name], labels, log_loss=True), width="stretch")


def _f(v) -> str:
    return "—" if v is None else f"{v:.4f}"


# Per class, two tables that each fit a 1400 px window (twenty columns did not): narrow numbers under short
# headers, the long names as help.
_COUNT, _RATE = dict(format="%d", width=58), dict(format="%.3f", width=68)
_COLUMNS = {
    "class": st.column_config.TextColumn(pinned=True),
    "support": st.column_config.NumberColumn("positives", help="Test positives.", **_COUNT),
    "threshold": st.column_config.NumberColumn("threshold", help="The class's threshold (tuned on val).", **_RATE),
    "precision": st.column_config.NumberColumn("precision", help="Precision at the threshold.", **_RATE),
    "recall": st.column_config.NumberColumn("recall", help="Recall (sensitivity) at the threshold.", **_RATE),
    "specificity": st.column_config.NumberColumn("spec.", help="Specificity at the threshold.", **_RATE),
    "f1": st.column_config.NumberColumn("F1", help="F1 at the threshold.", **_RATE),
    **{k: st.column_config.NumberColumn(k, help=f"{k.upper()} count at the threshold.", **_COUNT)
       for k in ("tp", "fp", "fn", "tn")},
    "auc": st.column_config.NumberColumn("AUC", help="Test AUC.", **_RATE),
    "auc_ci_low": st.column_config.NumberColumn("CI low", help="95% bootstrap CI of the AUC, low end.", **_RATE),
    "auc_ci_high": st.column_config.NumberColumn("CI high", help="95% bootstrap CI of the AUC, high end.", **_RATE),
    **{f"{a}_at_{b}{p}": st.column_config.NumberColumn(f"{a} @{p}% {b}", help=(
        f"{'Sensitivity' if a == 'sens' else 'Specificity'} at {p}% {'specificity' if b == 'spec' else 'sensitivity'}, "
        "read off the test ROC curve."), **_RATE) for a, b in (("sens", "spec"), ("spec", "sens")) for p in (90, 95)},
    "ece": st.column_config.NumberColumn("ECE", help="Expected calibration error.", **_RATE),
    "brier": st.column_config.NumberColumn("Brier", help="Brier score.", **_RATE),
}
AT_THRESHOLD = ["class", "support", "threshold", "precision", "recall", "specificity", "f1", "tp", "fp", "fn", "tn"]
RANKING = ["class", "support", "auc", "auc_ci_low", "auc_ci_high", "sens_at_spec90", "sens_at_spec95", "spec_at_sens90",
           "spec_at_sens95", "ece", "brier"]


def show_test(run: dict) -> None:
    test = run["test"]
    if not test:
        st.caption("Not evaluated on test yet (still training, stopped or failed).")
        return
    c = st.columns(4)
    ci = test.get("auc_ci") or [None, None]
    c[0].metric("test AUC (medmnist)", _f(test.get("auc")),
                help=None if ci[0] is None else f"95% bootstrap CI {ci[0]:.4f}–{ci[1]:.4f}")
    c[1].metric("test ACC (medmnist, 0.5)", _f(test.get("acc")))
    c[2].metric("ECE (pooled)", _f(test.get("ece")))
    c[3].metric("Brier", _f(test.get("brier")))
    per_class = pd.DataFrame([{"class": c, **v} for c, v in (test.get("per_class") or {}).items()])
    if len(per_class):
        for title, columns in (("Ranking and calibration", RANKING), ("At the run's thresholds", AT_THRESHOLD)):
            shown = [k for k in columns if k in per_class]
            st.markdown(f"**{title}**")
            st.dataframe(per_class[shown], hide_index=True, column_config={k: _COLUMNS[k] for k in shown})


def show_export(r: runs_folder.RunInfo) -> None:
    """Export the run's best model as ONNX with its thresholds and a model card, as a zip to download
    (core.export; nothing is written into the run folder or left on disk)."""
    if not runs.has_test_metrics(r.path):
        st.caption("Export needs an evaluated run (test metrics and thresholds): this one has none yet.")
        return
    st.caption("model.onnx (dynamic batch, input spec and normalisation in its metadata), the thresholds in effect and a "
               "model card (MODEL_CARD.md, model_card.json) drawn from this run folder; loads in onnxruntime "
               "without this repository. Same as `python -m core.export RUN --out DIR`.")
    if st.button("Export as ONNX with a model card", key="run_export"):
        # Imported on the click: the export loads torch and onnx, seconds the page's first paint need not wait.
        from core.export.folder import export_zip

        with st.spinner("Exporting and timing the model…"):
            try:
                st.session_state["run_export_zip"] = (r.id, export_zip(r.path))
            except (UserError, OSError) as e:
                st.error(f"Export failed: {e}")
    held = st.session_state.get("run_export_zip")
    if held and held[0] == r.id:
        st.download_button("Download the export (zip)", held[1], file_name=f"{r.id}-onnx.zip",
                           mime="application/zip", key="run_export_download")


def edit_annotations(r: runs_folder.RunInfo) -> None:
    """The run's display name, notes and tags (core.runs.annotations): shown in the run lists and on Compare; the
    folder and its id stay. Notes are shown as plain text (a run folder may come from anyone)."""
    saved = annotations.read(r.path)
    if saved.notes:
        st.text(saved.notes)
    if st.session_state.pop("run_notes_saved", None) == r.id:
        st.success("Saved.")
    with st.expander("Name, notes and tags"), st.form(f"run_notes_{r.id}", border=False):
        name = st.text_input("Display name", saved.name, max_chars=annotations.MAX_NAME, key=f"run_name_{r.id}",
                             help="Shown before the size and model in the run pickers and in Compare's legend; the "
                                  "run folder keeps its name.")
        notes = st.text_area("Notes", saved.notes, max_chars=annotations.MAX_NOTES, key=f"run_notes_text_{r.id}")
        tags = st.text_input("Tags", ", ".join(saved.tags), key=f"run_tags_{r.id}", help="Comma-separated.")
        if st.form_submit_button("Save"):
            try:
                annotations.write(r.path, name, notes, tags.split(","))
            except runs.RunError as e:
                st.error(f"Not saved: {e}")
            else:
                st.session_state["run_notes_saved"] = r.id
                st.rerun()


def main() -> None:
    st.title("Run details")  # the navigation's name for this page
    infos = read_runs(runs_dir())
    if infos is None:
        st.stop()
    if not infos and (problem := runs_dir_problem(runs_dir())):
        st.error(problem)
        st.stop()
    if not infos:
        st.info(f"No runs in {runs_dir()} yet. Train one on the Train page.")
        page_link("pages/train.py", "Train", icon=":material/model_training:")
        st.stop()
    r = pick(infos)
    run = CD.load_run(r)
    official, data = run_data_label(run["config"]) if run["config"] else (False, "unknown (no readable run config)")
    st.markdown(f"**{md_literal(run_label(r))}**  \nState: **{r.state}** · {r.epochs_done}/{r.epochs or '?'} epochs · folder "
                f"`{r.path}`")
    (st.caption if official else st.warning)(f"Data: {data}")
    edit_annotations(r)
    if run["config"]:
        page_link("pages/train.py", "Train again with this recipe", icon=":material/replay:",
                  query_params={"from_run": r.id})
    if run["error"] or r.error:
        st.error(run["error"] or r.error)
    curves, test, config, log, files, export = st.tabs(["Curves", "Test metrics", "Config", "Log", "Files", "Export"])
    with curves:
        show_curves(run)
    with test:
        show_test(run)
    with config:
        st.json(run["config"] or {}, expanded=2)
    with log:
        path = runs.log_path(r.path)
        if path.is_symlink():  # run folders travel as tar files: a planted link could show any file of this machine
            st.warning("The run's log is a symbolic link, so it is not shown. Remove the link to hide this.")
        elif path.is_file():
            text = path.read_text(errors="replace")
            st.code("\n".join(text.splitlines()[-LOG_TAIL:]) or "(empty)", language=None)
            st.download_button("Download the whole log", text.encode(), file_name=f"{r.id}.log", key="run_log")
        else:
            st.caption("No log: the run was trained from the command line (its output went to that terminal).")
    with files:
        st.dataframe(files_frame(r.path), hide_index=True,
                     column_config={"bytes": st.column_config.NumberColumn(format="localized")})
    with export:
        show_export(r)


through_app()
main()
