"""Run folders: the owner of their files but core.runs.annotations' (a person's name, notes, tags for a run).

A run is `<runs-dir>/<run-id>/` holding plain files a person can read. No other module spells
these names or parses these files; it calls the readers and writers here. Two neighbours work
through them: core.runs.checkpoints (de)serialises the .pt files with torch (so reading a run needs no
torch), and core.runs.folder lists, deletes and guards the runs of one folder.

Each file, its reader and writer here, and its content: docs/run-folder.md (the table there is this
module's map; keep the two in step).

Every write is atomic (temp file + rename), so a killed process leaves the previous version.
"""
from __future__ import annotations

import dataclasses
import errno
import fcntl
import json
import os
import re
import zipfile
import secrets
import socket
import time
import contextlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np

from core.errors import UserError
from core.runs import process
from core.files import atomic_write, temp_files, to_jsonable

FORMAT_VERSION = 1
STATES = ("queued", "running", "finished", "failed", "stopped", "interrupted")

_CONFIG, _STATUS, _PROGRESS, _METRICS = "config.json", "status.json", "progress.json", "metrics.jsonl"
_THRESHOLDS, _TEST_METRICS, _COST, _LOG = "thresholds.json", "test_metrics.json", "study_cost.json", "train.log"
_USER_THRESHOLDS = "thresholds-user.json"
_EFFECTIVE = "effective_scores.npz"
_STOP, _LOCK = "STOP", ".lock"
# Written into a run folder when it is created; delete_run deletes only folders that carry it.
MARKER = ".chestmnist-run"
CHECKPOINTS = ("best", "last")
# What new_run_dir names a run: time, size, model, optional name, random suffix.
_RUN_ID = re.compile(r"^\d{8}-\d{6}-\d+px-[A-Za-z0-9_-]+-[0-9a-f]{4}$")


class RunError(UserError):
    """A run folder is missing, incomplete or corrupt; the message says which file and what to do."""


def write_json(path: str | Path, obj: Any) -> None:
    """Write strict JSON atomically."""
    data = json.dumps(to_jsonable(obj), indent=2, allow_nan=False).encode()
    atomic_write(Path(path), lambda f: f.write(data))


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RunError(f"{path} is missing.") from None
    except OSError as e:  # a folder of that name, no permission
        raise RunError(f"{path} cannot be read ({e.strerror or e}).") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise RunError(f"{path} is not valid JSON ({e}); the file is corrupt.") from None


def open_own(path: str | Path, mode: str) -> IO[bytes]:
    """Open a run file for writing ("wb" or "ab"), never through a symlink: run folders travel as tar
    files, links included, and a planted `.lock` -> ~/thesis.txt would otherwise be truncated.

    RunError naming the link when `path` is one; the link and its target are left as they are.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_APPEND if "a" in mode else 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise RunError(f"{path} is a symbolic link; refusing to write through it (it could overwrite the file it "
                           "points to). Remove the link, then try again.") from None
        raise RunError(f"{path} cannot be written ({e.strerror or e}): make the run folder writable, or remove "
                       "what stands in that file's place.") from None
    return os.fdopen(fd, mode)


def append_jsonl(path: str | Path, row: dict) -> None:
    """Append one line, fsynced; a crash can at worst cut off this line, which readers skip."""
    with open_own(path, "ab") as f:
        line = json.dumps(to_jsonable(row), allow_nan=False).encode() + b"\n"
        # A cut-off previous line (killed mid-write) must not swallow this row.
        if f.tell() > 0:
            with open(path, "rb") as r:
                r.seek(-1, os.SEEK_END)
                if r.read(1) != b"\n":
                    line = b"\n" + line
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


# More epochs than any run trains: a larger number is damage, and would overflow the arrays it indexes.
MAX_EPOCH = 100_000


def _is_number(v: Any) -> bool:
    return v is None or (isinstance(v, (int, float)) and abs(v) < 1e300)


def _is_metrics_row(row: Any) -> bool:
    """A row this tool writes: a positive int epoch and numbers (or null, true/false), a per-class dict
    only under a `per_class` key (a dict where a number belongs would take a page down)."""
    return (isinstance(row, dict) and type(row.get("epoch")) is int and 1 <= row["epoch"] <= MAX_EPOCH
            and all(_is_number(v) or ("per_class" in k and isinstance(v, dict)) for k, v in row.items()))


def read_metrics(run_dir: str | Path) -> list[dict]:
    """Per-epoch rows of metrics.jsonl, skipping lines that are cut off, not JSON or of the wrong types."""
    path = Path(run_dir) / _METRICS
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if _is_metrics_row(row):
            rows.append(row)
    return rows


def truncate_metrics(run_dir: str | Path, epochs: int) -> None:
    """Keep one row per epoch <= `epochs`, the latest written (on resume: drop rows past the checkpoint,
    and any repeat an earlier version left), in epoch order."""
    latest = {r["epoch"]: r for r in read_metrics(run_dir) if r["epoch"] <= epochs}
    data = b"".join(json.dumps(latest[e]).encode() + b"\n" for e in sorted(latest))
    atomic_write(Path(run_dir) / _METRICS, lambda f: f.write(data))


def _slug(text: str) -> str:
    """Letters, digits, '-' and '_' only: a name can never become a path."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-_")[:40]


def new_run_dir(runs_dir: str | Path, size: int, model: str, name: str = "") -> Path:
    """Create a fresh, uniquely named run folder inside `runs_dir` and return it.

    Ids are time + size + model + name + random suffix, created with mkdir(exist_ok=False), so
    two processes starting at once never share a folder. The folder gets its marker (the run id)
    at once: delete_run deletes only folders that carry it.
    """
    runs_dir = Path(runs_dir).expanduser()
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunError(f"Cannot create the runs folder {runs_dir}: {e.strerror}. Choose a writable --runs-dir.") from None
    base = "-".join(p for p in (time.strftime("%Y%m%d-%H%M%S"), f"{size}px", _slug(model) or "model", _slug(name)) if p)
    while True:
        path = runs_dir / f"{base}-{secrets.token_hex(2)}"
        try:
            path.mkdir()
        except FileExistsError:
            continue
        except OSError as e:
            raise RunError(f"Cannot create a run folder in {runs_dir}: {e.strerror}.") from None
        try:
            write_json(path / MARKER, {"run_id": path.name})
        except BaseException:
            discard_new_run(path)
            raise
        return path


def discard_new_run(run_dir: str | Path) -> None:
    """Remove a run folder whose setup did not finish (a bad setting, SIGTERM): no half-made run is left.

    Only the files a run's setup writes are removed, and the folder only when that empties it.
    """
    run_dir = Path(run_dir)
    for name in (_CONFIG, _STATUS, MARKER):
        with contextlib.suppress(FileNotFoundError):
            (run_dir / name).unlink()
    _remove_temp_files(run_dir)
    with contextlib.suppress(OSError):
        run_dir.rmdir()


def set_status(run_dir: str | Path, state: str, **extra: Any) -> None:
    """Record the run's state with this process's pid, its start time and host, so readers can tell a dead run."""
    assert state in STATES, state
    pid = os.getpid()
    write_json(Path(run_dir) / _STATUS, {"state": state, "pid": pid, "started": process.start_time(pid),
                                         "host": socket.gethostname(), "updated": time.time(), **extra})


_GONE = {
    "running": "The training process ended without finishing (killed or crashed); resume the run to continue.",
    "queued": "The process that was to train this run has ended before starting it; resume the run to start it.",
}


def read_status(run_dir: str | Path) -> dict:
    """status.json, with `running`/`queued` turned into `interrupted` when their process is gone.

    A process is gone when its pid is not running, runs another process (a later start time: the
    pid was reused), or, for `running`, nobody holds the run's training lock (the trainer holds it
    for as long as it trains; the OS drops it when the process dies).
    """
    run_dir = Path(run_dir)
    try:
        status = read_json(run_dir / _STATUS)
    except RunError as e:
        return {"state": "failed", "error": str(e)}
    if not isinstance(status, dict) or status.get("state") not in STATES:
        return {"state": "failed", "error": f"{run_dir / _STATUS} holds no state of a run; the file is corrupt."}
    state = status.get("state")
    if state not in _GONE:
        return status
    pid, started = status.get("pid"), status.get("started")
    here = status.get("host") == socket.gethostname()
    # A pid names a process only on its own host; the lock (dropped by the OS when its holder dies) tells on
    # any host, so a run left `running` by a container that restarted under a new host name reads as dead.
    alive = not here or (isinstance(pid, int) and process.alive(pid, started if isinstance(started, int) else None))
    # This process knows it is alive (its start time matched); it may hold the lock on another fd.
    if not alive or (state == "running" and not (here and pid == os.getpid()) and process.lock_free(run_dir / _LOCK)):
        status = {**status, "state": "interrupted", "error": _GONE[state]}
    return status


@contextmanager
def training_lock(run_dir: str | Path, busy: str | None = None) -> Iterator[None]:
    """Hold an exclusive lock on the run while this process trains it; the OS drops it if we die.

    A second trainer on the same folder (a double-clicked Resume, a CLI --resume beside the app)
    gets a RunError (`busy` its message, when given) instead of interleaving checkpoints with the first.
    A reader's probe (read_status) holds the lock for a moment, so taking it is retried for a second.
    """
    f = open_own(Path(run_dir) / _LOCK, "ab")  # append: opening never truncates, whatever the name holds
    for attempt in range(21):
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if attempt == 20:
                f.close()
                raise RunError(busy or f"{run_dir} is already being trained by another process; stop it first.") from None
            time.sleep(0.05)
    try:
        yield
    finally:
        f.close()


def read_config(run_dir: str | Path) -> dict:
    path = Path(run_dir) / _CONFIG
    config = read_json(path)
    if not isinstance(config, dict) or not isinstance(config.get("train"), dict):
        raise RunError(f"{path} is not a run config of this tool (no 'train' section).")
    version = config.get("format_version", 0)
    if type(version) is not int:
        raise RunError(f"{path} has format_version {version!r}, not a number; the file is corrupt.")
    data = config.get("data", {})
    n = data.get("n") or {} if isinstance(data, dict) else None
    if not isinstance(n, dict) or not all(type(v) is int for v in n.values()) \
            or not all(isinstance(data.get(k), (str, type(None))) for k in ("file", "md5")):
        raise RunError(f"{path} has a damaged 'data' section (file, md5, n); restore the file.")
    if version > FORMAT_VERSION:
        raise RunError(f"{path} was written by a newer version of this tool (format {version}); update to read it.")
    return config


def request_stop(run_dir: str | Path) -> None:
    """Ask the process training this run to stop after its current batch (works across processes)."""
    open_own(Path(run_dir) / _STOP, "ab").close()


def stop_requested(run_dir: str | Path) -> bool:
    """Whether a STOP file is there; a folder or link of that name is not one (clear_stop could not remove it)."""
    stop = Path(run_dir) / _STOP
    return stop.is_file() and not stop.is_symlink()


def clear_stop(run_dir: str | Path) -> None:
    stop = Path(run_dir) / _STOP
    if stop.is_symlink() or stop.is_file():  # unlinking a link removes the link, never its target
        stop.unlink(missing_ok=True)


def own_file_names(run_dir: str | Path) -> set[str]:
    """Names of the files this module writes in a run folder (temp files of killed writes included)."""
    names = {_CONFIG, _STATUS, _PROGRESS, _METRICS, _THRESHOLDS, _USER_THRESHOLDS, _TEST_METRICS, _COST, _LOG,
             _STOP, _LOCK, MARKER, _EFFECTIVE, cost_child_path(run_dir).name}
    names |= {checkpoint_path(run_dir, w).name for w in CHECKPOINTS} | {scores_path(run_dir, s).name for s in ("val", "test")}
    return names | {p.name for p in temp_files(run_dir)}


def holds_run_files(path: str | Path) -> bool:
    """Whether `path` holds a run's config or status file: a run folder, perhaps a damaged one."""
    path = Path(path)
    return (path / _CONFIG).exists() or (path / _STATUS).exists()


def status_path(run_dir: str | Path) -> Path:
    """The run's status file; read it with read_status."""
    return Path(run_dir) / _STATUS


def has_status(path: str | Path) -> bool:
    return status_path(path).is_file()


def is_own_run(path: str | Path) -> bool:
    """Whether `path` is a run folder this tool created: a real folder (no symlink) with a run id
    for a name and the marker new_run_dir wrote (a regular file holding that id)."""
    path = Path(path)
    marker = path / MARKER
    if path.is_symlink() or not path.is_dir() or not _RUN_ID.match(path.name) \
            or marker.is_symlink() or not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()).get("run_id") == path.name
    except (OSError, ValueError, AttributeError):
        return False


def _remove_temp_files(run_dir: Path) -> None:
    for tmp in temp_files(run_dir):
        tmp.unlink(missing_ok=True)


def clean_for_resume(run_dir: str | Path, epoch: int) -> None:
    """Make the run folder agree with its last checkpoint at `epoch` (0: none) before training resumes:
    one metrics row per epoch up to it, no best.pt of a discarded epoch, no temp files of killed writes."""
    run_dir = Path(run_dir)
    _remove_temp_files(run_dir)
    truncate_metrics(run_dir, epoch)
    if epoch == 0:
        checkpoint_path(run_dir, "best").unlink(missing_ok=True)


def load_scores(run_dir: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(scores (N,14) sigmoid probabilities, labels (N,14)) saved for `split` ('val' or 'test')."""
    path = scores_path(run_dir, split)
    if not path.is_file():
        raise RunError(f"{path} is missing: the run has not been evaluated yet. "
                       f"Run `python -m core.evaluate {run_dir}` (it needs best.pt).")
    try:
        with np.load(path, allow_pickle=False) as z:
            return z["scores"], z["labels"]
    except Exception as e:
        raise RunError(f"{path} could not be read ({type(e).__name__}); re-run `python -m core.evaluate {run_dir}`.") from None


def save_scores(run_dir: str | Path, split: str, scores: np.ndarray, labels: np.ndarray) -> None:
    path = scores_path(run_dir, split)
    atomic_write(path, lambda f: np.savez(f, scores=scores.astype(np.float32), labels=labels.astype(np.uint8)))


# --------------------------------------------------------------------------- the other files

def checkpoint_path(run_dir: str | Path, which: str = "best") -> Path:
    """best.pt or last.pt of the run (`which` in CHECKPOINTS); it may not exist yet."""
    if which not in CHECKPOINTS:
        raise ValueError(f"which={which!r} must be one of {CHECKPOINTS}")
    return Path(run_dir) / f"{which}.pt"


def scores_path(run_dir: str | Path, split: str) -> Path:
    """The npz of `split`'s scores ('val' or 'test'); it exists once the run is evaluated."""
    return Path(run_dir) / f"{split}_scores.npz"


def has_scores(run_dir: str | Path, split: str = "test") -> bool:
    return scores_path(run_dir, split).is_file()


def chosen_thresholds_path(run_dir: str | Path) -> Path:
    """The per-class thresholds chosen on validation by core.evaluate; core.metrics.thresholds reads and writes its content."""
    return Path(run_dir) / _THRESHOLDS


def user_thresholds_path(run_dir: str | Path) -> Path:
    """The user's saved thresholds (the Thresholds page); nothing in core writes it."""
    return Path(run_dir) / _USER_THRESHOLDS


def thresholds_path(run_dir: str | Path) -> Path:
    """The thresholds in effect: the user's saved set when there is one, else the ones chosen on validation."""
    user = user_thresholds_path(run_dir)
    return user if user.is_file() else chosen_thresholds_path(run_dir)


def log_path(run_dir: str | Path) -> Path:
    """Where a background trainer started for this run writes its output."""
    return Path(run_dir) / _LOG


def config_path(run_dir: str | Path) -> Path:
    """The run's config file (see the module docstring); read it with read_config."""
    return Path(run_dir) / _CONFIG


def is_run_dir(path: str | Path) -> bool:
    """Whether `path` holds a run config (a prepared run, not just any folder)."""
    return (Path(path) / _CONFIG).is_file()


def write_config(run_dir: str | Path, config: dict) -> None:
    """Write config.json (see the module docstring for its sections)."""
    write_json(Path(run_dir) / _CONFIG, {"format_version": FORMAT_VERSION, **config})


def record_data_root(run_dir: str | Path, root: str | Path) -> None:
    """Point the run's config at `root`, where its data file (MD5-checked) now is; the old folder is kept in data.moved_from."""
    config = read_config(run_dir)
    old, new = config["train"].get("data_root"), str(Path(root).expanduser().resolve())
    if old != new:
        config["train"]["data_root"] = new
        config.setdefault("data", {}).setdefault("moved_from", []).append(old)
        write_json(Path(run_dir) / _CONFIG, config)


def has_test_metrics(run_dir: str | Path) -> bool:
    """Whether the run has been evaluated on test."""
    return (Path(run_dir) / _TEST_METRICS).is_file()


def read_test_metrics(run_dir: str | Path) -> dict:
    """test_metrics.json; RunError if it is missing (the run is not evaluated) or corrupt: its headline
    numbers must be numbers (or null), its per-class entries objects, as core.evaluate writes them."""
    path = Path(run_dir) / _TEST_METRICS
    result = read_json(path)
    ci = result.get("auc_ci") if isinstance(result, dict) else None
    per_class = result.get("per_class") if isinstance(result, dict) else None
    if not isinstance(result, dict) or not all(_is_number(result.get(k)) for k in ("auc", "acc", "ece", "brier")) \
            or not (ci is None or (isinstance(ci, list) and len(ci) == 2 and all(map(_is_number, ci)))) \
            or not (per_class is None or (isinstance(per_class, dict) and all(isinstance(v, dict) for v in per_class.values()))):
        raise RunError(f"{path} is not the test metrics this tool writes; re-run `python -m core.evaluate {run_dir}`.")
    return result


def write_test_metrics(run_dir: str | Path, result: dict) -> None:
    write_json(Path(run_dir) / _TEST_METRICS, result)


def append_metrics(run_dir: str | Path, row: dict) -> None:
    """Append one finished epoch's row to metrics.jsonl."""
    append_jsonl(Path(run_dir) / _METRICS, row)


@dataclass
class Progress:
    """Reported after every batch (phase 'train'), as validation runs ('val') and at the final test scoring ('test')."""

    run_dir: Path
    epoch: int
    epochs: int
    phase: str
    batch: int
    n_batches: int
    images_per_s: float
    eta_s: float  # whole run, from the measured speed


def write_progress(p: Progress) -> None:
    """progress.json: `p` and the time it was written, for other processes (the app) to follow."""
    write_json(Path(p.run_dir) / _PROGRESS, dataclasses.asdict(p) | {"run_dir": str(p.run_dir), "time": time.time()})


def read_progress(run_dir: str | Path) -> tuple[Progress, float] | None:
    """(the latest Progress, when it was written) or None when there is none yet or it cannot be read."""
    try:
        raw = read_json(Path(run_dir) / _PROGRESS)
        fields = {f.name for f in dataclasses.fields(Progress)} - {"run_dir"}
        return Progress(Path(run_dir), **{k: v for k, v in raw.items() if k in fields}), float(raw.get("time", 0.0))
    except (RunError, TypeError, AttributeError, ValueError):
        return None


def read_cost_sessions(run_dir: str | Path) -> list[dict]:
    """The study's measurements of each training session of the run (peak memory, wall time); [] if none."""
    path = Path(run_dir) / _COST
    if not path.is_file():
        return []
    raw = read_json(path)
    sessions = raw.get("sessions") if isinstance(raw, dict) else None
    if not isinstance(sessions, list) or not all(isinstance(x, dict) for x in sessions):
        raise RunError(f"{path} is not the cost record this tool writes (a 'sessions' list); the file is corrupt.")
    return sessions


def append_cost_session(run_dir: str | Path, session: dict) -> None:
    write_json(Path(run_dir) / _COST, {"sessions": read_cost_sessions(run_dir) + [session]})


def cost_child_path(run_dir: str | Path) -> Path:
    """Where a training child process leaves its own measurements (GPU peak) for its parent."""
    return Path(run_dir) / f".{_COST}.child"


def read_effective_scores(run_dir: str | Path, key: str) -> dict[tuple[str, int], np.ndarray]:
    """The cached test scores at effective sizes (core.evaluate.effective): {(source, r): (N, 14)}; {} without a
    readable cache made under this `key` (best checkpoint, data file)."""
    try:
        with np.load(Path(run_dir) / _EFFECTIVE, allow_pickle=False) as z:
            same = str(z["key"]) == key
            return {(n.rsplit("_", 1)[0], int(n.rsplit("_", 1)[1])): z[n] for n in z.files if n != "key" and same}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return {}


def write_effective_scores(run_dir: str | Path, key: str, scores: dict[tuple[str, int], np.ndarray]) -> None:
    arrays = {f"{source}_{r}": s.astype(np.float32) for (source, r), s in scores.items()}
    atomic_write(Path(run_dir) / _EFFECTIVE, lambda f: np.savez(f, key=np.array(key), **arrays))
