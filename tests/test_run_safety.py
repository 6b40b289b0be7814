"""Runs you cannot lose (issue 13): deleting only our own runs, user thresholds kept, results never
rescored on other data, checkpoints that can be chosen, dead runs seen as dead, moved data, and
folders typed into the app. The SIGKILL cases are in tests/test_robustness.py."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.data import chestmnist as D
from core.train import cost as E
from core.runs import checkpoints
from core.runs import record as runs
from core.runs import folder as runs_folder
from core.metrics import thresholds as T
from core.train.recipe import ConfigError
from core.train import TrainConfig, prepare_run, train
from tests.synthetic import planted_split, write_planted

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    # One intra-op thread, as in the other subprocess tests: where the second core is busy (or the suite
    # is pinned to one), each parallel op of a second thread waits for a time slice, and a run crawls.
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def _finished(runs_dir: Path, root: Path, **kw) -> Path:
    run_dir = prepare_run(TrainConfig(**{"size": 28, "epochs": 1, "batch_size": 64, "data_root": str(root),
                                         "runs_dir": str(runs_dir), "device": "cpu", **kw}))
    assert train(run_dir) == "finished"
    return run_dir


@pytest.fixture
def own_data(tmp_path) -> Path:
    """A private data root (tests here move or replace its file)."""
    root = tmp_path / "data"
    write_planted(root, 28, n=(128, 64, 64))
    return root


# ---- 1: delete only what this tool created --------------------------------------------------------

def test_delete_refuses_a_downloaded_model_folder_with_a_config(tmp_path, runs_copy):
    runs_dir = runs_copy[28].parent
    model = runs_dir / "resnet50-pretrained"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"train": {"size": 28}, "architectures": ["ResNet"]}))
    (model / "status.json").write_text(json.dumps({"state": "finished"}))
    (model / "pytorch_model.bin").write_bytes(b"weights")
    with pytest.raises(runs.RunError, match="not created by this tool") as e:
        runs_folder.delete_run(runs_dir, model.name)
    assert "by hand" in str(e.value)
    assert sorted(p.name for p in model.iterdir()) == ["config.json", "pytorch_model.bin", "status.json"]


def test_delete_refuses_a_forged_or_linked_marker_and_keeps_foreign_files(runs_copy, tmp_path):
    run_dir = runs_copy[28]
    runs_dir = run_dir.parent
    # A folder named like a run, holding a marker copied from another run: the id inside does not match.
    twin = runs_dir / (run_dir.name[:-4] + "beef")
    shutil.copytree(run_dir, twin)
    with pytest.raises(runs.RunError, match="not created by this tool"):
        runs_folder.delete_run(runs_dir, twin.name)
    # A marker that is a symlink proves nothing.
    marker = next(p for p in run_dir.iterdir() if p.name.startswith(".chestmnist"))
    (tmp_path / "elsewhere").write_text(marker.read_text())
    marker.unlink()
    marker.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(runs.RunError, match="not created by this tool"):
        runs_folder.delete_run(runs_dir, run_dir.name)
    marker.unlink()
    (tmp_path / "elsewhere").rename(marker)
    # A file the user put in the run folder and a symlink inside it survive the delete; the run's files go.
    (run_dir / "my-notes.txt").write_text("keep me")
    precious = tmp_path / "precious.txt"
    precious.write_text("never touched")
    (run_dir / "best.pt").unlink()
    (run_dir / "best.pt").symlink_to(precious)
    kept = runs_folder.delete_run(runs_dir, run_dir.name)
    assert sorted(kept) == ["best.pt", "my-notes.txt"]
    assert sorted(p.name for p in run_dir.iterdir()) == ["best.pt", "my-notes.txt"]
    assert precious.read_text() == "never touched"
    assert run_dir.name not in [r.id for r in runs_folder.list_runs(runs_dir)]


def test_delete_removes_a_whole_run_it_created(runs_copy):
    run_dir = runs_copy[64]
    (run_dir / ".last.pt.0123456789abcdef0123456789abcdef.tmp").write_bytes(b"half")  # a killed write
    assert runs_folder.delete_run(run_dir.parent, run_dir.name) == []
    assert not run_dir.exists()


# ---- 2: the user's thresholds are never overwritten ---------------------------------------------

def test_evaluate_and_resume_keep_the_users_thresholds(runs_copy):
    from core.evaluate.__main__ import main as evaluate_main

    run_dir = runs_copy[28]
    mine = np.round(np.linspace(0.1, 0.8, D.N_CLASSES), 3)
    T.save_thresholds(runs.user_thresholds_path(run_dir), mine, D.CLASS_NAMES, method="mine")
    before = runs.user_thresholds_path(run_dir).read_bytes()
    assert runs.thresholds_path(run_dir) == runs.user_thresholds_path(run_dir)  # the set in effect
    assert evaluate_main([str(run_dir), "--device", "cpu"]) == 0
    assert train(run_dir) == "finished"  # resuming a finished run re-evaluates it
    assert runs.user_thresholds_path(run_dir).read_bytes() == before
    np.testing.assert_array_equal(T.load_thresholds(runs.thresholds_path(run_dir), D.CLASS_NAMES), mine)
    chosen = T.load_choice(runs.chosen_thresholds_path(run_dir), D.CLASS_NAMES)
    assert chosen.method == "youden"  # evaluation's own choice, beside the user's


# ---- 3 and 7: the run's own data, wherever it is ---------------------------------------------------

def test_evaluate_refuses_other_data_and_scores_it_into_a_new_folder(tmp_path, own_data):
    run_dir = _finished(tmp_path / "runs", own_data)
    before = {n: (run_dir / n).read_bytes() for n in ("test_metrics.json", "test_scores.npz", "thresholds.json")}
    D.write_npz(own_data, 28, {s: planted_split(12, 28, 50 + i) for i, s in enumerate(D.SPLITS)})  # replaced
    p = cli("core.evaluate", str(run_dir), "--device", "cpu")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "not the data run" in p.stderr and "--other-data" in p.stderr
    assert {n: (run_dir / n).read_bytes() for n in before} == before
    # Resuming is refused the same way, and the finished run stays finished.
    r = cli("core.train", "--resume", str(run_dir))
    assert r.returncode == 2 and "not the data run" in r.stderr
    assert runs.read_status(run_dir)["state"] == "finished"
    # Other data, explicitly: into a new folder, never inside the run.
    inside = cli("core.evaluate", str(run_dir), "--other-data", str(own_data), "--out", str(run_dir / "other"))
    assert inside.returncode == 2 and "inside the run folder" in inside.stderr
    out = tmp_path / "on-other-data"
    o = cli("core.evaluate", str(run_dir), "--other-data", str(own_data), "--out", str(out), "--device", "cpu")
    assert o.returncode == 0, o.stderr
    other = runs.read_test_metrics(out)
    assert other["n_samples"] == 12 and other["run"] == str(run_dir.resolve())
    assert runs.load_scores(out, "test")[0].shape == (12, D.N_CLASSES)
    assert {n: (run_dir / n).read_bytes() for n in before} == before


def test_resume_after_the_data_moved(tmp_path, own_data, monkeypatch):
    run_dir = _finished(tmp_path / "runs", own_data)
    moved = tmp_path / "moved"
    own_data.rename(moved)
    lost = cli("core.train", "--resume", str(run_dir))
    assert lost.returncode == 2 and "--data-root" in lost.stderr
    assert runs.read_status(run_dir)["state"] == "finished"  # not 'failed' because its folder moved
    # A different file at the new place is refused; the right one is used and remembered.
    other = tmp_path / "other"
    write_planted(other, 28, n=(128, 64, 64), seed=3)
    wrong = cli("core.train", "--resume", str(run_dir), "--data-root", str(other))
    assert wrong.returncode == 2 and "not the data run" in wrong.stderr
    ok = cli("core.train", "--resume", str(run_dir), "--data-root", str(moved))
    assert ok.returncode == 0, ok.stderr
    config = runs.read_config(run_dir)
    assert config["train"]["data_root"] == str(moved.resolve()) and config["data"]["moved_from"] == [str(own_data)]
    assert runs.read_status(run_dir)["state"] == "finished"
    # CHESTMNIST_ROOT is honoured as well when the recorded folder no longer has the file.
    again = tmp_path / "again"
    moved.rename(again)
    env = cli("core.evaluate", str(run_dir), "--device", "cpu", env={"CHESTMNIST_ROOT": str(again)})
    assert env.returncode == 0, env.stderr
    assert runs.read_test_metrics(run_dir)["data_root"] == str(again)


# ---- 5: a checkpoint that can be chosen, and a test split without AUC --------------------------------

def test_a_validation_split_without_auc_is_refused_before_training(tmp_path):
    root = tmp_path / "data"
    splits = {s: planted_split(64, 28, i) for i, s in enumerate(D.SPLITS)}
    splits["val"] = (splits["val"][0][:1], splits["val"][1][:1])  # one image: no class has both labels
    D.write_npz(root, 28, splits)
    cfg = TrainConfig(size=28, epochs=1, data_root=str(root), runs_dir=str(tmp_path / "runs"), device="cpu")
    with pytest.raises(ConfigError, match="--select-by val_loss"):
        prepare_run(cfg)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    splits["val"] = (splits["val"][0], np.zeros_like(splits["val"][1]))  # no positives at all
    D.write_npz(root, 28, splits)
    with pytest.raises(ConfigError, match="val AUC is undefined"):
        prepare_run(cfg)
    run_dir = prepare_run(TrainConfig(**{**cfg.__dict__, "select_by": "val_loss"}))
    assert train(run_dir) == "finished" and (run_dir / "best.pt").is_file()


def test_a_one_image_test_split_evaluates_with_a_message(tmp_path):
    root = tmp_path / "data"
    splits = {s: planted_split(64, 28, i) for i, s in enumerate(D.SPLITS)}
    splits["test"] = (splits["test"][0][:1], splits["test"][1][:1])
    D.write_npz(root, 28, splits)
    run_dir = _finished(tmp_path / "runs", root)
    p = cli("core.evaluate", str(run_dir), "--device", "cpu")
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    assert "test AUC (medmnist) undefined" in p.stdout and "no AUC is defined" in p.stdout


# ---- 6: a dead run whose pid was reused -----------------------------------------------------------

def test_a_reused_pid_does_not_keep_a_dead_run_running(runs_copy):
    run_dir = runs_copy[28]
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        runs.set_status(run_dir, "running")
        status = json.loads((run_dir / "status.json").read_text())
        # The dead trainer's pid now names another live process, which holds no training lock.
        (run_dir / "status.json").write_text(json.dumps({**status, "pid": stranger.pid, "started": None}))
        assert runs.read_status(run_dir)["state"] == "interrupted"
        # Queued (no lock yet): told apart by the process start time.
        (run_dir / "status.json").write_text(json.dumps({**status, "state": "queued", "pid": stranger.pid,
                                                         "started": 1}))
        assert runs.read_status(run_dir)["state"] == "interrupted"
        (run_dir / "status.json").write_text(json.dumps({**status, "pid": stranger.pid, "started": None}))
        assert train(run_dir) == "finished"  # resume works
        (run_dir / "status.json").write_text(json.dumps({**status, "pid": stranger.pid, "started": None}))
        assert runs_folder.delete_run(run_dir.parent, run_dir.name) == []  # and so does delete
    finally:
        stranger.kill()
        stranger.wait()


def test_a_live_trainer_holding_the_lock_reads_running(runs_copy):
    run_dir = runs_copy[28]
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom core.runs import record as runs\n"
                               "with runs.training_lock(sys.argv[1]):\n    runs.set_status(sys.argv[1], 'running')\n"
                               "    print('ok', flush=True)\n    time.sleep(60)", str(run_dir)],
                              cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ok"
        assert runs.read_status(run_dir)["state"] == "running"
        with pytest.raises(runs.RunError, match="still training"):
            runs_folder.delete_run(run_dir.parent, run_dir.name)
    finally:
        holder.kill()
        holder.wait()
    assert runs.read_status(run_dir)["state"] == "interrupted"


# ---- 9: only runs folders are written -------------------------------------------------------------

def test_check_runs_dir_accepts_runs_folders_only(tmp_path, runs_copy):
    for bad in ("/", "/etc", "/proc", "/usr/lib", "/etc/new-runs"):
        with pytest.raises(runs.RunError, match="system folder"):
            runs_folder.check_runs_dir(bad)
    (tmp_path / "file").write_text("x")
    with pytest.raises(runs.RunError, match="is a file"):
        runs_folder.check_runs_dir(tmp_path / "file")
    home = tmp_path / "home"
    (home / "Documents").mkdir(parents=True)
    (home / "thesis.tex").write_text("x")
    with pytest.raises(runs.RunError, match=r"not runs \(Documents, thesis.tex\)"):
        runs_folder.check_runs_dir(home)
    assert runs_folder.check_runs_dir(tmp_path / "new" / "runs") == (tmp_path / "new" / "runs").resolve()
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".gitkeep").touch()
    assert runs_folder.check_runs_dir(tmp_path / "empty") == (tmp_path / "empty").resolve()
    assert runs_folder.check_runs_dir(runs_copy[28].parent) == runs_copy[28].parent.resolve()


# ---- the rest of the message list ------------------------------------------------------------------

def test_a_last_checkpoint_of_another_architecture_is_a_message(runs_copy):
    import torch

    from core.models.registry import build_model

    run28 = runs_copy[28]
    state = checkpoints.load_checkpoint(run28 / "last.pt")
    other = build_model("seed-cnn", 28)
    checkpoints.save_last(run28, {**state, "model": other.state_dict(),
                           "optimizer": torch.optim.Adam(other.parameters()).state_dict()})
    runs.set_status(run28, "stopped")
    p = cli("core.train", "--resume", str(run28))
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "does not fit this run's model" in p.stderr and str(run28 / "last.pt") in p.stderr and "Delete that file" in p.stderr


def test_config_and_metrics_of_the_wrong_types(runs_copy):
    from core.runs.datafile import config_of

    run_dir = runs_copy[28]
    config = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**config, "train": {**config["train"], "epochs": "ten",
                                                                         "size": None}}))
    with pytest.raises(runs.RunError, match=r"size is None; epochs is 'ten'"):
        config_of(run_dir)
    p = cli("core.evaluate", str(run_dir))
    assert p.returncode == 2 and "does not describe a run" in p.stderr
    del config["train"]["model"]
    (run_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(runs.RunError, match="model is missing"):
        config_of(run_dir)
    metrics = run_dir / "metrics.jsonl"
    metrics.write_text(metrics.read_text() + json.dumps({"epoch": "3", "val_auc": 0.5}) + "\n"
                       + json.dumps({"epoch": 4, "val_auc": "high"}) + "\n")
    assert [r["epoch"] for r in runs.read_metrics(run_dir)] == [1, 2]
    assert runs_folder.run_info(run_dir).max_val_auc is not None


def test_export_csv_to_a_file_or_read_only_folder_and_no_rewrite(runs_copy, tmp_path):
    run_dir = runs_copy[28]
    before = (run_dir / "test_metrics.json").stat().st_mtime_ns
    (tmp_path / "a-file").write_text("x")
    p = cli("core.evaluate", str(run_dir), "--export-csv", str(tmp_path / "a-file"))
    assert p.returncode == 2 and "is a file" in p.stderr
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not os.access(locked, os.W_OK):  # root may write anywhere
            p = cli("core.evaluate", str(run_dir), "--export-csv", str(locked / "csv"))
            assert p.returncode == 2 and "cannot be written" in p.stderr
    finally:
        locked.chmod(0o700)
    ok = cli("core.evaluate", str(run_dir), "--export-csv", str(tmp_path / "csv"))
    assert ok.returncode == 0, ok.stderr
    assert len(list((tmp_path / "csv").glob("*.csv"))) == 1
    assert (run_dir / "test_metrics.json").stat().st_mtime_ns == before  # exported, not re-evaluated


def test_an_interrupted_setup_leaves_no_folder(tmp_path, data_root, monkeypatch):
    def interrupted(*_a, **_k):
        raise KeyboardInterrupt  # what SIGTERM raises in the CLI

    monkeypatch.setattr(runs, "set_status", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare_run(TrainConfig(size=28, data_root=str(data_root), runs_dir=str(tmp_path / "runs"), device="cpu"))
    assert list((tmp_path / "runs").iterdir()) == []


def test_the_app_refuses_to_delete_a_folder_it_did_not_create(open_page, data_root, runs_copy):
    runs_dir = runs_copy[28].parent
    model = runs_dir / "downloaded-model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"train": {"size": 28, "model": "res-cnn"}}))
    at = open_page("home.py", data_root, runs_dir).run()
    assert any(o.startswith(model.name) for o in at.selectbox(key="delete_choice").options)  # listed: it has a config
    at.selectbox(key="delete_choice").set_value(model.name).run()
    at.button(key="delete_ask").click().run()
    at.button(key="delete_yes").click().run()
    assert not at.exception
    assert any("Not deleted" in e.value and "not created by this tool" in e.value for e in at.error)
    assert (model / "config.json").is_file()


def test_the_sidebar_says_when_the_runs_folder_is_not_one_and_train_refuses_it(monkeypatch, open_page, data_root,
                                                                                 tmp_path):
    from streamlit.testing.v1 import AppTest

    # The Train page's rerun measures the training speed in the background: not what is tested here.
    monkeypatch.setattr(E, "measure_speed", lambda config, **kw: (100.0, "cpu"))
    monkeypatch.setattr(E, "start_seconds", lambda: 0.0)

    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
    at.session_state["data_root"] = str(data_root)
    at.session_state["runs_dir"] = "/etc"
    at.run()
    assert not at.exception
    assert any("system folder" in w.value for w in at.sidebar.warning)
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("not a run")
    at = open_page("train.py", data_root, home).run()
    at.button(key="train_go").click().run()
    assert not at.exception
    assert any(e.value.startswith("Not started") and "thesis.tex" in e.value for e in at.error)
    assert [p.name for p in home.iterdir()] == ["thesis.tex"]
