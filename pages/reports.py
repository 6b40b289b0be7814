"""Reports: the resolution studies built by `python -m core.study`, listed and shown as written.

Each report folder holds summary.json (every number), report.md and its figures; core.study's
load_study reads them. Nothing is recomputed here.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.study import StudyError, list_studies, load_study
from core.study.common import DEFAULT_REPORTS_DIR
from ui.common import through_app


def main() -> None:
    st.title("Study reports")
    where = Path(st.text_input("Reports folder", value=str(DEFAULT_REPORTS_DIR), key="reports_dir",
                               help="Where `python -m core.study --out` wrote its reports (default: reports/).")
                 ).expanduser()
    found = list_studies(where)
    if not found:
        st.info(f"No study report in {where.resolve()}. Build one with `python -m core.study --sizes 28 64 --epochs 5 "
                "--seeds 2 --data-root demo` (docs/study.md); it is listed here when it is done.")
        return
    chosen = st.selectbox("Report", found, key="reports_pick", format_func=lambda p: p.name)
    try:
        report = load_study(chosen)
    except StudyError as e:
        st.error(f"{e}")
        return
    st.header(report.name)
    if report.data_warning:
        st.warning(report.data_warning)
    for line in report.observations:
        st.markdown(f"- {line}")
    for title, table in report.tables().items():
        st.subheader(title)
        st.dataframe(table, hide_index=True)
    for name, path in report.figures.items():
        if path.is_file():
            st.image(str(path), caption=name.replace("_", " "))
    try:
        text = report.markdown
    except OSError:  # summary.json without report.md: the tables and figures above are the report
        text = None
    if text:
        with st.expander("report.md as written (figures above)"):
            st.markdown(text)
        st.download_button("Download report.md", text.encode(), file_name=f"{report.name}.md", key="reports_md")
    try:
        st.download_button("Download every run's numbers (CSV)", report.runs_frame().to_csv(index=False).encode(),
                           file_name=f"{report.name}-runs.csv", key="reports_csv")
    except OSError:
        pass  # no per-run table in this report

through_app()
main()
