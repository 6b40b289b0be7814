"""Helpers shared by the pages: where data and runs live, cached loads, run pickers.

Not a page itself (app.py lists the pages). Cached functions take paths plus the file's mtime
so a changed file is re-read and an unchanged one never is.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import streamlit as st

from core.data import chestmnist as D
from core.runs import record as runs
from core.runs import folder as runs_folder
from core import settings


# The metrics of a run in the run tables (Data & runs, Train): 4 decimals, short headers, full names as help.
RUN_METRIC_COLUMNS = {
    # "max", not "best": the kept (best) checkpoint is chosen by the run's select-by metric, maybe val loss.
    "max val AUC (medmnist)": st.column_config.NumberColumn("max val AUC", format="%.4f",
                                                            help="Highest val AUC (medmnist) over the epochs; the "
                                                                 "kept checkpoint is chosen by the run's select-by "
                                                                 "metric."),
    "test AUC (medmnist)": st.column_config.NumberColumn("test AUC", format="%.4f", help="test AUC (medmnist)."),
    "test ACC (medmnist, 0.5)": st.column_config.NumberColumn("test ACC", format="%.4f",
                                                              help="test ACC (medmnist): per-label accuracy at 0.5."),
}


def through_app() -> None:
    """Make sure app.py runs this page (its navigation, page config and sidebar); each page calls it first.

    Streamlit (1.67) starts every server process in its legacy multipage mode because the pages sit
    in a folder named pages/: it runs pages/<name>.py for the URL /<name> directly, with a sidebar
    listing every file in pages/, until some script calls st.navigation. So when the first request
    after a start opens a page URL (a bookmark, a reload, a second tab), app.py never ran: no
    sidebar settings, no wide layout, "app, common, compare, …" in the sidebar. In that mode this
    switches the process to st.navigation's mode (what calling st.navigation does) and reruns: the
    rerun runs app.py, which opens the same page (its URL path is the file name either way).
    Elsewhere it does nothing: once app.py has called st.navigation the flag stays off, and a page
    run on its own (AppTest, `streamlit run pages/x.py`) has no pages/ folder beside it.
    """
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # a Streamlit without the legacy mode: nothing to do
        return
    if getattr(PagesManager, "uses_pages_directory", False):
        PagesManager.uses_pages_directory = False
        st.rerun()


def data_root() -> Path:
    """The data folder the sidebar names (the word `demo` is the bundled demo set)."""
    return D.resolve_root(st.session_state.get("data_root"))


def runs_dir() -> Path:
    return Path(st.session_state.get("runs_dir") or runs_folder.default_runs_dir()).expanduser()


def data_root_problem(root: Path) -> str | None:
    """Why the sidebar's data root cannot hold data, in the app's terms (the core's errors name the command
    line's --data-root); None when it is a folder, or the default one not made yet (a fresh clone: no typo)."""
    if root.is_dir() or (not root.exists() and root == D.default_root()):
        return None
    what = "is a file, not a folder" if root.exists() else "does not exist"
    return (f"The data root {root} {what}. Choose the folder that holds the chestmnist*.npz files in the sidebar "
            "(a typo?), download or import data on the Data & runs page, or use the demo data.")


def runs_dir_problem(where: Path) -> str | None:
    """Why the sidebar's runs folder holds no runs when it cannot (missing, a file), in the app's terms; None when
    it is a folder, or the default one not made yet (no run trained: no typo)."""
    if where.is_dir() or (not where.exists() and where == runs_folder.default_runs_dir()):
        return None
    what = "is a file, not a folder" if where.exists() else "does not exist"
    return (f"The runs folder {where} {what}. Choose the folder that holds your runs in the sidebar (a typo?); "
            "training in a folder that does not exist yet creates it.")


def _remember(key: str) -> None:
    """Save a sidebar setting to the settings file, so a new tab or a restart opens with it."""
    try:
        settings.save({key: st.session_state[key]})
    except settings.SettingsError as e:
        st.session_state["settings_error"] = str(e)


def set_data_root(text: str) -> None:
    """Switch to another data root and remember it (an on_click: it runs before the sidebar's widget)."""
    st.session_state["data_root"] = text
    _remember("data_root")


def sidebar_settings() -> None:
    """Data root and runs folder, editable in the sidebar, and kept across reloads and tabs.

    A new session takes each from the URL (`?data_root=…&runs_dir=…`, what a reload or a shared
    link carries), else the settings file (core.settings, the last change made in any tab), else
    CHESTMNIST_ROOT / CHESTMNIST_RUNS and their defaults. A change is saved to the file and put in
    the URL. With no ChestMNIST file under the data root, the bundled demo is one click away.
    """
    defaults = {"data_root": str(D.default_root()), "runs_dir": str(runs_folder.default_runs_dir())}
    if any(key not in st.session_state for key in defaults):
        try:
            saved = settings.load()
        except settings.SettingsError as e:
            saved, st.session_state["settings_error"] = {}, str(e)
        for key, default in defaults.items():
            st.session_state.setdefault(key, url_folder(key) or saved.get(key) or default)
    remembered = f"A change is remembered across reloads and tabs, over the environment, in {settings.settings_path()}."
    with st.sidebar:
        st.text_input("Data root", key="data_root", on_change=_remember, args=("data_root",),
                      help="Folder with chestmnist*.npz files (default: CHESTMNIST_ROOT, else ~/.medmnist); "
                           f"`{D.DEMO_WORD}` is the bundled demo set. {remembered}")
        root = data_root()
        if problem := data_root_problem(root):
            st.error(problem)
        if D.is_demo(root):
            st.caption("Demo: real NIH radiographs, **not ChestMNIST** (`demo/README.md`).")
        elif not D.available_sizes(root):
            st.button("Use the demo data", key="sidebar_use_demo", on_click=set_data_root, args=(D.DEMO_WORD,),
                      help="No ChestMNIST file here. The demo: 667 real NIH chest X-rays at every size, bundled "
                           "with the app; not ChestMNIST.")
        st.text_input("Runs folder", key="runs_dir", on_change=_remember, args=("runs_dir",),
                      help=f"Where run folders are written (default: CHESTMNIST_RUNS, else checkpoints/). {remembered}")
        if problem := runs_dir_problem(runs_dir()):
            st.warning(problem)
        try:
            runs_folder.check_runs_dir(runs_dir())
        except runs.RunError as e:  # reading it is fine; training, saving and deleting there are refused
            st.warning(f"{e} Runs there can be read, but nothing is written or deleted there.")
        if msg := st.session_state.pop("settings_error", None):
            st.warning(msg)
    for key, default in defaults.items():  # the URL carries what differs from the defaults
        value = st.session_state[key]
        if value != default and st.query_params.get(key) != value:
            st.query_params[key] = value
        elif value == default and key in st.query_params:
            del st.query_params[key]


# What a folder taken from the URL may not hold: messages render markdown, where these make links,
# remote images and code spans (a link's text must never draw inside the app).
_MARKUP = ("[", "]", "(", ")", "<", ">", "`", "\n", "\r", "://", "www.")


def url_folder(key: str) -> str | None:
    """The folder the URL names under `key`, or None when it holds markup (see _MARKUP) or is absent."""
    value = st.query_params.get(key)
    return value if value and not any(m in value.lower() for m in _MARKUP) else None


def file_mtime(path: Path) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


@st.cache_resource(max_entries=4, show_spinner="Loading images…")
def _load_data(root: str, size: int, mtime: float) -> D.ChestData:
    return D.load(root, size)


def load_data(root: str | Path, size: int) -> D.ChestData:
    """ChestData for `size` under `root`, cached across reruns and sessions (raises DataError)."""
    return _load_data(str(root), size, file_mtime(D.npz_path(root, size)))


@st.cache_data(max_entries=32, show_spinner=False)
def _load_scores(run_dir: str, split: str, mtime: float):
    return runs.load_scores(run_dir, split)


def load_scores(run_dir: str | Path, split: str):
    """(scores, labels) of a run's split, cached until the file changes (raises RunError)."""
    return _load_scores(str(run_dir), split, file_mtime(runs.scores_path(run_dir, split)))


# Inside a line of st.markdown these start markup (emphasis, links, HTML, code, LaTeX, strike-through, tables, and
# ':name:' emoji and icons); a run's name, model and id come from a run folder, which anyone may have sent.
_MD_INLINE = re.compile(r"([\\`*_\[\]()<>$~|:])")


def md_literal(text: str) -> str:
    """`text` as st.markdown shows it literally (each markup character backslash-escaped), for use mid-line."""
    return _MD_INLINE.sub(r"\\\1", text)


def run_label(info: runs_folder.RunInfo) -> str:
    """How the run pickers name a run: its display name and tags (when given), size, model, state, test AUC, id."""
    auc = f", test AUC {info.test_auc:.3f}" if info.test_auc is not None else ""
    given = "".join(f"{part} · " for part in (info.display_name, " ".join(f"#{t}" for t in info.tags)) if part)
    return f"{given}{info.size} px · {info.model} · {info.state}{auc} · {info.id}"


def read_runs(where: Path) -> list[runs_folder.RunInfo] | None:
    """The runs in `where`, newest first; None after showing why the folder cannot be read."""
    try:
        return runs_folder.list_runs(where)
    except OSError as e:
        st.error(f"Cannot read the runs folder {where}: {e.strerror or e}. Choose another folder in the sidebar.")
        return None


def run_metrics(r: runs_folder.RunInfo) -> dict[str, float | None]:
    """A run's cells under RUN_METRIC_COLUMNS in the run tables."""
    return dict(zip(RUN_METRIC_COLUMNS, (r.max_val_auc, r.test_auc, r.test_acc)))


def evaluated_runs() -> list[runs_folder.RunInfo] | None:
    """Runs that have test scores (finished, or evaluated after a stop); None when the runs folder
    cannot be read (said on the page)."""
    infos = read_runs(runs_dir())
    return None if infos is None else [r for r in infos if runs.has_scores(r.path, "test")]


def pick_run(available: list[runs_folder.RunInfo] | None, label: str = "Run", key: str = "run") -> runs_folder.RunInfo | None:
    """A selectbox over `available` (evaluated_runs()); None (with guidance shown) when there are none."""
    if available is None:
        return None
    if not available:
        st.info("No evaluated runs yet in the runs folder. Train one on the **Train** page; "
                "it is evaluated on test when it finishes.")
        return None
    by_id = {r.id: r for r in available}
    if st.session_state.get(key) not in by_id:
        st.session_state[key] = available[0].id
    chosen = st.selectbox(label, list(by_id), key=key, format_func=lambda i: run_label(by_id[i]))
    return by_id[chosen]


def page_link(page: str, label: str, icon: str | None = None, query_params: dict[str, str] | None = None) -> None:
    """st.page_link to one of app.py's pages (with `query_params` in its URL), or a plain hint where that page is
    not registered (a page run on its own with `streamlit run pages/x.py`, or in AppTest)."""
    from streamlit.errors import StreamlitAPIException

    try:
        st.page_link(page, label=label, icon=icon, query_params=query_params)
    except StreamlitAPIException:
        st.caption(f"Open **{label}** from the app's navigation.")


RUN_PAGE = "run"  # the run page's URL path (pages/run.py in app.py's navigation)


def run_url(run_id: str) -> str:
    """A link to the run page for `run_id` (`run?run=<id>`, relative, so it works under any base path),
    carrying the data root and runs folder the current URL names."""
    from urllib.parse import urlencode

    params = {k: st.query_params[k] for k in ("data_root", "runs_dir") if k in st.query_params}
    return f"{RUN_PAGE}?{urlencode({'run': run_id, **params})}"


RUN_LINK_COLUMN = st.column_config.LinkColumn("details", display_text="open", width="small",
                                              help="The run page: its config, log, curves, test metrics and files.")
