"""Data & runs: which ChestMNIST sizes are under the data root, how to get the others, and the runs so far.

Useful on a first start with nothing on disk: missing sizes get a Download button (with the
offline instructions when there is no internet) and the folder importer turns your own X-rays
into a data root.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from ui.common import through_app

through_app()
# The heading first: what is imported below (pandas and altair, also behind the importer) takes about a
# second at the first request after a start on a small machine, and this is the page a start opens.
st.title("Data & runs")

import altair as alt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402

from core.data import chestmnist as D  # noqa: E402
from core.runs import record as runs  # noqa: E402
from core.runs import folder as runs_folder  # noqa: E402
from core.data.importer import ImportReport, default_out_dir, import_folder  # noqa: E402
from core.data.provenance import official_split_sizes, run_data_label  # noqa: E402
from ui.common import (RUN_METRIC_COLUMNS, data_root, load_data, page_link, read_runs, run_metrics,  # noqa: E402
                          runs_dir, set_data_root)

TILE = 96  # px of one montage tile
PER_CLASS = 3  # positive images shown per finding


def _notice() -> None:
    """A success message left by the previous run (after a download, import or delete + rerun)."""
    if msg := st.session_state.pop("home_notice", None):
        st.success(msg)


@st.cache_data(max_entries=8, show_spinner=False)
def _montage(root: str, size: int, mtime: float) -> list[tuple[str, np.ndarray, int]]:
    """(class name, montage of up to PER_CLASS positive images, positives in all splits) per class."""
    d = load_data(root, size)
    out = []
    for c, name in enumerate(D.CLASS_NAMES):
        picks: list[np.ndarray] = []
        total = 0
        for split in D.SPLITS:
            s = d.split(split)
            pos = np.flatnonzero(s.labels[:, c])
            total += len(pos)
            for i in pos[:PER_CLASS - len(picks)]:
                picks.append(np.asarray(Image.fromarray(np.asarray(s.images[i])).resize((TILE, TILE), Image.Resampling.BICUBIC)))
        gap = np.full((TILE, 3), 255, np.uint8)
        tiles = picks or [np.full((TILE, TILE), 200, np.uint8)]
        row = [t for tile in tiles for t in (tile, gap)][:-1]
        out.append((name, np.hstack(row), total))
    return out


def show_size(root: Path, size: int) -> None:
    try:
        d = load_data(root, size)
    except D.DataError as e:
        st.error(f"{e}")
        return
    n = {s: len(d.split(s)) for s in D.SPLITS}
    cols = st.columns(4)
    for col, s in zip(cols, D.SPLITS):
        col.metric(f"{s} images", f"{n[s]:,}")
    cols[3].metric("total", f"{sum(n.values()):,}")
    st.caption(f"File: `{d.path}`")
    if not official_split_sizes(n) and not D.is_demo(root):  # the demo says what it is above the tabs
        official = "/".join(f"{D.OFFICIAL_COUNTS[s]:,}" for s in D.SPLITS)
        st.info(f"These split sizes differ from the official ChestMNIST release ({official} train/val/test): this is "
                "other data in ChestMNIST layout (e.g. NIH-1000 or an import). Results on it are not ChestMNIST results.")

    st.markdown("**Class prevalence per split** (fraction of images with each finding)")
    table = pd.DataFrame({"class": D.CLASS_NAMES})
    for s in D.SPLITS:
        labels = d.split(s).labels
        table[f"{s} positives"] = labels.sum(axis=0).astype(int)
        table[f"{s} prevalence"] = D.prevalence(labels)
    left, right = st.columns([2, 3])
    with left:
        long = pd.DataFrame([{"class": c, "split": s, "prevalence": float(p), "positives": int(k)}
                             for s in D.SPLITS
                             for c, p, k in zip(D.CLASS_NAMES, table[f"{s} prevalence"], table[f"{s} positives"])])
        chart = alt.Chart(long).mark_bar().encode(
            x=alt.X("prevalence:Q", axis=alt.Axis(format="%"), title="prevalence"),
            y=alt.Y("class:N", sort=list(D.CLASS_NAMES), title=None),
            yOffset=alt.YOffset("split:N", sort=list(D.SPLITS)),
            color=alt.Color("split:N", sort=list(D.SPLITS)),
            tooltip=["class", "split", alt.Tooltip("prevalence:Q", format=".2%"), "positives"],
        ).properties(height=14 * 3 * 9)
        st.altair_chart(chart, width="stretch")
    with right:  # compact headers so all seven columns fit beside the chart
        st.dataframe(table, hide_index=True, height=(D.N_CLASSES + 1) * 35 + 3, column_config={
            "class": st.column_config.TextColumn("class", pinned=True),
            **{f"{s} positives": st.column_config.NumberColumn(f"{s} n", help=f"Images with the finding in {s}.")
               for s in D.SPLITS},
            **{f"{s} prevalence": st.column_config.NumberColumn(f"{s} %", format="percent",
                                                                help=f"Fraction of {s} images with the finding.")
               for s in D.SPLITS}})

    st.markdown(f"**Positive examples per finding** (up to {PER_CLASS} per class, first ones in train, then val/test)")
    montage = _montage(str(root), size, d.path.stat().st_mtime)
    with st.container(horizontal=True):
        for name, image, total in montage:
            caption = f"{name} ({total:,} positives)" if total else f"{name}: no positive image"
            st.image(image, caption=caption, width=image.shape[1])


def download_size(root: Path, size: int) -> None:
    name = D.npz_name(size)
    bar = st.progress(0.0, text=f"Connecting to download {name}…")
    last = [-1]

    def progress(done: int, total: int) -> None:
        pct = min(100, int(100 * done / max(total, 1)))
        if pct != last[0]:
            last[0] = pct
            bar.progress(pct / 100, text=f"{name}: {done / 2**20:,.0f} of {total / 2**20:,.0f} MB")

    try:
        path = D.download(root, size, progress)
    except D.DataError as e:
        bar.empty()
        msg, how = str(e), D.offline_instructions(root, size)
        st.error(msg if how in msg else f"{msg}\n\n{how}")
        return
    st.session_state["home_notice"] = f"Downloaded {path} (MD5 checked)."
    st.rerun()


def data_section(root: Path) -> None:
    st.header("Data")
    st.caption(f"Data root: `{root}` (change it in the sidebar).")
    present: list[int] = []
    if not root.exists():
        st.error(f"The data folder {root} does not exist. Download a size below (that creates the folder), "
                 "import your own images, choose an existing folder in the sidebar, or explore the demo data.")
    elif not root.is_dir():
        st.error(f"The data root {root} is a file, not a folder. Choose the folder that holds chestmnist*.npz in the sidebar.")
    else:
        present = D.available_sizes(root)
        if not present:
            st.info(f"No ChestMNIST file in {root} yet (expected names: "
                    f"{', '.join(D.npz_name(s) for s in D.SIZES)}). Download a size below, import your own "
                    "X-rays with the folder importer, point the data root in the sidebar at a folder that has them, "
                    "or explore the demo data.")
    if not present:
        st.button("Use the demo data: 667 real NIH radiographs at every size (not ChestMNIST)", key="home_use_demo",
                  type="primary", icon=":material/play_arrow:", on_click=set_data_root, args=(D.DEMO_WORD,))
    elif D.is_demo(root):
        st.info("**Demo data: real NIH radiographs, not ChestMNIST.** 667 NIH ChestX-ray14 images bundled with the "
                "app (`demo/README.md`: sources, licence, citation), to try every page; results on them are not "
                "ChestMNIST results.")
        if not D.is_demo(default := D.default_root()):
            st.button(f"Back to {default} (for ChestMNIST)", key="home_leave_demo", on_click=set_data_root,
                      args=(str(default),))
    if present:
        # Only the open tab runs (on_change="rerun"): a first visit loads and draws one size, not all of them.
        names = [f"{s} px" for s in present]
        if st.session_state.get("home_size_tab") not in names:  # e.g. another data root: open its first size
            st.session_state.pop("home_size_tab", None)
        tabs = st.tabs(names, key="home_size_tab", on_change="rerun")
        for tab, size in zip(tabs, present):
            if tab.open:
                with tab:
                    show_size(root, size)

    missing = [s for s in D.SIZES if s not in present]
    if missing:
        st.subheader("Download missing sizes")
        st.caption(f"Official files from Zenodo ({D.ZENODO_RECORD}), MD5-checked, written into the data root. "
                   "The download runs in this page; keep it open until it finishes.")
        for size in missing:
            left, right = st.columns([3, 1], vertical_alignment="center")
            left.markdown(f"**{size} px**: `{D.npz_name(size)}`, up to {D.approx_mb(size):,} MB")
            if right.button(f"Download {size} px ({D.approx_mb(size):,} MB)", key=f"download-{size}"):
                with left:
                    download_size(root, size)


def show_report(report: ImportReport) -> None:
    st.success(f"Wrote {report.path} ({report.size}×{report.size} px) and {report.index_path.name}. "
               f"Labels from {report.layout}; split {report.split_source}.")
    counts = pd.DataFrame({"split": list(report.n_images), "images": list(report.n_images.values())})
    per_class = pd.DataFrame({"class": D.CLASS_NAMES} | {
        f"{s} positives": [report.class_counts[s][c] for c in D.CLASS_NAMES] for s in report.n_images})
    left, right = st.columns([1, 3])
    left.dataframe(counts, hide_index=True)
    right.dataframe(per_class, hide_index=True)
    for w in report.warnings:
        st.warning(w)
    if report.skipped:
        with st.expander(f"Skipped {len(report.skipped):,} image(s) named in the CSV"):
            st.dataframe(pd.DataFrame(report.skipped, columns=["image", "reason"]), hide_index=True)
    if report.ignored_files:
        with st.expander(f"Ignored {report.n_ignored:,} file(s) in the folder that the CSV does not name"):
            st.dataframe(pd.DataFrame(report.ignored_files, columns=["file", "reason"]), hide_index=True)
    out = report.path.parent
    if out.resolve() != data_root().resolve():
        st.button(f"Use {out} as the data root", on_click=set_data_root, args=(str(out),), key="import_use_root")
    st.caption("Imported data is not ChestMNIST: label its results as your data, never as ChestMNIST results.")


def import_section(expanded: bool) -> None:
    with st.expander("Import your own X-rays (image folder + label CSV)", expanded=expanded):
        st.caption("NIH layout (`Image Index`, `Finding Labels` joined by `|`, optional `Patient ID`, `Split`) or one "
                   "0/1 column per ChestMNIST class. Images are made 8-bit grayscale, centre-cropped to a square and "
                   "resized like medmnist did; without a `Split` column the split is patient-disjoint 70/10/20.")
        images_dir = st.text_input("Images folder", key="import_images", placeholder="/path/to/images")
        labels_csv = st.text_input("Labels CSV", key="import_csv", placeholder="/path/to/labels.csv")
        left, mid, right = st.columns([1, 1, 3])
        size = left.selectbox("Size", D.SIZES, index=1, format_func=lambda s: f"{s} px", key="import_size")
        seed = mid.number_input("Split seed", 0, 2**31 - 1, 0, key="import_seed",
                                help="Seed of the patient-disjoint split (used only without a Split column).")
        out = right.text_input("Output folder", key="import_out", placeholder=str(default_out_dir().parent / "<now>"),
                               help="Empty: a new folder under ~/chestmnist-imports. Never the bundled demo.")
        replace = st.checkbox("Replace an existing file of this size there (the old one is kept, renamed; refused "
                              "when a run was trained on it)", key="import_replace")
        if st.button("Import", key="import_go", type="primary"):
            if not images_dir.strip() or not labels_csv.strip():
                st.error("Enter both the images folder and the labels CSV.")
            else:
                out_dir = Path(out.strip()).expanduser() if out.strip() else default_out_dir()
                bar = st.progress(0.0, text="Reading the label CSV and scanning the folder…")
                try:
                    report = import_folder(Path(images_dir.strip()).expanduser(), Path(labels_csv.strip()).expanduser(),
                                           int(size), out_dir, seed=int(seed), replace=replace, runs_dir=runs_dir(),
                                           on_progress=lambda done, total: bar.progress(
                                               done / max(total, 1), text=f"Decoding images: {done:,} of {total:,}"))
                except D.DataError as e:  # DataImportError, or a size check
                    bar.empty()
                    st.error(f"Import failed: {e}")
                else:
                    st.session_state["import_report"] = report
                    st.rerun()
        if isinstance(report := st.session_state.get("import_report"), ImportReport):
            show_report(report)


def _fmt_epochs(r: runs_folder.RunInfo) -> str:
    return f"{r.epochs_done}/{r.epochs if r.epochs is not None else '?'}"


def runs_section(where: Path) -> None:
    st.header("Runs")
    st.caption(f"Runs folder: `{where}` (change it in the sidebar).")
    infos = read_runs(where)
    if infos is None:
        return
    if not infos:
        st.info(f"No runs yet in {where}. Start one on the Train page; each run gets its own folder here.")
        page_link("pages/train.py", "Train", icon=":material/model_training:")
        return
    table = []
    for r in infos:
        try:
            data = run_data_label(runs.read_config(r.path))[1]
        except runs.RunError:
            data = r.data_root or "?"
        table.append({"run": r.id, "status": r.state, "size (px)": r.size, "model": r.model, "epochs": _fmt_epochs(r),
                      **run_metrics(r), "data": data})
    # Every column fits a 1400 px window (the browser test measures it): the long run id pinned and the data
    # file last, both at a medium width (drag to widen, hover for all of it); errors below, per run.
    st.dataframe(pd.DataFrame(table), hide_index=True, column_config={
        "run": st.column_config.TextColumn("run", pinned=True, width="medium"),
        "epochs": st.column_config.TextColumn("epochs", help="Epochs done / planned."),
        **RUN_METRIC_COLUMNS,
        "data": st.column_config.TextColumn("data", width="medium", help="The data file the run trained on; "
                                                                         "'NOT ChestMNIST' for any other data."),
    })
    st.caption("Test metrics appear once a run has finished (it is then evaluated on test with its best checkpoint).")
    troubled = [r for r in infos if r.error]
    if troubled:
        failed = sum(r.state == "failed" for r in troubled)
        title = f"Messages of {len(troubled)} run(s) that stopped early" + (f" ({failed} failed)" if failed else "")
        with st.expander(title):
            for r in troubled:
                (st.error if r.state == "failed" else st.caption)(f"**{r.id}** ({r.state}): {r.error}")

    deletable = {r.id: r for r in infos if r.state != "running"}
    with st.expander("Delete a run"):
        if not deletable:
            st.caption("Every run is training; stop one on the Train page before deleting it.")
            return
        choice = st.selectbox("Run", list(deletable), key="delete_choice",
                              format_func=lambda i: f"{i} ({deletable[i].state})")
        if st.button("Delete…", key="delete_ask"):
            st.session_state["delete_pending"] = choice
        pending = st.session_state.get("delete_pending")
        if pending:
            queued = " It is queued: a background queue waiting to train it skips it and trains the rest." \
                if deletable.get(pending) and deletable[pending].state == "queued" else ""
            st.warning(f"Delete run **{pending}** and all its files (checkpoints, metrics, scores)? "
                       f"This cannot be undone.{queued}")
            yes, no = st.columns(2)
            if yes.button("Yes, delete", type="primary", key="delete_yes"):
                st.session_state.pop("delete_pending", None)
                try:
                    runs_folder.check_runs_dir(where)
                    kept = runs_folder.delete_run(where, pending)
                except (runs.RunError, OSError) as e:
                    st.error(f"Not deleted: {e}")
                else:
                    st.session_state["home_notice"] = f"Deleted run {pending}." + (
                        f" Kept what this tool did not write there ({', '.join(kept)}), and the folder with it."
                        if kept else "")
                    st.rerun()
            if no.button("Cancel", key="delete_no"):
                st.session_state.pop("delete_pending", None)
                st.rerun()


_notice()
root = data_root()
data_section(root)
import_section(expanded=not (root.is_dir() and D.available_sizes(root)))
runs_section(runs_dir())
