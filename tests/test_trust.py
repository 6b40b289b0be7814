"""Issue #21, "Nothing around a run is trusted": each reproduced case, run against the code.

Planted links in a run folder, imports over data that runs depend on, one image under many CSV rows,
runs left `running` by a dead container, deletes cut short, a deleted queued run, config.json values
out of range, damaged run files, and text from the URL. Each test failed before its fix.
"""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from core.data import chestmnist as D
from core.data.importer import DataImportError, import_folder, main as import_main
from core.runs import folder as runs_folder
from core.runs import record as runs
from core.runs.datafile import config_of
from core.train.recipe import ConfigError, TrainConfig


def texts(elements) -> list[str]:
    return [e.value for e in elements]


# --------------------------------------------------------------------------- 1. links in a run folder

def test_a_lock_symlink_is_refused_and_its_target_kept(runs_copy, tmp_path):
    run_dir = runs_copy[28]
    thesis = tmp_path / "thesis.txt"
    thesis.write_text("four years of work")
    (run_dir / ".lock").unlink(missing_ok=True)  # the trainer's own lock file, replaced by the planted link
    (run_dir / ".lock").symlink_to(thesis)
    with pytest.raises(runs.RunError, match="symbolic link"):
        with runs.training_lock(run_dir):
            pass
    assert thesis.read_text() == "four years of work"


def test_resume_through_a_lock_symlink_ends_with_a_message_and_status_2(runs_copy, tmp_path, capsys):
    from core.train.__main__ import main

    run_dir = runs_copy[28]
    runs.set_status(run_dir, "stopped")
    thesis = tmp_path / "thesis.txt"
    thesis.write_text("four years of work")
    (run_dir / ".lock").unlink(missing_ok=True)  # the trainer's own lock file, replaced by the planted link
    (run_dir / ".lock").symlink_to(thesis)
    assert main(["--resume", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert "\nerror:" in err and "symbolic link" in err and "Traceback" not in err
    assert thesis.read_text() == "four years of work"


def test_the_background_trainer_never_appends_to_a_train_log_link(runs_copy, tmp_path, monkeypatch):
    from core.train import background

    run_dir = runs_copy[28]
    target = tmp_path / "bashrc"
    target.write_text("alias ls=ls\n")
    runs.log_path(run_dir).symlink_to(target)
    monkeypatch.setattr(background.subprocess, "Popen", lambda *a, **k: pytest.fail("started through a link"))
    with pytest.raises(runs.RunError, match="symbolic link"):
        background.launch([run_dir])
    assert target.read_text() == "alias ls=ls\n"


def test_a_stop_link_or_folder_is_no_stop_request_and_breaks_nothing(tmp_path):
    (tmp_path / "STOP").mkdir()
    assert not runs.stop_requested(tmp_path)
    runs.clear_stop(tmp_path)  # no IsADirectoryError
    assert (tmp_path / "STOP").is_dir()
    (tmp_path / "STOP").rmdir()
    target = tmp_path / "target"
    target.write_text("kept")
    (tmp_path / "STOP").symlink_to(target)
    assert not runs.stop_requested(tmp_path)
    with pytest.raises(runs.RunError, match="symbolic link"):
        runs.request_stop(tmp_path)
    runs.clear_stop(tmp_path)  # a resume clears the planted link, not its target
    assert not (tmp_path / "STOP").is_symlink() and target.read_text() == "kept"
    runs.request_stop(tmp_path)
    assert runs.stop_requested(tmp_path)


# --------------------------------------------------------------------------- 2. imports over data runs use

def _folder(root: Path, n: int = 12) -> tuple[Path, Path]:
    """n distinct 32 px images with NIH labels, one patient each."""
    images = root / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(images / f"{i}.png")
        rows.append({"Image Index": f"{i}.png", "Finding Labels": "Mass" if i % 2 else "No Finding", "Patient ID": i})
    csv = root / "labels.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return images, csv


def test_an_import_never_writes_into_the_bundled_demo(tmp_path):
    images, csv = _folder(tmp_path)
    before = {p.name: p.stat().st_mtime_ns for p in D.DEMO_ROOT.iterdir()}
    for out in (D.DEMO_ROOT, D.DEMO_ROOT / "sub"):
        with pytest.raises(DataImportError, match="bundled demo"):
            import_folder(images, csv, 64, out, replace=True)
    assert {p.name: p.stat().st_mtime_ns for p in D.DEMO_ROOT.iterdir()} == before


def test_an_existing_file_is_replaced_only_on_request_and_kept(tmp_path):
    images, csv = _folder(tmp_path)
    out = tmp_path / "data"
    first = import_folder(images, csv, 28, out).path.read_bytes()
    with pytest.raises(DataImportError, match="exists already"):
        import_folder(images, csv, 28, out, seed=1)
    report = import_folder(images, csv, 28, out, seed=1, replace=True, runs_dir=tmp_path / "no-runs")
    kept = [p for p in out.iterdir() if ".replaced-" in p.name]
    assert len(kept) == 1 and kept[0].read_bytes() == first
    assert any("kept as" in w for w in report.warnings)


def test_a_data_file_a_run_was_trained_on_is_never_replaced(runs_copy, data_root, tmp_path, capsys):
    images, csv = _folder(tmp_path)
    # The run's data, copied to a folder of its own: same bytes, so the MD5 in the run's config names it.
    root = tmp_path / "root"
    root.mkdir()
    (root / D.npz_name(28)).write_bytes(D.npz_path(data_root, 28).read_bytes())
    before = (root / D.npz_name(28)).read_bytes()
    with pytest.raises(DataImportError, match="data of 1 run"):
        import_folder(images, csv, 28, root, replace=True, runs_dir=runs_copy[28].parent)
    assert import_main([str(images), str(csv), "--size", "28", "--out", str(root), "--replace",
                        "--runs-dir", str(runs_copy[28].parent)]) == 2
    assert "data of 1 run" in capsys.readouterr().err
    assert (root / D.npz_name(28)).read_bytes() == before and len(list(root.iterdir())) == 1


def test_the_apps_import_defaults_to_a_new_folder_not_the_data_root(open_page, data_root, tmp_path, monkeypatch):
    images, csv = _folder(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    data = tmp_path / "data"
    data.mkdir()
    before = D.npz_path(data_root, 28).read_bytes()
    (data / D.npz_name(28)).write_bytes(before)
    at = open_page("home.py", data, tmp_path / "runs").run()
    at.text_input(key="import_images").input(str(images))
    at.text_input(key="import_csv").input(str(csv))
    at.selectbox(key="import_size").select(28)
    at.button(key="import_go").click().run()
    assert not at.exception and not at.error, texts(at.error)
    assert (data / D.npz_name(28)).read_bytes() == before
    (written,) = (tmp_path / "home" / "chestmnist-imports").glob(f"*/{D.npz_name(28)}")
    assert len(D.load(written.parent, 28).train) > 0


# --------------------------------------------------------------------------- 3. one image under many rows

def test_one_image_file_under_many_csv_rows_is_never_copied(tmp_path):
    images = tmp_path / "images"
    (images / "p1").mkdir(parents=True)
    Image.fromarray(np.full((32, 32), 7, np.uint8)).save(images / "p1" / "image.png")
    for i in range(6):  # enough good images that the 70 ambiguous rows alone decide nothing
        Image.fromarray(np.full((32, 32), 20 * i, np.uint8)).save(images / f"ok{i}.png")
    rows = [{"Image Index": f"p{i}/image.png", "Finding Labels": ["Mass", "No Finding"][i % 2], "Patient ID": i}
            for i in range(1, 71)]
    pd.DataFrame(rows).to_csv(tmp_path / "many.csv", index=False)
    with pytest.raises(DataImportError) as e:
        import_folder(images, tmp_path / "many.csv", 28, tmp_path / "out")
    assert "70 rows of the CSV name this one file (p1/image.png)" in str(e.value)
    assert not (tmp_path / "out").exists()
    # Among good rows, two rows reaching one file are both skipped and named; the rest import once each.
    rows = [{"Image Index": f"ok{i}.png", "Finding Labels": "Mass" if i % 2 else "No Finding", "Patient ID": 100 + i}
            for i in range(6)] + [{"Image Index": "a/ok0.png", "Finding Labels": "Hernia", "Patient ID": 9}]
    pd.DataFrame(rows).to_csv(tmp_path / "two.csv", index=False)
    report = import_folder(images, tmp_path / "two.csv", 28, tmp_path / "out2", fractions=(0.34, 0.33, 0.33))
    assert sum(report.n_images.values()) == 5
    assert sorted(n for n, why in report.skipped if "2 rows of the CSV name this one file" in why) == ["a/ok0.png",
                                                                                                      "ok0.png"]


# --------------------------------------------------------------------------- 6-8. stuck and half-deleted runs

def _planted_status(run_dir: Path, state: str, host: str) -> None:
    status = json.loads(runs.status_path(run_dir).read_text())
    runs.write_json(runs.status_path(run_dir), {**status, "state": state, "host": host, "pid": 1, "started": 1})


def test_a_run_left_running_on_another_host_reads_interrupted_when_its_lock_is_free(runs_copy):
    run_dir = runs_copy[28]
    _planted_status(run_dir, "running", "container-before-restart")
    (run_dir / ".lock").touch()
    assert runs.read_status(run_dir)["state"] == "interrupted"
    assert runs_folder.delete_run(run_dir.parent, run_dir.name) == []


def test_a_run_training_on_another_host_stays_running_while_its_lock_is_held(runs_copy):
    run_dir = runs_copy[28]
    _planted_status(run_dir, "running", socket.gethostname() + "-elsewhere")
    with runs.training_lock(run_dir):  # held here, through another open file: what the other host's trainer does
        assert runs.read_status(run_dir)["state"] == "running"
        with pytest.raises(runs.RunError, match="still training"):
            runs_folder.delete_run(run_dir.parent, run_dir.name)


def test_a_delete_cut_short_leaves_a_run_that_can_be_deleted_again(runs_copy, monkeypatch):
    run_dir = runs_copy[28]
    real_unlink, removed = os.unlink, []

    def failing(path, *a, **k):
        if Path(path).name == "best.pt":
            raise PermissionError(13, "Permission denied", str(path))
        removed.append(Path(path).name)
        return real_unlink(path, *a, **k)
    monkeypatch.setattr(runs_folder.os, "unlink", failing)
    with pytest.raises(PermissionError):
        runs_folder.delete_run(run_dir.parent, run_dir.name)
    assert runs.MARKER not in removed and "status.json" not in removed and "config.json" not in removed
    monkeypatch.setattr(runs_folder.os, "unlink", real_unlink)
    assert runs_folder.delete_run(run_dir.parent, run_dir.name) == []
    assert not run_dir.exists()


def test_a_delete_cut_after_the_status_file_can_still_finish(runs_copy):
    run_dir = runs_copy[28]
    for p in run_dir.iterdir():
        if p.name != runs.MARKER:
            p.unlink()
    assert runs_folder.delete_run(run_dir.parent, run_dir.name) == []


def test_a_queued_run_deleted_from_the_queue_is_skipped_and_the_queue_goes_on(runs_copy, monkeypatch, capsys):
    from core.train import __main__ as cli

    first, second = runs_copy[28], runs_copy[64]
    trained = []

    def fake_train(run_dir, *a, **k):
        trained.append(Path(run_dir).name)
        return "finished"
    monkeypatch.setattr(cli, "train", fake_train)
    for run_dir in (first, second):
        runs.set_status(run_dir, "queued")
    runs_folder.delete_run(first.parent, first.name)
    assert cli.main(["--run-dirs", str(first), str(second)]) == 0
    assert trained == [second.name]
    assert "deleted while queued" in capsys.readouterr().err


# --------------------------------------------------------------------------- 4. config.json by range

@pytest.mark.parametrize("field, value", [("subset", 0), ("seed", 2**70), ("seed", -1), ("lr", 1e300),
                                          ("model", "../../etc"), ("device", "tpu"), ("select_by", "train_loss"),
                                          ("batch_size", 0), ("epochs", -1)])
def test_config_json_values_out_of_range_are_refused_like_the_cli(runs_copy, field, value):
    run_dir = runs_copy[28]
    config = json.loads(runs.config_path(run_dir).read_text())
    config["train"][field] = value
    runs.config_path(run_dir).write_text(json.dumps(config))
    with pytest.raises(runs.RunError, match=field.replace("_", "-")):
        config_of(run_dir)


@pytest.mark.parametrize("field, value", [("pos_weight_clip", float("nan")), ("pos_weight_clip", float("inf")),
                                          ("seed", -1), ("seed", 10**19)])
def test_flags_out_of_range_are_refused_before_a_folder_is_made(field, value):
    with pytest.raises(ConfigError, match=field.replace("_", "-")):
        TrainConfig(**{field: value}).validate()


# --------------------------------------------------------------------------- one damaged file, not the app

DAMAGE = {
    "a dict where a metric belongs": ("metrics.jsonl", '{"epoch": 3, "val_auc": {}}\n'),
    "an epoch of 10^20": ("metrics.jsonl", '{"epoch": 100000000000000000000, "val_auc": 0.5}\n'),
    "format_version as a string": ("config.json", None),
    "a truncated test_scores.npz": ("test_scores.npz", None),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_one_damaged_run_file_leaves_every_page_up(damage, runs_copy, data_root, open_page):
    run_dir, other = runs_copy[28], runs_copy[64]
    name, text = DAMAGE[damage]
    path = run_dir / name
    if name == "config.json":
        config = json.loads(path.read_text())
        path.write_text(json.dumps({**config, "format_version": "2"}))
    elif name == "test_scores.npz":
        path.write_bytes(path.read_bytes()[:200])
    else:
        path.write_text(path.read_text() + text)
    assert run_dir.name in {r.id for r in runs_folder.list_runs(run_dir.parent)}
    for page in ("home.py", "compare.py", "run.py", "train.py"):
        at = open_page(page, data_root, run_dir.parent)
        if page == "run.py":
            at.query_params["run"] = run_dir.name
        at.run()
        assert not at.exception, (page, at.exception)
    at = open_page("home.py", data_root, run_dir.parent).run()
    table = next(df.value for df in at.dataframe if "run" in df.value.columns)
    assert {run_dir.name, other.name} <= set(table["run"])


# --------------------------------------------------------------------------- 5. text from the URL

ATTACK = "[Your session expired, click here](https://evil.example/login) ![x](https://evil.example/track.png)"


def test_url_text_is_never_rendered_as_a_link_or_image(open_page, data_root, runs_copy):
    at = open_page("run.py", data_root, runs_copy[28].parent)
    at.query_params["run"] = ATTACK
    at.run()
    assert not at.exception
    shown = " ".join(texts(at.warning) + texts(at.markdown) + texts(at.caption) + texts(at.error))
    assert "evil.example" not in shown and "](" not in shown


@pytest.mark.parametrize("key", ["runs_dir", "data_root"])
def test_a_folder_from_the_url_with_markup_is_ignored(key):
    from streamlit.testing.v1 import AppTest

    def page() -> None:
        import streamlit as st

        from ui.common import url_folder
        st.write(repr(url_folder("runs_dir")), repr(url_folder("data_root")))
    at = AppTest.from_function(page)
    at.query_params[key] = ATTACK
    at.run()
    assert not at.exception and "evil" not in " ".join(texts(at.markdown))


# --------------------------------------------------------------------------- 9. studies sharing a runs folder

def test_a_study_waits_for_a_run_another_study_trains_and_counts_it_finished(runs_copy):
    import threading

    from core.study.runner import settled_state

    run_dir = runs_copy[28]
    started, release = threading.Event(), threading.Event()

    def other_study() -> None:  # trains the run (holds its lock, status running), then finishes it
        with runs.training_lock(run_dir):
            runs.set_status(run_dir, "running")
            started.set()
            release.wait(10)
            runs.set_status(run_dir, "finished")
    t = threading.Thread(target=other_study)
    t.start()
    started.wait(10)
    logged: list[str] = []
    threading.Timer(0.3, release.set).start()
    assert settled_state(run_dir, logged.append, poll_s=0.05) == "finished"
    t.join(10)
    assert any("waiting for it" in line for line in logged)


# --------------------------------------------------------------------------- tracebacks and wrong advice

def test_an_undefined_test_auc_is_printed_as_undefined_not_a_traceback(runs_copy, monkeypatch, capsys):
    from core.train import __main__ as cli

    run_dir = runs_copy[28]
    metrics = json.loads((run_dir / "test_metrics.json").read_text())
    runs.write_test_metrics(run_dir, {**metrics, "auc": None})  # a 1-image or all-negative test split
    monkeypatch.setattr(cli, "train", lambda *a, **k: "finished")
    assert cli.main(["--resume", str(run_dir)]) == 0
    assert "test AUC (medmnist) undefined" in capsys.readouterr().err


def test_a_data_root_of_non_utf8_bytes_loads(data_root, tmp_path):
    root = tmp_path / os.fsdecode(b"donn\xe9es")  # Latin-1 bytes, not UTF-8
    root.mkdir()
    (root / D.npz_name(28)).write_bytes(D.npz_path(data_root, 28).read_bytes())
    assert len(D.load(root, 28, on_disk=True).train) == len(D.load(data_root, 28).train)


def test_a_device_as_the_settings_file_is_refused_at_once():
    from core import settings

    with pytest.raises(settings.SettingsError, match="over"):
        settings.load("/dev/zero")


def test_evaluating_on_moved_data_records_the_new_place(runs_copy, data_root, tmp_path):
    from core.evaluate.scoring import evaluate_run

    run_dir = runs_copy[28]
    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / D.npz_name(28)).write_bytes(D.npz_path(data_root, 28).read_bytes())
    evaluate_run(run_dir, "cpu", data_root=moved)
    assert runs.read_config(run_dir)["train"]["data_root"] == str(moved.resolve())


def test_a_frozen_clock_neither_divides_by_zero_nor_stores_negative_seconds(data_root, tmp_path, monkeypatch):
    import time

    from core.train import prepare_run, train

    cfg = TrainConfig(size=28, epochs=1, subset=64, batch_size=32, data_root=str(data_root),
                      runs_dir=str(tmp_path / "runs"), device="cpu", select_by="val_loss")
    run_dir = prepare_run(cfg)
    monkeypatch.setattr(time, "time", lambda: 1_000_000.0)
    assert train(run_dir) == "finished"
    (row,) = runs.read_metrics(run_dir)
    assert row["seconds"] >= 0 and row["images_per_s"] > 0


def test_sigterm_inside_a_checkpoint_write_stops_the_run_resumably(data_root, tmp_path, monkeypatch):
    from core.runs import checkpoints
    from core.train import loop, prepare_run, train

    cfg = TrainConfig(size=28, epochs=1, subset=64, batch_size=32, data_root=str(data_root),
                      runs_dir=str(tmp_path / "runs"), device="cpu", select_by="val_loss")
    run_dir = prepare_run(cfg)

    def interrupted_save(*a, **k):  # torch.save reports the interrupt it was writing through as a RuntimeError
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos") from None
    monkeypatch.setattr(checkpoints, "save_last", interrupted_save)
    monkeypatch.setattr(loop.checkpoints, "save_last", interrupted_save)
    assert train(run_dir) == "stopped"
    assert runs.read_status(run_dir)["state"] == "stopped"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_run_folder_is_a_message(runs_copy):
    from core.train import train

    run_dir = runs_copy[28]
    runs.set_status(run_dir, "stopped")
    run_dir.chmod(0o555)
    try:
        with pytest.raises(runs.RunError):
            train(run_dir)
    finally:
        run_dir.chmod(0o755)


def test_a_run_folder_deleted_while_training_is_a_message(data_root, tmp_path, monkeypatch):
    import shutil

    from core.train import loop, prepare_run, train

    cfg = TrainConfig(size=28, epochs=2, subset=64, batch_size=32, data_root=str(data_root),
                      runs_dir=str(tmp_path / "runs"), device="cpu", select_by="val_loss")
    run_dir = prepare_run(cfg)
    real = loop._record_epoch

    def record_then_vanish(*a, **k):
        real(*a, **k)
        shutil.rmtree(run_dir)
    monkeypatch.setattr(loop, "_record_epoch", record_then_vanish)
    with pytest.raises(runs.RunError, match="deleted, moved or made read-only"):
        train(run_dir)


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs /proc, a file system nothing can be created in")
def test_an_unwritable_cache_is_not_called_a_full_disk(data_root, monkeypatch):
    monkeypatch.setenv("CHESTMNIST_CACHE", "/proc/chestmnist-cache")
    with pytest.raises(D.DataError) as e:
        D.load(data_root, 28, on_disk=True)
    assert "cannot be created" in str(e.value) and "Disk full" not in str(e.value)


@pytest.mark.parametrize("flag", ["--seed=-1", "--seed=99999999999999999999", "--pos-weight-clip=nan",
                                  "--pos-weight-clip=inf"])
def test_out_of_range_flags_end_with_status_2_and_leave_no_run_folder(flag, data_root, tmp_path, capsys):
    from core.train.__main__ import main

    assert main([flag, "--epochs", "1", "--data-root", str(data_root), "--runs-dir", str(tmp_path / "runs")]) == 2
    assert "error:" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_split_with_more_images_than_any_xray_set_is_not_loaded(data_root, monkeypatch):
    from core.data import npz

    monkeypatch.setattr(npz, "MAX_IMAGES", 100)  # the planted file's 256 train images stand in for a zip bomb's millions
    with pytest.raises(D.DataError, match="declares 256 images in train_images"):
        D.load(data_root, 28)


def test_the_run_page_does_not_show_a_log_that_is_a_link(open_page, data_root, runs_copy, tmp_path):
    run_dir = runs_copy[28]
    secret = tmp_path / "id_rsa"
    secret.write_text("PRIVATE KEY")
    runs.log_path(run_dir).symlink_to(secret)
    at = open_page("run.py", data_root, run_dir.parent)
    at.query_params["run"] = run_dir.name
    at.run()
    assert not at.exception
    assert not any("PRIVATE KEY" in c for c in texts(at.code))
    assert any("symbolic link" in w for w in texts(at.warning))


def test_a_download_is_never_written_through_a_planted_part_link(tmp_path, fake_download):
    fake_download(b"12345")
    thesis = tmp_path / "thesis.txt"
    thesis.write_text("four years of work")
    root = tmp_path / "root"
    root.mkdir()
    (root / (D.npz_name(28) + ".part")).symlink_to(thesis)
    with pytest.raises(D.DataError, match="symbolic link"):
        D.download(root, 28)
    assert thesis.read_text() == "four years of work"
