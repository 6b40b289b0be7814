"""Bad input, killed runs, concurrent runs and untrusted files (issue 5).

Each case checks the message says what is wrong and what to do, and that nothing is lost.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from core.data import chestmnist as D
from core.runs import checkpoints
from core.runs import record as runs
from core.runs import folder as runs_folder
from core.metrics import thresholds
from core.train import TrainConfig, prepare_run, train
from tests.conftest import isolate
from tests.synthetic import planted_split, write_planted

REPO = Path(__file__).resolve().parents[1]


# ---- data ---------------------------------------------------------------------------------------

def _npz(root: Path, size: int = 28, **override) -> Path:
    arrays = {}
    for i, split in enumerate(D.SPLITS):
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = planted_split(16, size, i)
    arrays.update(override)
    root.mkdir(parents=True, exist_ok=True)
    np.savez(root / D.npz_name(size), **{k: v for k, v in arrays.items() if v is not None})
    return root / D.npz_name(size)


def test_truncated_npz(tmp_path):
    path = _npz(tmp_path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(D.DataError, match="truncated or corrupt") as e:
        D.load(tmp_path, 28)
    assert str(path) in str(e.value) and "download or import it again" in str(e.value)


def test_garbage_file_named_like_npz(tmp_path):
    (tmp_path / "chestmnist.npz").write_text("not a zip")
    with pytest.raises(D.DataError, match="could not be read"):
        D.load(tmp_path, 28)


def test_missing_keys(tmp_path):
    _npz(tmp_path, val_labels=None)
    with pytest.raises(D.DataError, match="lacks val_labels"):
        D.load(tmp_path, 28)


def test_images_of_the_wrong_size(tmp_path):
    _npz(tmp_path, 64, train_images=np.zeros((16, 28, 28), np.uint8))
    with pytest.raises(D.DataError, match=r"expected \(N, 64, 64\)"):
        D.load(tmp_path, 64)


def test_labels_not_14_columns(tmp_path):
    _npz(tmp_path, test_labels=np.zeros((16, 15), np.uint8))
    with pytest.raises(D.DataError, match="one 0/1 column per finding"):
        D.load(tmp_path, 28)


def test_labels_not_binary(tmp_path):
    bad = np.zeros((16, 14), np.uint8)
    bad[0, 0] = 2
    _npz(tmp_path, train_labels=bad)
    with pytest.raises(D.DataError, match="must be 0 or 1"):
        D.load(tmp_path, 28)


def test_empty_split(tmp_path):
    _npz(tmp_path, val_images=np.zeros((0, 28, 28), np.uint8), val_labels=np.zeros((0, 14), np.uint8))
    with pytest.raises(D.DataError, match="val split.*empty"):
        D.load(tmp_path, 28)


def test_data_root_missing_or_a_file(tmp_path):
    with pytest.raises(D.DataError, match="does not exist"):
        D.load(tmp_path / "nope", 28)
    (tmp_path / "file").write_text("x")
    with pytest.raises(D.DataError, match="not a folder"):
        D.load(tmp_path / "file", 28)


# ---- runs: damaged folders and untrusted files --------------------------------------------------

@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, data_root) -> Path:
    """A finished 1-epoch run, trained once for this file."""
    with pytest.MonkeyPatch.context() as mp:  # set up before any test's own _isolated_env
        isolate(mp, tmp_path_factory)
        run_dir = prepare_run(TrainConfig(size=28, epochs=1, batch_size=64, data_root=str(data_root),
                                          runs_dir=str(tmp_path_factory.mktemp("runs")), device="cpu"))
        assert train(run_dir) == "finished"
    return run_dir


@pytest.fixture
def small_run(trained_run, tmp_path) -> Path:
    """A private copy of `trained_run` in tmp_path/runs: each test breaks its own."""
    run_dir = tmp_path / "runs" / trained_run.name
    shutil.copytree(trained_run, run_dir)
    return run_dir


def test_cut_off_metrics_line_is_skipped_and_appending_still_works(small_run):
    path = small_run / "metrics.jsonl"
    good = path.read_text()
    path.write_text(good + '{"epoch": 2, "train_loss": 0.3, "val_')
    assert [r["epoch"] for r in runs.read_metrics(small_run)] == [1]
    runs.append_jsonl(path, {"epoch": 3})
    assert [r["epoch"] for r in runs.read_metrics(small_run)] == [1, 3]


def test_missing_and_corrupt_checkpoint(small_run):
    (small_run / "best.pt").write_bytes(b"\x80\x04garbage")
    with pytest.raises(runs.RunError, match="refused"):
        checkpoints.load_model(small_run)
    (small_run / "best.pt").unlink()
    with pytest.raises(runs.RunError, match="missing"):
        checkpoints.load_model(small_run)
    assert runs_folder.run_info(small_run).state == "finished"  # the overview still lists it


def test_missing_or_foreign_config(small_run):
    (small_run / "config.json").unlink()
    with pytest.raises(runs.RunError, match="config.json is missing"):
        checkpoints.load_model(small_run)
    info = runs_folder.run_info(small_run)
    assert info.error and "config.json" in info.error
    (small_run / "config.json").write_text('{"size": 28}')  # some other tool's format
    with pytest.raises(runs.RunError, match="not a run config"):
        runs.read_config(small_run)
    (small_run / "config.json").write_text("{")
    with pytest.raises(runs.RunError, match="not valid JSON"):
        runs.read_config(small_run)


def test_older_and_newer_format_runs(small_run):
    config = json.loads((small_run / "config.json").read_text())
    config.pop("format_version")  # runs written before the field existed still load
    (small_run / "config.json").write_text(json.dumps(config))
    assert checkpoints.load_model(small_run) is not None
    config["format_version"] = runs.FORMAT_VERSION + 1
    (small_run / "config.json").write_text(json.dumps(config))
    with pytest.raises(runs.RunError, match="newer version"):
        runs.read_config(small_run)


def test_threshold_file_with_wrong_names_or_values(small_run):
    path = small_run / "thresholds.json"
    path.write_text(json.dumps({**{n: 0.5 for n in D.CLASS_NAMES[:-1]}, "hernai": 0.5}))
    with pytest.raises(thresholds.ThresholdFileError, match="hernai"):
        thresholds.load_thresholds(path, D.CLASS_NAMES)
    path.write_text(json.dumps({**{n: 0.5 for n in D.CLASS_NAMES}, "edema": 1.5}))
    with pytest.raises(thresholds.ThresholdFileError, match="edema"):
        thresholds.load_thresholds(path, D.CLASS_NAMES)


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_checkpoint_is_refused_and_its_code_never_runs(small_run, tmp_path):
    marker = tmp_path / "pwned"
    evil = _Evil()
    evil.marker = marker
    with open(small_run / "best.pt", "wb") as f:
        pickle.dump({"model": evil}, f)
    torch.save({"model": evil}, small_run / "last.pt")
    for name in ("best", "last"):
        with pytest.raises(runs.RunError, match="could run code"):
            checkpoints.load_model(small_run, name)
    assert not marker.exists()


def test_names_and_ids_cannot_escape_the_runs_folder(tmp_path, data_root):
    runs_dir = tmp_path / "runs"
    run_dir = prepare_run(TrainConfig(size=28, epochs=1, data_root=str(data_root), runs_dir=str(runs_dir),
                                      name="../../escape/x", device="cpu"))
    assert run_dir.parent == runs_dir and "escape" in run_dir.name and not (tmp_path / "escape").exists()
    outside = tmp_path / "precious"
    outside.mkdir()
    (runs_dir / "link").symlink_to(outside)
    for bad in ("../precious", str(outside), "link", "..", ""):
        with pytest.raises(runs.RunError):
            runs_folder.delete_run(runs_dir, bad)
    assert outside.is_dir()
    runs_folder.delete_run(runs_dir, run_dir.name)
    assert not run_dir.exists()


def test_a_running_run_cannot_be_deleted(small_run):
    runs.set_status(small_run, "running")  # this very process: alive
    with pytest.raises(runs.RunError, match="still training"):
        runs_folder.delete_run(small_run.parent, small_run.name)


# ---- faults --------------------------------------------------------------------------------------

def _python(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _cli(*args: str) -> subprocess.Popen:
    return _python("-m", "core.train", *args)


def _wait_for(predicate, timeout: float = 120.0) -> None:
    end = time.time() + timeout
    while not predicate():
        assert time.time() < end, "timed out"
        time.sleep(0.1)


def test_sigkill_mid_epoch_then_resume(tmp_path):
    root = tmp_path / "data"
    write_planted(root, 28, n=(2048, 96, 96))
    runs_dir = tmp_path / "runs"
    proc = _cli("--size", "28", "--epochs", "2", "--batch-size", "32", "--data-root", str(root),
                "--runs-dir", str(runs_dir))
    _wait_for(lambda: runs_dir.is_dir() and any(runs_dir.iterdir()))
    run_dir = next(runs_dir.iterdir())

    def in_epoch_two() -> bool:
        try:
            p = runs.read_json(run_dir / "progress.json")
        except runs.RunError:
            return False
        return p["epoch"] == 2 and p["phase"] == "train" and p["batch"] > 5
    _wait_for(in_epoch_two)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    status = runs.read_status(run_dir)
    assert status["state"] == "interrupted" and "resume" in status["error"]
    assert [r["epoch"] for r in runs.read_metrics(run_dir)] == [1]
    assert checkpoints.load_checkpoint(run_dir / "last.pt")["epoch"] == 1
    # Resumed from its files alone, in this process (`--resume` itself: tests/test_cli.py).
    assert train(run_dir) == "finished"
    assert [r["epoch"] for r in runs.read_metrics(run_dir)] == [1, 2]
    assert runs.read_status(run_dir)["state"] == "finished" and (run_dir / "test_metrics.json").is_file()


def test_disk_full_fails_the_run_and_keeps_earlier_epochs(tmp_path, data_root, monkeypatch):
    run_dir = prepare_run(TrainConfig(size=28, epochs=3, batch_size=64, data_root=str(data_root),
                                      runs_dir=str(tmp_path), device="cpu"))
    real = checkpoints.save_checkpoint

    def full_after_epoch_one(path, state):
        if state.get("epoch", 0) >= 2:
            raise OSError(28, "No space left on device")
        real(path, state)
    monkeypatch.setattr(checkpoints, "save_checkpoint", full_after_epoch_one)
    with pytest.raises(OSError):
        train(run_dir)
    status = runs.read_status(run_dir)
    assert status["state"] == "failed" and "No space left" in status["error"]
    assert checkpoints.load_checkpoint(run_dir / "last.pt")["epoch"] == 1
    assert runs.read_metrics(run_dir)[0]["epoch"] == 1
    monkeypatch.setattr(checkpoints, "save_checkpoint", real)
    assert train(run_dir) == "finished"  # space freed: resume finishes it


def test_unwritable_runs_folder_is_a_clear_error(tmp_path, data_root):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.raises(runs.RunError, match="Choose a writable --runs-dir"):
        prepare_run(TrainConfig(size=28, data_root=str(data_root), runs_dir=str(blocker / "runs"), device="cpu"))


def test_two_runs_started_at_once_get_separate_folders_and_stop_separately(tmp_path, data_root):
    runs_dir = tmp_path / "runs"
    args = ["--size", "28", "--epochs", "30", "--batch-size", "16", "--data-root", str(data_root),
            "--runs-dir", str(runs_dir), "--name", "same"]
    procs = [_cli(*args), _cli(*args)]
    _wait_for(lambda: runs_dir.is_dir() and len([d for d in runs_dir.iterdir() if (d / "progress.json").exists()]) == 2)
    first, second = sorted(runs_dir.iterdir())
    assert first != second
    runs.request_stop(first)
    _wait_for(lambda: runs.read_status(first)["state"] == "stopped")
    assert runs.read_status(second)["state"] == "running"
    runs.request_stop(second)
    codes = {p.wait(timeout=120) for p in procs}
    assert runs.read_status(second)["state"] == "stopped"
    assert codes == {1}  # both exit 'stopped, resumable'


def test_a_second_trainer_on_the_same_run_is_refused(small_run):
    with runs.training_lock(small_run):
        with pytest.raises(runs.RunError, match="already being trained"):
            train(small_run)
    assert runs.read_status(small_run)["state"] == "finished"  # the refused attempt changed nothing


def test_queued_run_whose_process_died_shows_interrupted(small_run):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    status = json.loads((small_run / "status.json").read_text())
    (small_run / "status.json").write_text(json.dumps({**status, "state": "queued", "pid": dead.pid}))
    s = runs.read_status(small_run)
    assert s["state"] == "interrupted" and "resume" in s["error"]


def test_any_running_reads_live_states_like_list_runs(small_run):
    """any_running is list_runs' notion of 'running' from the status files alone: a dead trainer is not running."""
    runs_dir = small_run.parent
    assert not runs_folder.any_running(runs_dir)  # finished
    runs.set_status(small_run, "running")  # this very process: alive
    assert runs_folder.any_running(runs_dir) and [r.state for r in runs_folder.list_runs(runs_dir)] == ["running"]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    runs.set_status(small_run, "running")
    status = json.loads((small_run / "status.json").read_text())
    (small_run / "status.json").write_text(json.dumps({**status, "pid": dead.pid}))
    assert not runs_folder.any_running(runs_dir) and [r.state for r in runs_folder.list_runs(runs_dir)] == ["interrupted"]
    assert not runs_folder.any_running(runs_dir.parent / "nowhere")


def test_atomic_write_keeps_the_old_file_on_failure_and_shares_like_any_file(tmp_path):
    """core.files.atomic_write, behind every run file, threshold file, imported npz and cache: a failed
    write leaves the previous file and no temp file; a new file gets the umask's mode, not 0600."""
    from core.files import atomic_write

    path = tmp_path / "status.json"
    atomic_write(path, lambda f: f.write(b"old"))

    def fail(f):
        f.write(b"half")
        raise RuntimeError("disk full")
    with pytest.raises(RuntimeError):
        atomic_write(path, fail)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["status.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


# The trainer, SIGKILLed by itself at an exact moment: EVENT is "mid:<file>" (inside the write of a
# run file, after part of it is on disk) or "after:<file>" (once it is complete), at its NTH time.
_KILLED_AT = """
import os, signal, sys
from pathlib import Path
from core.runs import checkpoints
from core.runs import record as runs
from core.train.__main__ import main as train_main
event, nth, seen = sys.argv[1], int(sys.argv[2]), [0]
real_write, real_append = runs.atomic_write, runs.append_jsonl

def hit(f=None):
    seen[0] += 1
    if seen[0] == nth:
        if f is not None:  # part of the file is on disk
            f.write(b"partial")
            f.flush()
            os.fsync(f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)

def atomic_write(path, write):
    name = Path(path).name
    if event == "mid:" + name:
        def half(f):
            hit(f)
            write(f)
        return real_write(path, half)
    real_write(path, write)
    if event == "after:" + name:
        hit()

def append_jsonl(path, row):
    real_append(path, row)
    if event == "after:" + Path(path).name:
        hit()

runs.atomic_write, runs.append_jsonl = atomic_write, append_jsonl
checkpoints.atomic_write = atomic_write
sys.exit(train_main(sys.argv[3:]))
"""


@pytest.mark.parametrize("event, nth", [("mid:last.pt", 1), ("after:last.pt", 1), ("mid:best.pt", 1),
                                        ("after:metrics.jsonl", 2), ("mid:last.pt", 2)])
def test_sigkill_at_any_moment_keeps_each_epoch_once(tmp_path, data_root, event, nth):
    """Killed before its first last.pt exists, during checkpoint writes, or between last.pt and the
    metrics row: the folder never claims an epoch last.pt lacks, and the resumed run has every epoch
    once, no temp file, and a best.pt that is the epoch metrics.jsonl names."""
    runs_dir = tmp_path / "runs"
    proc = _python("-c", _KILLED_AT, event, str(nth), "--size", "28", "--epochs", "3", "--batch-size", "64",
                   "--data-root", str(data_root), "--runs-dir", str(runs_dir))
    assert proc.wait(timeout=300) == -signal.SIGKILL, proc.stderr.read()
    (run_dir,) = runs_dir.iterdir()
    last = checkpoints.load_last(run_dir)
    epochs = [r["epoch"] for r in runs.read_metrics(run_dir)]
    assert epochs == list(range(1, len(epochs) + 1)) and len(epochs) <= (last["epoch"] if last else 0)
    assert runs.read_status(run_dir)["state"] == "interrupted"
    assert train(run_dir) == "finished"  # resumed from its files alone, in this process
    rows = runs.read_metrics(run_dir)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert checkpoints.load_last(run_dir)["epoch"] == 3 and runs.read_status(run_dir)["state"] == "finished"
    assert checkpoints.load_checkpoint(run_dir / "best.pt")["epoch"] == rows[-1]["best_epoch"]
    assert not [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]
