"""`python -m core.study --until-decided`: rounds, stop reasons, resume after a kill, budget, report (tiny real training)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from core.runs import record as runs
from core.study import StudyError, main, read_study_file
from core.study import runner as R
from core.study import sequential as Q
from core.study.until import run_until_decided
from core.train import TrainConfig
from core.train import cost as E
from tests.synthetic import write_planted


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("until-data")
    for size in (28, 64):
        write_planted(root, size, n=(96, 64, 64))
    return root


@pytest.fixture(autouse=True)
def known_speed(monkeypatch):
    """A stand-in training speed (the projection's arithmetic is core.train.cost's, tested there)."""
    monkeypatch.setattr(E, "measure_speed", lambda config, *a, **kw: (10.0, "cpu"))  # a round: ~40 s
    monkeypatch.setattr(E, "start_seconds", lambda: 0.0)


def _until(data_root: Path, runs_dir: Path, out: Path, **kw):
    base = TrainConfig(epochs=1, batch_size=64, device="cpu", data_root=str(data_root), runs_dir=str(runs_dir),
                       model="seed-cnn")
    return run_until_decided(base, [28, 64], out_dir=out, isolate=False, n_boot=200, inference_images=16,
                             log=lambda m: None, **kw)


def _kill_at(monkeypatch, n_run: int):
    """Ctrl-C (a kill between epochs) as the n-th run of this call is about to train."""
    real, calls = R.train_in_process, []

    def train(run_dir, log):
        calls.append(run_dir)
        if len(calls) == n_run:
            raise KeyboardInterrupt
        return real(run_dir, log)
    monkeypatch.setattr(R, "train_in_process", train)
    return lambda: monkeypatch.setattr(R, "train_in_process", real)


def _decisions(seq: dict) -> list:
    return [(r["round"], r["seeds"], r["verdicts"]) for r in seq["rounds"]]


def test_a_killed_study_resumes_to_the_same_decision(data_root, tmp_path, monkeypatch):
    settings = {"margin": 0.3, "max_seeds": 3}
    whole = _until(data_root, tmp_path / "runs-a", tmp_path / "a", **settings).summary["sequential"]
    # A margin far wider than the planted sizes' difference (about -0.06): decided at the first look (2 seeds), so
    # the resume below has a decision to reach, not two studies that merely both stayed undecided.
    assert whole["outcome"]["stop"] == "decided" and len(whole["rounds"]) == 2
    assert [c["verdict"] for c in whole["outcome"]["comparisons"]] == [Q.NONINFERIOR]

    restore = _kill_at(monkeypatch, 4)  # round 2's second size: round 1 and half of round 2 trained
    with pytest.raises(KeyboardInterrupt):
        _until(data_root, tmp_path / "runs-b", tmp_path / "b", **settings)
    restore()
    cut = read_study_file(tmp_path / "b")["sequential"]
    assert cut["state"] == "stopped" and [r["round"] for r in cut["rounds"]] == [1] and cut["spent_s"] > 0
    resumed = _until(data_root, tmp_path / "runs-b", tmp_path / "b", **settings).summary["sequential"]
    assert _decisions(resumed) == _decisions(whole)
    assert resumed["outcome"]["stop"] == whole["outcome"]["stop"]
    assert [c["verdict"] for c in resumed["outcome"]["comparisons"]] == \
        [c["verdict"] for c in whole["outcome"]["comparisons"]]
    assert resumed["spent_s"] >= cut["spent_s"] + resumed["rounds"][-1]["wall_s"] * 0.5
    # only the runs the kill left undone were trained again: one run per size per seed in all
    assert len(list((tmp_path / "runs-b").iterdir())) == 2 * len(resumed["rounds"])


def test_a_resume_with_another_first_seed_is_refused_before_it_trains(data_root, tmp_path, monkeypatch):
    """The saved looks are of seeds 0, 1, ...: a resume from seed 5 (another seed on the Train page) was taken up and
    trained rounds of other seeds beside those looks. It is now refused, with nothing trained."""
    restore = _kill_at(monkeypatch, 3)  # after round 1
    with pytest.raises(KeyboardInterrupt):
        _until(data_root, tmp_path / "runs", tmp_path / "out", margin=0.3, max_seeds=3)
    restore()
    before = sorted(p.name for p in (tmp_path / "runs").iterdir())
    with pytest.raises(StudyError, match="sizes \\[28, 64\\] and first seed 0"):
        _until(data_root, tmp_path / "runs", tmp_path / "out", margin=0.3, max_seeds=3, first_seed=5)
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == before


def test_budget_stops_before_a_round_that_would_not_fit_and_survives_a_resume(data_root, tmp_path, monkeypatch):
    settings = {"margin": 0.001, "max_seeds": 10}  # a first look at 2 of 10 seeds decides nothing this close
    restore = _kill_at(monkeypatch, 5)  # after rounds 1 and 2
    with pytest.raises(KeyboardInterrupt):
        _until(data_root, tmp_path / "runs", tmp_path / "out", **settings)
    restore()
    spent = read_study_file(tmp_path / "out")["sequential"]["spent_s"]
    report = _until(data_root, tmp_path / "runs", tmp_path / "out", budget_s=spent + 0.01, **settings)
    seq = report.summary["sequential"]
    assert seq["outcome"]["stop"] == "budget" and len(seq["rounds"]) == 2
    assert seq["outcome"]["undecided"] == ["28 px"]
    text = (tmp_path / "out" / "report.md").read_text()
    assert "Stopped: budget" in text and "undecided" in text and "Next decision, a fixed-sample estimate: " in text
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["sequential"]["outcome"]["comparisons"][0]["verdict"] == "undecided"
    assert summary["sequential"]["rounds"][1]["levels"]["last"] < 0.05
    # the report rebuilt from study.json keeps the sequential verdicts
    assert main(["--report-only", "--out", str(tmp_path / "out"), "--device", "cpu"]) == 0
    assert "Stopped: budget" in (tmp_path / "out" / "report.md").read_text()
    # a design change would void the boundaries: refused
    with pytest.raises(Exception, match="max seeds 10"):
        _until(data_root, tmp_path / "runs", tmp_path / "out", margin=0.001, max_seeds=5)


class Planned(Exception):
    """Raised where the study would plan its first round: it got past the budget check."""


def test_a_round_measured_while_busy_is_refused_only_when_even_idle_it_would_not_fit(data_root, tmp_path, monkeypatch):
    import core.study.until as U

    def planned(*a, **kw):
        raise Planned
    monkeypatch.setattr(U, "plan_grid", planned)
    monkeypatch.setattr(E, "load_per_cpu", lambda: 4.0)  # measured at load 4 per CPU: ~40 s busy, ~10 s idle
    logged: list[str] = []
    base = TrainConfig(epochs=1, batch_size=64, device="cpu", data_root=str(data_root), runs_dir=str(tmp_path / "r"),
                       model="seed-cnn")
    with pytest.raises(Planned):  # fits when the machine quietens: started, and the range is said
        run_until_decided(base, [28, 64], out_dir=tmp_path / "a", isolate=False, margin=0.02, budget_s=20.0,
                          log=logged.append)
    assert any("on an idle machine: measured while it was busy" in m for m in logged)
    with pytest.raises(R.StudyError, match="even on an idle machine, more than the budget"):
        run_until_decided(base, [28, 64], out_dir=tmp_path / "b", isolate=False, margin=0.02, budget_s=5.0,
                          log=logged.append)


def test_the_first_round_costs_every_size_at_the_load_of_now(data_root, tmp_path, monkeypatch):
    """Sizes measured one after another at loads that differ (64 px at an idle moment) are each costed at the load
    of now, as the Train page's sweep does: summed as measured, 64 px read as if the machine were idle."""
    import itertools

    import core.study.until as U

    loads = itertools.chain([4.0, 4.0, 0.0], itertools.repeat(4.0))  # now, 28 px measured at 4, 64 px at 0; then 4
    monkeypatch.setattr(E, "load_per_cpu", lambda: next(loads))
    base = TrainConfig(epochs=1, batch_size=64, device="cpu", data_root=str(data_root), runs_dir=str(tmp_path / "r"),
                       model="seed-cnn")
    study = R.open_study(base, [28, 64], out_dir=tmp_path / "out", log=lambda m: None)
    busy, idle = U.first_round_estimate(study, 0, log=lambda m: None)
    e28, e64 = (E.estimate(dataclasses.replace(base, size=s, name="estimate")) for s in (28, 64))  # 10 img/s each
    # 28 px as measured; 64 px's training 4x slower at load 4 per CPU than measured idle (its start as it was)
    assert busy == pytest.approx(e28.total_seconds + e64.start_seconds + 4 * (e64.total_seconds - e64.start_seconds))
    assert idle == pytest.approx(e28.idle_total_seconds + e64.total_seconds) and idle < busy


@pytest.mark.parametrize("args, message", [
    (["--budget", "3x"], "not a duration"),
    (["--until-decided", "--margin", "-0.1"], "--margin must be positive"),
    (["--until-decided", "--max-seeds", "1"], "at least 2"),
    (["--until-decided", "--seeds", "3"], "--max-seeds instead of --seeds"),
    (["--until-decided", "--correction", "bh"], "Benjamini-Hochberg has no group-sequential form here"),
    (["--budget", "1s"], "more than the budget"),
])
def test_bad_until_decided_input_is_a_clear_error(data_root, tmp_path, capsys, args, message):
    code = main(["--sizes", "28", "64", "--epochs", "1", "--data-root", str(data_root), "--device", "cpu",
                 "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "out"), *args]) \
        if args[0] != "--budget" or args[1] != "3x" else None
    if code is None:  # argparse refuses the value itself
        with pytest.raises(SystemExit) as e:
            main(["--budget", "3x"])
        code = e.value.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists() or not any(runs.is_run_dir(p) for p in (tmp_path / "runs").iterdir())


def test_a_second_process_on_a_running_studys_folder_is_refused_before_it_writes(data_root, tmp_path, capsys):
    """Start clicked twice (or a command beside the app): while one process runs the study in a folder, a second
    one on that folder exits 2 with a message, leaving its study.json and runs alone."""
    out = tmp_path / "out"
    out.mkdir()
    args = ["--sizes", "28", "64", "--epochs", "1", "--data-root", str(data_root), "--device", "cpu", "--runs-dir",
            str(tmp_path / "runs"), "--out", str(out), "--until-decided", "--margin", "0.2", "--max-seeds", "2"]
    with runs.training_lock(out):  # the first study's process, between two of its writes
        assert main(args) == 2
    err = capsys.readouterr().err
    assert "already running an until-decided study in another process" in err and "Traceback" not in err
    assert read_study_file(out) is None and not (tmp_path / "runs").exists()
