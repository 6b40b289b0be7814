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
numbers), frontier (images or pixels: AUC against training compute over sizes x --subsets), tables,
figures, markdown, report (build_report), reading (StudyReport), cli.

From Python (a notebook): `load_study(report_dir)` opens a finished report,
`build_report(run_dirs, out_dir)` builds one from any finished runs, `list_studies()` finds them.
"""
from core.lazy import lazy_exports

# Each name is imported from its part on first use: importing one part (the Train page's core.study.recipe)
# then loads only that part, not the report's matplotlib and scikit-learn, which take seconds to import.
__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "common": ("COST_KEYS", "DEFAULT_REPORTS_DIR", "FIGURES", "STUDY_VERSION", "TEST_KEYS", "VAL_KEYS", "StudyError",
               "StudyStopped"),
    "cli": ("main",),
    "markdown": ("observations",),
    "reading": ("StudyReport", "list_studies", "load_study"),
    "recipe": ("check_sizes", "default_name", "read_study_file", "recipe_of", "run_name"),
    "report": ("build_report", "rebuild_report"),
    "runner": ("run_study",),
    "tables": ("format_tables",),
})
