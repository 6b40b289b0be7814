"""The resolution trade-off study: one recipe at several image sizes and seeds, one report.

    python -m core.study --sizes 28 64 128 224 --epochs 30 --seeds 3
    python -m core.study --sizes 28 64 --epochs 2 --data-root demo
    python -m core.study --sizes 28 64 128 224 --epochs 30 --nproc-per-node 4    # each run on 4 GPUs (DDP)
    python -m core.study --report-only --out reports/<study-name>                 # rebuild the report only

Every size and seed gets its own ordinary run folder (core.train), named `study-<name>-s<seed>`,
and the report folder (default `reports/<name>/`) keeps `study.json`, the list of those run
folders. Running the same command again re-uses finished runs, resumes stopped or interrupted
ones and trains only what is missing, then rebuilds the report: report.md, summary.json (every
number), CSV tables and PNG figures.

Each run trains in a child process so its peak memory can be measured on its own (the child's
maximum resident set size from the kernel, and on CUDA torch's peak allocated GPU memory).

Parts: common (constants, errors), recipe (names, study.json), runner (the grid), records (per-run
numbers), tables, figures, markdown, report (build_report), reading (StudyReport), cli.

From Python (a notebook): `load_study(report_dir)` opens a finished report,
`build_report(run_dirs, out_dir)` builds one from any finished runs, `list_studies()` finds them.
"""
from __future__ import annotations

from core.study.common import (COST_KEYS, DEFAULT_REPORTS_DIR, FIGURES, STUDY_VERSION, TEST_KEYS, VAL_KEYS, StudyError,
                               StudyStopped)
from core.study.cli import main
from core.study.markdown import observations
from core.study.reading import StudyReport, list_studies, load_study
from core.study.recipe import check_sizes, default_name, read_study_file, recipe_of, run_name
from core.study.report import build_report, rebuild_report
from core.study.runner import run_study
from core.study.tables import format_tables

__all__ = ["COST_KEYS", "DEFAULT_REPORTS_DIR", "FIGURES", "STUDY_VERSION", "TEST_KEYS", "VAL_KEYS", "StudyError", "StudyStopped",
           "StudyReport", "build_report", "check_sizes", "default_name", "format_tables", "list_studies", "load_study", "main",
           "observations", "read_study_file", "rebuild_report", "recipe_of", "run_name", "run_study"]
