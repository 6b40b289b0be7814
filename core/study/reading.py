"""Reading a built report: StudyReport over summary.json, load_study and list_studies."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from core.runs import record as runs
from core.study.common import DEFAULT_REPORTS_DIR, STUDY_VERSION, StudyError
from core.study.markdown import observations
from core.study.recipe import study_file
from core.study.tables import format_tables, row_label


@dataclass
class StudyReport:
    """A built report: `summary` is summary.json (every number); helpers give tables and figure paths."""

    report_dir: Path
    summary: dict

    @property
    def name(self) -> str:
        return self.summary["name"]

    @property
    def official_data(self) -> bool:
        return bool(self.summary["data"]["official"])

    @property
    def data_warning(self) -> str | None:
        """A sentence to show prominently when the data is not the official ChestMNIST, else None."""
        if self.official_data:
            return None
        d = self.summary["data"]
        return f"Data: {d['label']}; do not quote these numbers as ChestMNIST results. {d['verdict']}"

    @property
    def observations(self) -> list[str]:
        """Plain statements the numbers support (chance level, overlapping CIs, best size vs cost)."""
        return list(self.summary.get("observations") or observations(self.summary))

    def tables(self) -> dict[str, pd.DataFrame]:
        """Table 1 (validation), Test and Cost as display strings, exactly as in report.md."""
        return format_tables(self.summary)

    def runs_frame(self) -> pd.DataFrame:
        """One row per run with every per-run number (runs.csv)."""
        return pd.read_csv(self.report_dir / "runs.csv")

    def sizes_frame(self) -> pd.DataFrame:
        """One row per size: means (and _std over seeds, _ci_low/_ci_high for one seed), as numbers."""
        return pd.DataFrame([{k: v for k, v in r.items() if not isinstance(v, (dict, list))}
                             for r in self.summary["sizes"]])

    def per_class_frame(self) -> pd.DataFrame:
        """Test AUC, classes x rows (sizes, or candidates and sizes; NaN where undefined)."""
        return pd.DataFrame({row_label(self.summary, r): r["test_auc_per_class"] for r in self.summary["sizes"]}).astype(float)

    def differences_frame(self) -> pd.DataFrame:
        """The paired differences (core.study.differences) as numbers, one row per comparison."""
        return pd.DataFrame([{k: v for k, v in r.items() if k != "per_class"}
                             for r in (self.summary.get("differences") or {}).get("rows", [])])

    @property
    def figures(self) -> dict[str, Path]:
        return {k: self.report_dir / v for k, v in self.summary.get("figures", {}).items()}

    @property
    def markdown(self) -> str:
        return (self.report_dir / "report.md").read_text()


def load_study(report_dir: str | Path) -> StudyReport:
    """Open a built report folder (summary.json); StudyError if it has none."""
    report_dir = Path(report_dir)
    path = report_dir / "summary.json"
    if not path.is_file():
        hint = " It has study.json: run `python -m core.study --report-only --out " + str(report_dir) + "`." \
            if study_file(report_dir).is_file() else ""
        raise StudyError(f"{report_dir} holds no study report (no summary.json).{hint}")
    try:
        summary = runs.read_json(path)
    except runs.RunError as e:
        raise StudyError(str(e)) from None
    if summary.get("format_version", 0) > STUDY_VERSION:
        raise StudyError(f"{path} was written by a newer version of this tool; update to read it.")
    return StudyReport(report_dir, summary)


def list_studies(reports_dir: str | Path = DEFAULT_REPORTS_DIR) -> list[Path]:
    """Report folders (holding summary.json) under `reports_dir`, newest first."""
    reports_dir = Path(reports_dir)
    if not reports_dir.is_dir():
        return []
    found = [d for d in reports_dir.iterdir() if (d / "summary.json").is_file()]
    return sorted(found, key=lambda d: (d / "summary.json").stat().st_mtime, reverse=True)


