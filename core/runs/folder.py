"""The runs folder: list its runs, say whether one trains, delete one, and guard where runs are written.

Each run's files are core.runs' business; this module works on the folder of runs through
core.runs' readers and never spells a run file's name.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import env
from core.runs import annotations
from core.runs import record as runs
from core.runs.record import RunError


def default_runs_dir() -> Path:
    """`CHESTMNIST_RUNS` if set, else `checkpoints/` in the current folder."""
    return env.runs_dir()


def resolve_run(runs_dir: str | Path, run_id: str) -> Path:
    """The folder of `run_id` inside `runs_dir`; refuses ids that point anywhere else."""
    runs_dir = Path(runs_dir).expanduser().resolve()
    if not run_id or run_id != Path(run_id).name or run_id in (".", ".."):
        raise RunError(f"{run_id!r} is not a run id (a folder name inside {runs_dir}).")
    path = runs_dir / run_id
    if path.is_symlink() or path.resolve().parent != runs_dir:
        raise RunError(f"{run_id!r} does not resolve to a folder inside {runs_dir}; refusing to touch it.")
    return path


@dataclass
class RunInfo:
    """One line of the runs overview."""

    path: Path
    id: str
    state: str
    size: int | None
    model: str | None
    name: str
    epochs_done: int
    epochs: int | None
    max_val_auc: float | None
    test_auc: float | None
    test_acc: float | None
    data_root: str | None
    created: float
    error: str | None = None
    display_name: str = ""  # the name a person gave it (core.runs.annotations); the id stays
    tags: tuple[str, ...] = ()


def run_info(run_dir: str | Path) -> RunInfo:
    """Summarise a run folder; never raises for a damaged run (its error is reported instead)."""
    run_dir = Path(run_dir)
    status = runs.read_status(run_dir)
    error = status.get("error")
    try:
        train = runs.read_config(run_dir)["train"]
    except RunError as e:
        train, error = {}, str(e)
    rows = runs.read_metrics(run_dir)
    aucs = [r["val_auc"] for r in rows if r.get("val_auc") is not None]
    test = {}
    if runs.has_test_metrics(run_dir):
        try:
            test = runs.read_test_metrics(run_dir)
        except RunError as e:
            error = error or str(e)
    notes = annotations.read(run_dir)

    def typed(key: str, kind: type, default: Any = None) -> Any:  # a hand-edited config shows as unknown, not a crash
        value = train.get(key)
        return value if isinstance(value, kind) and not isinstance(value, bool) else default
    return RunInfo(path=run_dir, id=run_dir.name, state=status.get("state", "failed"), size=typed("size", int),
                   model=typed("model", str), name=typed("name", str, ""), epochs_done=len(rows), epochs=typed("epochs", int),
                   max_val_auc=max(aucs) if aucs else None, test_auc=test.get("auc"), test_acc=test.get("acc"),
                   data_root=typed("data_root", str), created=run_dir.stat().st_mtime if run_dir.exists() else 0.0,
                   error=error if error is None else str(error), display_name=notes.name, tags=notes.tags)


def _is_run_folder(path: Path) -> bool:
    """A real folder (not a symlink) holding a run's config or status: what listing shows and a runs folder may hold."""
    return path.is_dir() and not path.is_symlink() and runs.holds_run_files(path)


def _run_dirs(runs_dir: str | Path | None) -> list[Path]:
    """Every run folder (one holding a run's config or status) in `runs_dir`."""
    runs_dir = Path(runs_dir).expanduser() if runs_dir else default_runs_dir()
    if not runs_dir.is_dir():
        return []
    return [d for d in runs_dir.iterdir() if _is_run_folder(d)]


def runs_on_data(runs_dir: str | Path | None, data_file: str | Path, md5: str) -> list[str]:
    """Ids of the runs in `runs_dir` trained on `data_file`: its MD5 in their config, or its folder and name
    (a run recorded without an MD5). What an import must not replace."""
    where = Path(data_file).resolve()
    found = []
    for d in _run_dirs(runs_dir):
        try:
            config = runs.read_config(d)
        except RunError:
            continue
        data = config.get("data") if isinstance(config.get("data"), dict) else {}
        root, name = config["train"].get("data_root"), data.get("file")
        here = isinstance(root, str) and isinstance(name, str) and (Path(root) / name).resolve() == where
        if here or data.get("md5") == md5:
            found.append(d.name)
    return sorted(found)


def list_runs(runs_dir: str | Path | None = None) -> list[RunInfo]:
    """Every run folder in `runs_dir`, newest first."""
    return sorted((run_info(d) for d in _run_dirs(runs_dir)), key=lambda r: r.id, reverse=True)


def any_running(runs_dir: str | Path | None = None) -> bool:
    """Whether a run in `runs_dir` is training now: its status files only, not what list_runs reads."""
    return any(runs.read_status(d).get("state") == "running" for d in _run_dirs(runs_dir))


def delete_run(runs_dir: str | Path, run_id: str) -> list[str]:
    """Delete one run's files and its folder; returns the names of anything left (not ours).

    Refuses a running run, anything outside `runs_dir`, symlinks, and folders this tool cannot
    prove it created (is_own_run: the run-id name, the marker, a status file). Only the files a
    run writes are removed, never through a symlink; anything else in the folder is kept (and the
    folder with it) and named in the result.
    """
    path = resolve_run(runs_dir, run_id)
    if not path.is_dir():
        raise RunError(f"No run {run_id!r} in {runs_dir}.")
    # A delete cut short after the status file went leaves the marker alone: still ours, deletable again.
    if not runs.is_own_run(path) or not (runs.has_status(path) or not runs.holds_run_files(path)):
        raise RunError(f"{path} was not created by this tool (it lacks the run marker {runs.MARKER}, a run id for a "
                       "name or a status file), so it is not deleted. Delete it by hand if you are sure.")
    if runs.read_status(path).get("state") == "running":
        raise RunError(f"Run {run_id} is still training; stop it before deleting it.")
    ours = runs.own_file_names(path) | annotations.file_names()
    kept = []
    # The config, status and marker last, in that order: a delete that fails half way leaves a run that
    # reads as damaged (not `finished` without its checkpoint) and that this tool still owns and can delete.
    last = {runs.config_path(path).name: 1, runs.status_path(path).name: 2, runs.MARKER: 3}
    for entry in sorted(os.scandir(path), key=lambda e: last.get(e.name, 0)):
        if entry.name in ours and entry.is_file(follow_symlinks=False):
            os.unlink(entry.path)
        else:
            kept.append(entry.name)
    if not kept:
        path.rmdir()
    return kept


_SYSTEM = tuple(Path(p) for p in ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/proc", "/sbin",
                                  "/sys", "/usr"))


def check_runs_dir(path: str | Path) -> Path:
    """`path`, resolved, if runs may be written there; RunError saying why not and what to do otherwise.

    A runs folder is one that does not exist yet (it is created), is empty, or holds only run folders
    (a config or status file inside) and hidden files (`.gitkeep`). Never the root folder or a system
    folder (/etc, /proc, /usr, ...), nor a file. Reading any folder is fine; this guards writing.
    """
    path = Path(path).expanduser().resolve()
    if path == Path("/") or any(path == s or s in path.parents for s in _SYSTEM):
        raise RunError(f"{path} is a system folder; runs are not written there. Choose a folder of your own "
                       "(e.g. ~/chestmnist-runs) for the runs folder.")
    if not path.exists():
        return path
    if not path.is_dir():
        raise RunError(f"The runs folder {path} is a file, not a folder. Choose a folder for the runs.")
    try:
        entries = list(path.iterdir())
    except OSError as e:
        raise RunError(f"The runs folder {path} cannot be read ({e.strerror}); choose another folder.") from None
    foreign = sorted(e.name for e in entries if not e.name.startswith(".") and not _is_run_folder(e))
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise RunError(f"{path} holds things that are not runs ({shown}), so it is not used as a runs folder. "
                       "Choose an empty folder, a new one, or one that holds only runs.")
    return path
