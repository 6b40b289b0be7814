"""Train prepared runs in a detached background process (the app's Train page uses it)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from core.runs import record as runs


def launch(run_dirs: list[Path]) -> int:
    """Train prepared run folders one after another in a detached background process; its pid.

    The process has its own session, so it outlives the caller (a Streamlit rerun, a closed tab,
    the app's server); its output goes to the first run's log (runs.log_path). Follow it with
    runs.read_status / runs.read_progress / runs.read_metrics and stop it with runs.request_stop.
    Its OpenMP threads sleep instead of spin-waiting between parallel regions (unless the caller
    set OMP_WAIT_POLICY): a background run shares the cores with the app that launched it, and
    spinning threads on a small shared machine slow both down (docs/performance.md).
    """
    run_dirs = [Path(p).resolve() for p in run_dirs]
    for run_dir in run_dirs:
        runs.clear_stop(run_dir)
    return detached(["-m", "core.train", "--run-dirs", *map(str, run_dirs)], runs.log_path(run_dirs[0]))


def detached(args: list[str], log_path: Path) -> int:
    """`python *args` from the repository root in its own session, appending its output to `log_path` (never
    through a planted link: RunError), OpenMP threads sleeping as launch says; its pid."""
    log = runs.open_own(log_path, "ab")
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, *args], cwd=root, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True,
                            env={"OMP_WAIT_POLICY": "PASSIVE", **os.environ, "PYTHONUNBUFFERED": "1"})
    log.close()
    return proc.pid

