"""core.study on generated planted-pattern data: runs, re-use without retraining, resume, report numbers."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.data import chestmnist as D
from core.runs import record as runs
from core import metrics
from core.files import to_jsonable
from core.study import (FIGURES, StudyError, StudyReport, build_report, check_sizes, format_tables,
                        list_studies, load_study, main, read_study_file, run_name, run_study)
from core.study.records import label_candidates
from core.train import TrainConfig, prepare_run, train
from tests.synthetic import write_planted

REPORT_FILES = ("report.md", "summary.json", "study.json", "runs.csv", "table1_val.csv", "test.csv", "cost.csv",
                "per_class_test_auc.csv", *FIGURES.values())


def _base(data_root: Path, runs_dir: Path, **kw) -> TrainConfig:
    return TrainConfig(epochs=2, batch_size=64, device="cpu", data_root=str(data_root), runs_dir=str(runs_dir), **kw)


def _study(*args, **kw):
    # Few images for the inference timing and no chatter: the tests check numbers, not speed.
    return run_study(*args, inference_images=32, log=lambda m: None, **kw)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """Planted-pattern data at 28 and 64 px, smaller than conftest's (128/64/64) to keep the trainings short."""
    root = tmp_path_factory.mktemp("study-data")
    for size in (28, 64):
        write_planted(root, size, n=(128, 64, 64))
    return root


@pytest.fixture(scope="module")
def study(data_root, tmp_path_factory) -> tuple[StudyReport, Path, Path]:
    """A 2-size, 1-seed study trained the real way (one child process per run)."""
    runs_dir, out = tmp_path_factory.mktemp("study-runs"), tmp_path_factory.mktemp("reports") / "s"
    report = _study(_base(data_root, runs_dir), [64, 28], [0], name="t", out_dir=out)
    return report, runs_dir, out


def _snapshot(run_dir: Path) -> dict:
    return {f: (run_dir / f).stat().st_mtime_ns for f in ("best.pt", "last.pt", "metrics.jsonl", "test_metrics.json")}


def test_study_trains_one_finished_run_per_size(study):
    report, runs_dir, out = study
    entries = read_study_file(out)["runs"]
    assert [(e["size"], e["seed"]) for e in entries] == [(28, 0), (64, 0)]
    assert sorted(p.name for p in runs_dir.iterdir()) == sorted(Path(e["run_dir"]).name for e in entries)
    for e in entries:
        run_dir = Path(e["run_dir"])
        assert runs.read_status(run_dir)["state"] == "finished"
        train_cfg = runs.read_config(run_dir)["train"]
        assert (train_cfg["size"], train_cfg["seed"], train_cfg["name"]) == (e["size"], 0, run_name("t", 0))
        assert [r["epoch"] for r in runs.read_metrics(run_dir)] == [1, 2]
        # The child process's peak memory was recorded for the report.
        sessions = json.loads((run_dir / "study_cost.json").read_text())["sessions"]
        assert len(sessions) == 1 and sessions[0]["peak_rss_mb"] > 50 and sessions[0]["epochs_after"] == 2


def test_report_files_present_and_say_which_data(study):
    report, _, out = study
    for name in REPORT_FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    for png in FIGURES.values():
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text()
    assert "NOT the official ChestMNIST" in md and "128/64/64" in md  # planted data, detected by split sizes
    assert all(f"]({png})" in md for png in FIGURES.values())
    assert report.data_warning and not report.official_data
    assert list_studies(out.parent) == [out]


def test_table_numbers_equal_the_run_files(study):
    report, _, out = study
    loaded = load_study(out)
    assert loaded.summary == json.loads(json.dumps(to_jsonable(report.summary)))  # what build_report computed
    table1 = pd.read_csv(out / "table1_val.csv").set_index("size")
    test_csv = pd.read_csv(out / "test.csv").set_index("size")
    cost_csv = pd.read_csv(out / "cost.csv").set_index("size")
    md = (out / "report.md").read_text()
    for row in loaded.summary["sizes"]:
        size = row["size"]
        run = next(r for r in loaded.summary["runs"] if r["size"] == size)
        run_dir = Path(run["run_dir"])
        metrics_rows = runs.read_metrics(run_dir)
        best = next(r for r in metrics_rows if r["epoch"] == metrics_rows[-1]["best_epoch"])
        test = json.loads((run_dir / "test_metrics.json").read_text())
        config = runs.read_config(run_dir)
        for key in ("val_auc", "val_acc", "val_macro_f1", "val_micro_f1", "val_loss"):
            assert row[key] == best[key] and table1.loc[size, key] == pytest.approx(best[key], rel=1e-12), key
        assert row["best_epoch"] == [best["epoch"]]
        assert row["test_auc"] == test["auc"] and row["test_acc"] == test["acc"]
        assert [row["test_auc_ci_low"], row["test_auc_ci_high"]] == test["auc_ci"]
        assert test_csv.loc[size, "test_auc"] == pytest.approx(test["auc"], rel=1e-12)
        scores, labels = runs.load_scores(run_dir, "test")
        assert [row["test_acc_ci_low"], row["test_acc_ci_high"]] == \
            metrics.medmnist_acc_ci(labels, scores, n_boot=test["n_boot"]).tolist()
        assert row["params"] == config["model"]["params"]
        assert row["gflops"] == config["model"]["flops_per_image"] / 1e9
        assert row["seconds_per_epoch"] == float(np.median([r["seconds"] for r in metrics_rows]))
        assert cost_csv.loc[size, "train_images_per_s"] == pytest.approx(np.median([r["images_per_s"] for r in metrics_rows]))
        assert row["inference_ms_per_image"] > 0 and row["peak_rss_mb"] > 50
        per_class = {c: v["auc"] for c, v in test["per_class"].items()}
        assert row["test_auc_per_class"] == per_class
        # The same text in the report, the app's tables and the CLI.
        assert f"| {size} px | 1 | {best['epoch']} | {best['val_auc']:.3f} | {best['val_acc']:.3f} |" in md
        assert f"{test['auc']:.3f} [{test['auc_ci'][0]:.3f}, {test['auc_ci'][1]:.3f}]" in md
    tables = loaded.tables()
    assert list(tables) == ["Table 1: validation at the best epoch", "Test", "Calibration and operating points",
                            "Differences", "Cost"]
    # Two sizes, one candidate: one comparison, the primary family's 28 px against the largest size, paired.
    [diff] = loaded.summary["differences"]["rows"]
    assert (diff["family"], diff["kind"], diff["a"], diff["b"], diff["paired"]) == ("primary", "vs 64 px", "28 px",
                                                                                     "64 px", True)
    assert diff["delta"] == pytest.approx(test_csv.loc[28, "test_auc"] - test_csv.loc[64, "test_auc"], abs=1e-9)
    assert diff["p_adjusted"] == diff["p_value"] and diff["scope"] == "runs"  # a family of one; one seed each
    assert diff["noninferiority"] in md and "margin 0.01" in diff["noninferiority"]
    assert loaded.summary["differences"]["method"] == "mean-auc" and "mean-auc" in md
    assert diff["verdict"] in md
    assert list(tables["Test"]["size"]) == ["28 px", "64 px"]
    assert loaded.per_class_frame().shape == (D.N_CLASSES, 2)
    assert len(loaded.runs_frame()) == 2
    # The notebook view: one numeric row per size with the run's own numbers, the figures the report links.
    sizes = loaded.sizes_frame().set_index("size")
    assert "test_auc_per_class" not in sizes.columns  # per-class dicts stay in summary / per_class_frame
    for run in loaded.summary["runs"]:
        test = json.loads((Path(run["run_dir"]) / "test_metrics.json").read_text())
        config = runs.read_config(Path(run["run_dir"]))
        assert sizes.loc[run["size"], "test_auc"] == test["auc"] and sizes.loc[run["size"], "test_acc"] == test["acc"]
        assert sizes.loc[run["size"], "params"] == config["model"]["params"]
    assert loaded.figures and all(f.is_file() and f"]({f.name})" in md for f in loaded.figures.values())
    assert loaded.markdown.startswith(f"# Resolution study `{loaded.name}`") and "Table 1" in loaded.markdown


def test_rerun_reuses_finished_runs_without_training(study, data_root, tmp_path):
    report, runs_dir, out = study
    entries = read_study_file(out)["runs"]
    before = {e["run_dir"]: _snapshot(Path(e["run_dir"])) for e in entries}
    sessions = {p: (Path(p) / "study_cost.json").read_text() for p in before}
    again = _study(_base(data_root, runs_dir), [28, 64], [0], name="t", out_dir=out)
    assert {e["run_dir"] for e in read_study_file(out)["runs"]} == set(before)
    assert {p: _snapshot(Path(p)) for p in before} == before  # no checkpoint or metrics file was touched
    assert {p: (Path(p) / "study_cost.json").read_text() for p in before} == sessions  # no training session
    assert len(list(runs_dir.iterdir())) == 2
    assert [r["test_auc"] for r in again.summary["runs"]] == [r["test_auc"] for r in report.summary["runs"]]
    # Without study.json (another report folder) the runs are found by their names in the runs folder.
    elsewhere = _study(_base(data_root, runs_dir), [28], [0], name="t", out_dir=tmp_path / "other")
    assert [r["run_dir"] for r in elsewhere.summary["runs"]] == [entries[0]["run_dir"]]
    assert len(list(runs_dir.iterdir())) == 2


def test_stopped_run_is_resumed_not_restarted(data_root, tmp_path):
    runs_dir = tmp_path / "runs"
    base = _base(data_root, runs_dir)
    # A study run stopped after its first epoch, as Ctrl-C or the app's Stop would leave it.
    run_dir = prepare_run(dataclasses.replace(base, size=28, seed=3, name=run_name("r", 3)))
    epochs = []
    assert train(run_dir, on_epoch=lambda row: epochs.append(row), should_stop=lambda: bool(epochs)) == "stopped"
    first = runs.read_metrics(run_dir)
    assert len(first) == 1
    report = _study(base, [28], [3], name="r", out_dir=tmp_path / "report", isolate=False)
    assert [p.name for p in runs_dir.iterdir()] == [run_dir.name]
    rows = runs.read_metrics(run_dir)
    assert [r["epoch"] for r in rows] == [1, 2] and rows[0] == first[0]
    assert runs.read_status(run_dir)["state"] == "finished"
    # Trained inside the study process: the report says memory was not measured rather than guessing.
    assert report.summary["sizes"][0]["peak_rss_mb"] is None
    assert "not measured" in report.summary["sizes"][0]["memory_note"]
    assert "not measured" in (tmp_path / "report" / "report.md").read_text()


def test_a_stop_asked_while_the_runs_process_starts_stops_the_study(data_root, tmp_path):
    """The app's Stop (SIGTERM to the study) while a run's child process was still importing: the child's train()
    cleared the STOP the study had left, trained to the end, and the study went on to its next run."""
    import os
    import signal
    import threading

    from core.study.common import StudyStopped
    from core.study.runner import train_child

    run_dir = prepare_run(dataclasses.replace(_base(data_root, tmp_path / "runs"), size=28, epochs=1))
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()  # train_child turns it into a stop
    with pytest.raises(StudyStopped, match="while .* was (finishing|starting)"):
        train_child(run_dir, 1, log=lambda m: None)
    assert runs.read_status(run_dir)["state"] in ("finished", "stopped")  # a study run again re-uses or resumes it


def test_missing_size_is_a_clear_error_before_anything_runs(data_root, tmp_path):
    runs_dir, out = tmp_path / "runs", tmp_path / "report"
    with pytest.raises(D.DataError) as e:
        _study(_base(data_root, runs_dir), [28, 128], [0], name="m", out_dir=out)
    msg = str(e.value)
    assert "[128]" in msg and "chestmnist_128.npz" in msg and "--skip-missing" in msg and "[28, 64]" in msg
    assert not runs_dir.exists() and not out.exists()
    assert check_sizes(data_root, [128, 28], skip_missing=True) == [28]


def test_cli_reports_missing_size_and_bad_settings(data_root, tmp_path, capsys):
    args = ["--epochs", "1", "--data-root", str(data_root), "--runs-dir", str(tmp_path / "runs"),
            "--out", str(tmp_path / "out"), "--device", "cpu"]
    assert main(["--sizes", "224", *args]) == 2
    assert "chestmnist_224.npz" in capsys.readouterr().err
    assert main(["--sizes", "28", "--model", "nope", *args]) == 2
    assert "--model 'nope' is unknown" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_other_settings_under_the_same_name_are_refused(study, data_root):
    _, runs_dir, out = study
    with pytest.raises(StudyError, match="epochs"):
        _study(dataclasses.replace(_base(data_root, runs_dir), epochs=3), [28], [0], name="t", out_dir=out)


def test_load_study_without_report_is_an_error(tmp_path):
    with pytest.raises(StudyError, match="no summary.json"):
        load_study(tmp_path)


def test_build_report_refuses_unfinished_runs(data_root, tmp_path):
    run_dir = prepare_run(_base(data_root, tmp_path / "runs", size=28))
    with pytest.raises(runs.RunError, match="has no test metrics"):
        build_report([run_dir], tmp_path / "out")


def test_multi_seed_tables_show_mean_and_std():
    row = {"size": 28, "n_seeds": 3, "best_epoch": [2, 3, 2], "auc_undefined_classes": [], "device": "cpu",
           "world_size": 1, "params": 10, "gflops": 0.1, "data_mb": 1.0}
    for key in ("val_auc", "val_acc", "val_macro_f1", "val_micro_f1", "val_loss", "test_auc", "test_acc",
                "test_macro_f1", "seconds_per_epoch", "train_images_per_s"):
        row[key], row[f"{key}_std"] = 0.8, 0.01
    tables = format_tables({"sizes": [row], "ci_level": 0.95})
    assert tables["Table 1: validation at the best epoch"].loc[0, "val AUC"] == "0.800 ± 0.010"
    assert tables["Test"].loc[0, "test AUC (mean ± std over seeds)"] == "0.800 ± 0.010 (n=3)"


def test_one_seed_per_size_shows_bootstrap_cis_even_when_sizes_used_different_seeds(study, tmp_path):
    report, _, _ = study
    run28, run64 = (Path(r["run_dir"]) for r in sorted(report.summary["runs"], key=lambda r: r["size"]))
    other = tmp_path / "runs" / run64.name
    shutil.copytree(run64, other)
    config = runs.read_config(other)
    config["train"]["seed"] = 1  # 28 px has seed 0 only, 64 px seed 1 only
    runs.write_json(other / "config.json", config)
    built = build_report([run28, other], tmp_path / "report")
    assert built.summary["seeds"] == [0, 1] and all(r["n_seeds"] == 1 for r in built.summary["sizes"])
    md = (tmp_path / "report" / "report.md").read_text()
    assert "over seeds" not in md and "bootstrap CI" in md


def _clone(run_dir: Path, dest: Path, scores: np.ndarray | None = None, **train) -> Path:
    """A copy of a finished run with other train settings (and optionally other test scores)."""
    shutil.copytree(run_dir, dest)
    config = runs.read_config(dest)
    config["train"].update(train)
    runs.write_json(dest / "config.json", config)
    if scores is not None:
        labels = runs.load_scores(dest, "test")[1]
        runs.save_scores(dest, "test", scores, labels)
    return dest


def _report(run_dirs: list[Path], out: Path) -> StudyReport:
    return build_report(run_dirs, out, device="cpu", measure_inference_time=False, n_boot=200)


def test_identical_scores_at_two_sizes_are_not_distinguishable_with_delta_zero(study, tmp_path):
    report, _, _ = study
    run28 = Path(next(r["run_dir"] for r in report.summary["runs"] if r["size"] == 28))
    same = _clone(run28, tmp_path / "runs" / "same", size=64)  # the 28 px scores, labelled 64 px
    [row] = _report([run28, same], tmp_path / "r").summary["differences"]["rows"]
    assert row["delta"] == 0 and (row["ci_low"], row["ci_high"]) == (0, 0) and row["p_value"] == 1
    assert row["verdict"] == "not distinguishable (delta 0.000 [0.000, 0.000]) (these two runs, not their recipes)"


def test_known_better_model_is_named_better_than_seed_cnn(study, tmp_path):
    report, _, _ = study
    run28 = Path(next(r["run_dir"] for r in report.summary["runs"] if r["size"] == 28))
    scores, labels = runs.load_scores(run28, "test")
    perfect = _clone(run28, tmp_path / "runs" / "perfect", scores=0.1 + 0.8 * labels.astype(np.float32))
    baseline = _clone(run28, tmp_path / "runs" / "base", model="seed-cnn")
    built = _report([perfect, baseline], tmp_path / "r")
    assert built.summary["candidates"] == ["res-cnn", "seed-cnn"]
    [row] = [r for r in built.summary["differences"]["rows"] if r["kind"] == "vs seed-cnn"]
    defined = [c for c in range(labels.shape[1]) if 0 < labels[:, c].sum() < len(labels)]
    by_hand = 1.0 - float(np.mean([metrics.auc_per_class(labels, scores)[c] for c in defined]))
    assert row["delta"] == pytest.approx(by_hand, abs=1e-9) and row["ci_low"] > 0
    assert row["verdict"].startswith(f"res-cnn 28 px better than seed-cnn 28 px by {by_hand:.3f}")
    md = (tmp_path / "r" / "report.md").read_text()
    assert "| candidate | size |" in md and "`seed-cnn`" in md and row["verdict"] in md


def test_seeds_form_one_group_and_its_difference_is_the_mean_auc_difference(study, tmp_path):
    report, _, _ = study
    run28 = Path(next(r["run_dir"] for r in report.summary["runs"] if r["size"] == 28))
    scores, labels = runs.load_scores(run28, "test")
    rng = np.random.default_rng(0)
    noisy = [np.clip(scores + rng.normal(0, 0.2, scores.shape), 0, 1) for _ in range(2)]
    group64 = [_clone(run28, tmp_path / "runs" / f"s{i}", scores=s, size=64, seed=i) for i, s in enumerate(noisy)]
    built = _report([run28, *group64], tmp_path / "r")
    row64 = next(r for r in built.summary["sizes"] if r["size"] == 64)
    assert row64["n_seeds"] == 2 and row64["seeds"] == [0, 1]
    [diff] = built.summary["differences"]["rows"]
    kept = metrics.eligible_classes(labels)
    mean64 = np.mean([np.nanmean(metrics.auc_per_class(labels, s.astype(np.float32))[kept]) for s in noisy])
    assert (diff["a"], diff["b"], diff["n_runs_a"], diff["n_runs_b"]) == ("28 px", "64 px", 1, 2)
    assert diff["delta"] == pytest.approx(np.nanmean(metrics.auc_per_class(labels, scores)[kept]) - mean64, abs=1e-6)
    assert diff["scope"] == "recipes"  # the two 64 px seeds' spread stands for both groups


def test_a_sweep_run_repeating_a_study_runs_seed_counts_once_and_the_report_says_which(study, tmp_path):
    report, _, _ = study
    run28 = Path(next(r["run_dir"] for r in report.summary["runs"] if r["size"] == 28))
    sweep = _clone(run28, tmp_path / "runs" / "sweep", name="sweep")  # same recipe and seed 0, another name
    built = _report([run28, sweep], tmp_path / "r")
    (row,) = built.summary["sizes"]
    assert row["n_seeds"] == 1 and row["seeds"] == [0]
    assert [r["run_id"] for r in built.summary["runs"]] == ["sweep"]
    note = f"2 runs repeat seed 0 of 28 px res-cnn; the most recent (sweep) is used, the other ({run28.name}) left out."
    assert built.summary["notes"] == [note] and note in (tmp_path / "r" / "report.md").read_text()


def test_runs_on_other_images_are_not_paired(study, tmp_path):
    report, _, _ = study
    run28 = Path(next(r["run_dir"] for r in report.summary["runs"] if r["size"] == 28))
    other_root = tmp_path / "other-data"
    other_root.mkdir()
    other = _clone(run28, tmp_path / "runs" / "other", model="seed-cnn", data_root=str(other_root))
    [row] = _report([run28, other], tmp_path / "r").summary["differences"]["rows"]
    assert (row["a"], row["b"]) == ("res-cnn 28 px", f"seed-cnn data_root={other_root} 28 px")
    assert not row["paired"] and row["verdict"].startswith("not compared:") and "same images" in row["verdict"]


def test_calibration_and_operating_points_come_from_the_run_files(study):
    report, _, out = study
    md = (out / "report.md").read_text()
    for row in report.summary["sizes"]:
        run = next(r for r in report.summary["runs"] if r["size"] == row["size"])
        test = json.loads((Path(run["run_dir"]) / "test_metrics.json").read_text())
        assert (row["test_ece"], row["test_brier"]) == (test["ece"], test["brier"])
        defined = [v for v in test["per_class"].values() if v["auc"] is not None]
        assert row["test_sens_at_spec90"] == pytest.approx(np.mean([v["sens_at_spec90"] for v in defined]))
        assert row["test_sens_at_spec95"] == pytest.approx(np.mean([v["sens_at_spec95"] for v in defined]))
    first = next(iter(test["per_class"].items()))
    assert f"| {first[0]} | {first[1]['support']} |" in md  # positives next to the per-class numbers
    assert "## Calibration and operating points" in md


def test_candidates_are_named_by_how_their_recipe_differs():
    base = {"model": "res-cnn", "epochs": 15, "batch_size": 32, "lr": 0.001}
    records = [{"train_config": {**base, "seed": s}} for s in (0, 1)] + \
        [{"train_config": {**base, "model": "seed-cnn"}}, {"train_config": {**base, "batch_size": 128}}]
    label_candidates(records)
    assert [r["candidate"] for r in records] == ["res-cnn", "res-cnn", "seed-cnn", "res-cnn batch_size=128"]


def test_runs_recorded_before_a_setting_existed_group_with_its_default():
    old = {"model": "res-cnn", "epochs": 15, "batch_size": 32, "lr": 0.001}  # no weight_decay, no schedule
    records = [{"train_config": dict(old)} for _ in range(2)] + [
        {"train_config": {**old, "weight_decay": 0.0, "schedule": "constant"}},
        {"train_config": {**old, "weight_decay": 0.5, "schedule": "constant"}},
        {"train_config": {**old, "schedule": "cosine"}}]
    label_candidates(records)
    assert [r["candidate"] for r in records] == ["res-cnn", "res-cnn", "res-cnn", "res-cnn weight_decay=0.5",
                                                 "res-cnn schedule=cosine"]


def test_cli_builds_one_report_from_several_run_folders(study, tmp_path, capsys):
    report, _, _ = study
    run28 = Path(next(r["run_dir"] for r in report.summary["runs"] if r["size"] == 28))
    folder = tmp_path / "seed-cnn-runs"
    _clone(run28, folder / "a", model="seed-cnn")
    assert main(["--report-only", "--runs", str(run28), str(folder), "--out", str(tmp_path / "r"), "--device", "cpu"]) == 0
    built = load_study(tmp_path / "r")
    assert built.summary["candidates"] == ["res-cnn", "seed-cnn"] and len(built.summary["runs"]) == 2
    assert main(["--runs", str(run28), "--out", str(tmp_path / "r2")]) == 2
    assert "--report-only" in capsys.readouterr().err


def test_margin_and_correction_reach_the_differences(study, tmp_path):
    report, _, _ = study
    run28 = Path(next(r["run_dir"] for r in report.summary["runs"] if r["size"] == 28))
    same = _clone(run28, tmp_path / "runs" / "same", size=64)
    built = build_report([run28, same], tmp_path / "r", device="cpu", measure_inference_time=False, n_boot=100,
                         margin=0.05, correction="bh")
    diff = built.summary["differences"]
    assert (diff["margin"], diff["correction"]) == (0.05, "bh")
    [row] = diff["rows"]
    assert row["noninferior"] and "at margin 0.05" in row["noninferiority"]  # identical scores: delta 0 ± 0
    assert "p (BH)" in (tmp_path / "r" / "report.md").read_text()


def test_effective_resolution_and_ensembles_reach_the_report(study, tmp_path):
    """--effective and --ensembles (issue #22): the 64 px curve, the 28 px gap in words, the per-finding rows and
    the ensemble against its control, in summary.json and report.md, from the run folders."""
    report, _, _ = study
    dirs = [Path(r["run_dir"]) for r in report.summary["runs"]]
    run28 = next(d for d in dirs if runs.read_config(d)["train"]["size"] == 28)
    copies = [_clone(run28, tmp_path / "runs" / "28-again", seed=1)]  # a second member at 28 px for the control
    assert main(["--report-only", "--runs", *map(str, dirs + copies), "--out", str(tmp_path / "r"), "--device", "cpu",
                 "--effective", "--ensembles"]) == 0
    built = load_study(tmp_path / "r")
    res = built.summary["resolution"]
    assert [p["effective_size"] for p in res["effective"]["curve"] if p["source"] == "resampled"] == [16, 20, 28, 40, 56]
    assert res["effective"]["gaps"][0]["trained_at"] == 28 and res["effective"]["gaps"][0]["words"]
    assert res["effective"]["findings"]["a"] == 64 and res["effective"]["findings"]["rows"]
    assert res["ensembles"]["sizes"] == [28, 64] and "px ensemble" in res["ensembles"]["vs_control"]
    text = (tmp_path / "r" / "report.md").read_text()
    assert "## Which pixels matter" in text and "## Multi-scale ensembles" in text and "**28 px**" in text


def test_the_headline_follows_the_verdicts():
    """'Highest test AUC: 28 px, also the cheapest' was printed for a difference of -0.002, p = 0.876 (issue #24):
    a point estimate that the primary family does not separate is no winner."""
    from core.study.markdown import observations

    sizes = [{"size": 28, "candidate": "res-cnn", "test_auc": 0.574, "gflops": 0.058, "n_seeds": 5},
             {"size": 224, "candidate": "res-cnn", "test_auc": 0.567, "gflops": 0.236, "n_seeds": 5}]
    row = {"family": "primary", "a": "28 px", "b": "224 px", "paired": True}
    undecided = {"sizes": sizes, "candidates": ["res-cnn"], "ci_level": 0.95,
                 "differences": {"rows": [row | {"p_value": 0.03, "p_adjusted": 0.09}]}}  # raw p < 0.05 is not enough
    (said,) = observations(undecided)
    assert said.startswith("No size is distinguishable from 224 px") and "Highest" not in said
    decided = undecided | {"differences": {"rows": [row | {"p_value": 0.001, "p_adjusted": 0.003}]}}
    assert observations(decided)[0].startswith("Highest test AUC: 28 px (0.574), also the cheapest")
