"""The Train page's "Until decided" (ui/until_decided.py) through streamlit's AppTest: start, live rounds, stop, resume."""
from __future__ import annotations

import subprocess
import sys

import pytest

from core.runs import record as runs
from core.study import launch as L
from core.study import sequential as Q
from core.study.cli import _parser
from core.study.recipe import study_file, write_sequential
from core.train import cost as E

FAST = {"train_model": "seed-cnn", "train_epochs": 1, "train_batch": 64}


@pytest.fixture(autouse=True)
def no_speed_measurement(monkeypatch):
    """The page's estimate measures speed in the background; a stand-in keeps these tests off the CPU."""
    monkeypatch.setattr(E, "measure_speed", lambda config, **kw: (100.0, "cpu"))
    monkeypatch.setattr(E, "start_seconds", lambda: 0.0)


@pytest.fixture
def launched(monkeypatch, tmp_path):
    """Reports under tmp_path; core.study.launch.launch recorded instead of spawning a study."""
    monkeypatch.setattr(L, "DEFAULT_REPORTS_DIR", tmp_path / "reports")
    calls = []

    def fake(command, out_dir):
        calls.append((command, out_dir))
        return 4242
    monkeypatch.setattr(L, "launch", fake)
    return calls


def _page(open_page, data_root, tmp_path, **state):
    at = open_page("train.py", data_root, tmp_path / "runs")
    for key, value in {**FAST, **state}.items():
        at.session_state[key] = value
    return at.run()


def test_until_decided_launches_the_study_command_with_margin_budget_and_max_seeds(open_page, data_root, tmp_path,
                                                                                  launched):
    at = _page(open_page, data_root, tmp_path, train_lr=0.002, until_margin=0.02, until_budget=50, until_max_seeds=4)
    assert at.button(key="until_go").label == "Until decided (28, 64 px)"
    at.button(key="until_go").click().run()
    assert not at.exception and not at.error
    (command, out_dir), = launched
    assert command[:3] == ["python", "-m", "core.study"]
    # The study's own parser reads back what the form set (an independent check of the command line).
    args = _parser().parse_args(command[3:])
    assert args.until_decided and args.sizes == [28, 64] and args.margin == pytest.approx(0.02)
    assert args.budget == 3000 and args.max_seeds == 4 and args.seeds == 1
    assert (args.model, args.epochs, args.batch_size, args.lr) == ("seed-cnn", 1, 64, 0.002)
    assert args.out == str(out_dir) and out_dir.parent == (tmp_path / "reports").resolve()
    assert any("Started in background process 4242" in s.value for s in at.success)


def test_a_second_click_before_the_study_writes_its_state_launches_nothing(open_page, data_root, tmp_path, monkeypatch):
    """For the seconds a launched study spends importing and measuring speed it has no study.json: a second click
    (or Resume) in that time launched a second process on the same folder. Start stays greyed out on it."""
    monkeypatch.setattr(L, "DEFAULT_REPORTS_DIR", tmp_path / "reports")
    study = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # launched, writing nothing yet
    calls = []
    monkeypatch.setattr(L, "launch", lambda command, out_dir: calls.append(out_dir) or study.pid)
    try:
        at = _page(open_page, data_root, tmp_path)
        at.button(key="until_go").click().run()
        assert len(calls) == 1 and not at.exception
        at.button(key="until_go").click().run()  # drawn before that launch, the button still took this click
        assert len(calls) == 1 and at.button(key="until_go").disabled
    finally:
        study.kill()
        study.wait()
    at.run()  # it ended (and wrote no state): a new start is allowed
    assert not at.button(key="until_go").disabled


def _study(out_dir, state: str, pid: int | None, stop: str | None = None, started: int | None = None):
    """A study.json as core.study.until leaves it: two rounds, the second a look with its verdict."""
    out_dir.mkdir(parents=True)
    runs.write_json(study_file(out_dir), {"runs": [], "name": "t", "command": ["python", "-m", "core.study", "--x"]})
    comp = {"a": "28 px", "b": "64 px", "delta": 0.0, "se": 0.001, "df": 8.0, "ci_low": -0.002, "ci_high": 0.002,
            "seeds_needed": "about 2 seeds per group would resolve it", "seeds_per_group": 2}
    looks = [{"n_seeds": 2, "comparisons": [comp]}]
    rounds = [Q.round_record(1, [0], [], 0.02, 4, 5.0), Q.round_record(2, [0, 1], looks, 0.02, 4, 5.0)]
    write_sequential(out_dir, {"margin": 0.02, "max_seeds": 4, "alpha": 0.05, "budget_s": 600, "spent_s": 10.0,
                               "rounds": rounds, "state": state, "pid": pid, "started": started,
                               "outcome": Q.outcome(rounds, stop) if stop else None})


def test_rounds_show_live_and_stop_ends_the_process_and_resume_reruns_the_command(open_page, data_root, tmp_path,
                                                                                  launched):
    out_dir = L.report_dir(_config(data_root, tmp_path))
    study = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _study(out_dir, "running", study.pid)
        at = _page(open_page, data_root, tmp_path)
        assert not at.exception
        assert any(f"Running in process {study.pid}" in i.value for i in at.info)
        table = at.dataframe[-1].value
        assert list(table["28 px vs 64 px"].fillna("")) == ["", Q.NONINFERIOR]
        assert at.button(key="until_go").disabled
        at.button(key="until_stop").click().run()
        assert study.wait(10) == -15  # SIGTERM: what the study turns into its runs' STOP
    finally:
        study.kill()
    at.run()  # the record still says running, but its process is gone: stopped, resumable
    assert any("Stopped before deciding" in w.value for w in at.warning)
    at.button(key="until_resume").click().run()
    assert launched == [(["python", "-m", "core.study", "--x"], out_dir)]


def test_a_study_whose_pid_was_reused_reads_stopped_and_gets_no_stop(open_page, data_root, tmp_path, launched):
    """The study died without a word (SIGKILL, a reboot) and its pid now names another process (here, this one):
    the start time tells them apart, so the page offers Resume, not a Stop that would SIGTERM a stranger."""
    import os

    from core.runs import process

    out_dir = L.report_dir(_config(data_root, tmp_path))
    _study(out_dir, "running", os.getpid(), started=process.start_time(os.getpid()) - 1000)
    assert L.state(out_dir)["alive"] is False
    at = _page(open_page, data_root, tmp_path)
    assert any("Stopped before deciding" in w.value for w in at.warning) and not at.button(key="until_go").disabled
    assert "until_stop" not in [b.key for b in at.button]


def test_a_log_that_cannot_be_written_is_a_message_not_a_crash(open_page, data_root, tmp_path, monkeypatch):
    """A planted link in the log's place (or a read-only reports folder): Start says why, and nothing is launched."""
    monkeypatch.setattr(L, "DEFAULT_REPORTS_DIR", tmp_path / "reports")
    out_dir = L.report_dir(_config(data_root, tmp_path))
    out_dir.mkdir(parents=True)
    (out_dir / L.LOG).symlink_to(tmp_path / "elsewhere.txt")
    at = _page(open_page, data_root, tmp_path)
    at.button(key="until_go").click().run()
    assert not at.exception and any("Not started" in e.value and "symbolic link" in e.value for e in at.error)
    assert not (tmp_path / "elsewhere.txt").exists()


def test_a_finished_study_says_why_it_stopped(open_page, data_root, tmp_path, launched):
    _study(L.report_dir(_config(data_root, tmp_path)), "finished", None, stop="decided")
    at = _page(open_page, data_root, tmp_path)
    assert any(s.value.startswith("Stopped: decided") for s in at.success)


def _config(data_root, tmp_path):
    """The recipe the page builds from FAST (its name is empty: the study's default name is the report folder's)."""
    from core.train.recipe import TrainConfig

    return TrainConfig(model="seed-cnn", epochs=1, batch_size=64, data_root=str(data_root), runs_dir=str(tmp_path / "runs"))
