"""pages/train.py through streamlit's AppTest: estimate, start, sweep, stop, resume, and one real background run."""
from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest
import streamlit as st

from core.data import chestmnist as D
from core.runs import record as runs
from core.train import cost as E
from core.train import background as L
from tests.synthetic import write_planted

FAST = {"train_model": "seed-cnn", "train_epochs": 1, "train_batch": 64}


def texts(elements) -> list[str]:
    return [e.value for e in elements]


def page(open_page, root, runs_dir, **recipe):
    """The Train page with recipe widgets preset through their session-state keys."""
    at = open_page("train.py", root, runs_dir)
    for key, value in recipe.items():
        at.session_state[key] = value
    return at


MEASURE_SPEED = E.measure_speed  # the real measurement, for the test that runs it


@pytest.fixture(autouse=True)
def fresh_speeds(monkeypatch):
    """No speed measured in another test answers here; the speed is a stand-in 100 images/s and a trainer's
    start costs nothing unless a test says so (the arithmetic below is about epochs and scoring;
    test_estimate_uses_the_real_split_sizes measures for real, test_start_is_part_of_the_total prices the
    start), and the machine reads as idle (no range) unless a test sets its load."""
    monkeypatch.setattr(E, "measure_speed", lambda config, **kw: (100.0, "cpu"))
    monkeypatch.setattr(E, "start_seconds", lambda: 0.0)
    monkeypatch.setattr(E, "load_per_cpu", lambda: 0.0)  # an idle machine, unless a test says otherwise
    st.cache_resource.clear()
    st.cache_data.clear()
    yield  # (open_page's teardown, before this one's, waits for any measurement the test started)
    st.cache_resource.clear()
    st.cache_data.clear()


def measuring(at) -> bool:
    return (any(t.startswith("Measuring the training speed") for t in texts(at.info))
            or any(t.startswith("Sweep estimate: measuring") for t in texts(at.caption)))


def estimated(at, timeout: float = 90):
    """Run the page until the background speed measurements it started are shown (the page never waits)."""
    at.run()
    deadline = time.time() + timeout
    while measuring(at) and not at.exception:
        assert time.time() < deadline, "the speed estimate never showed up"
        time.sleep(0.2)
        at.run()
    return at


@pytest.fixture
def launches(monkeypatch):
    """Record core.train.background.launch calls instead of spawning trainers."""
    calls = []

    def fake(run_dirs, log_name="train.log"):
        calls.append([p.resolve() for p in run_dirs])
        return 4242
    monkeypatch.setattr(L, "launch", fake)
    return calls


def run_dirs_in(runs_dir):
    return sorted(p for p in runs_dir.iterdir() if p.is_dir()) if runs_dir.exists() else []


def test_estimate_uses_the_real_split_sizes(open_page, data_root, tmp_path, monkeypatch):
    monkeypatch.setattr(E, "measure_speed", MEASURE_SPEED)
    at = estimated(page(open_page, data_root, tmp_path / "runs", **FAST))
    assert not at.exception and not at.error
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Device"] == "cpu"
    per_epoch = float(metrics["Seconds per epoch"].removesuffix(" s").replace(",", ""))
    assert per_epoch > 0
    assert "Total for 1 epochs" in metrics
    assert any("256 training and 96 validation images" in c for c in texts(at.caption))
    # The run ends by scoring val and test with the best checkpoint: that is in the total too.
    assert any("then 96 validation and 96 test images scored once" in c for c in texts(at.caption))
    assert not at.warning  # seconds, not hours


def test_estimate_at_128_px_does_not_unpack_the_images(open_page, tmp_path, monkeypatch):
    """The split sizes come from the labels: at 128/224 px loading the file would first unpack its
    images to the cache (gigabytes, minutes for the official files) before any estimate shows."""
    import numpy as np

    monkeypatch.setenv("CHESTMNIST_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    D.write_npz(tmp_path / "data", 128, {s: (rng.integers(0, 256, (n, 128, 128), dtype=np.uint8),
                                             rng.integers(0, 2, (n, D.N_CLASSES), dtype=np.uint8))
                                         for s, n in zip(D.SPLITS, (40, 12, 16))})
    monkeypatch.setattr(E, "measure_speed", lambda config, **kw: (50.0, "cpu"))
    st.cache_data.clear()
    try:
        at = estimated(page(open_page, tmp_path / "data", tmp_path / "runs", train_size=128, **FAST))
    finally:
        st.cache_data.clear()
    assert not at.exception and not at.error
    assert any("40 training and 12 validation images" in c and "12 validation and 16 test images scored once" in c
               for c in texts(at.caption))
    assert at.number_input(key="train_subset").max == 40
    assert not (tmp_path / "cache").exists()


def test_unreadable_data_file_is_an_error_under_the_recipe(open_page, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "chestmnist.npz").write_bytes(b"not a zip")
    at = page(open_page, tmp_path / "data", tmp_path / "runs", **FAST).run()
    assert not at.exception
    assert any("could not be read" in e.value and "chestmnist.npz" in e.value for e in at.error)


def test_subset_changes_what_is_estimated_without_measuring_again(open_page, data_root, tmp_path, monkeypatch):
    at = estimated(page(open_page, data_root, tmp_path / "runs", train_subset=100, **FAST))
    assert any("100 training and 96 validation images" in c for c in texts(at.caption))
    # The subset box steps by 100 up to the training split (256 generated images here).
    box = at.number_input(key="train_subset")
    assert (box.step, box.max) == (100, 256)
    # Speed does not depend on how many images an epoch has: a new subset or epoch count is arithmetic
    # on the cached images/s, not a new measurement.
    speed = next(m.value for m in at.metric if m.label == "Training images/s")

    def no_measuring(*args, **kwargs):
        raise AssertionError("measured the speed again")
    monkeypatch.setattr(E, "measure_speed", no_measuring)
    at.number_input(key="train_subset").set_value(200).run()
    at.number_input(key="train_epochs").set_value(3).run()
    assert not at.exception and not at.error
    assert any("200 training and 96 validation images" in c for c in texts(at.caption))
    assert next(m.value for m in at.metric if m.label == "Training images/s") == speed  # the cached measurement
    assert "Total for 3 epochs" in {m.label for m in at.metric}


def test_subset_is_capped_at_the_training_split(open_page, data_root, tmp_path):
    at = estimated(page(open_page, data_root, tmp_path / "runs", train_subset=100_000, **FAST))
    assert not at.exception and not at.error
    assert at.number_input(key="train_subset").value == 256
    assert any("256 training and 96 validation images" in c for c in texts(at.caption))


def test_sweep_shows_its_total_over_the_sizes(open_page, data_root, tmp_path, monkeypatch):
    speeds = {28: 40.0, 64: 10.0}

    monkeypatch.setattr(E, "measure_speed", lambda config, **kw: (speeds[config.size], "cpu"))
    st.cache_data.clear()
    try:
        at = estimated(page(open_page, data_root, tmp_path / "runs", train_subset=200, train_epochs=2, train_batch=64,
                  train_model="seed-cnn"))
    finally:
        st.cache_data.clear()
    assert not at.exception and not at.error
    # Per size: (200 + 0.5 x 96) images / speed per epoch, times 2 epochs, then 0.5 x (96 + 96) images scored
    # once: 12.4 + 2.4 = 14.8 s at 28 px, 49.6 + 9.6 = 59.2 s at 64 px.
    assert E.VAL_COST == 0.5
    (note,) = [c for c in texts(at.caption) if c.startswith("Sweep estimate")]
    assert "**1m 14s** for 2 epoch(s)" in note and "28 px 15s + 64 px 59s" in note


def test_sweep_costs_sizes_measured_at_different_loads_at_one_load(open_page, data_root, tmp_path, monkeypatch):
    """Seen on a shared machine: 28 px measured while busy read as slow as 64 px measured idle. Each size is
    costed at the load now (and idle), not at its own measurement's."""
    monkeypatch.setattr(E, "measure_speed", lambda config, **kw: (10.0, "cpu"))  # both read 10 images/s
    # Measurements run in threads named by size (ui.speed): 28 px measured at load 4 per CPU, 64 px idle; now 4.
    monkeypatch.setattr(E, "load_per_cpu", lambda: {"speed-64px": 0.0}.get(threading.current_thread().name, 4.0))
    st.cache_data.clear()
    try:
        at = estimated(page(open_page, data_root, tmp_path / "runs", train_subset=200, train_epochs=2, train_batch=64,
                            train_model="seed-cnn", train_patience=0))
    finally:
        st.cache_data.clear()
    assert not at.exception and not at.error
    # At 10 images/s a size costs (200 + 0.5 x 96) / 10 x 2 + 0.5 x 192 / 10 = 59.2 s. At load 4 now: 28 px as
    # measured (59 s), 64 px 4x its idle measurement (3m 57s); idle: 28 px a quarter (14.8 s), 64 px 59.2 s.
    (note,) = [c for c in texts(at.caption) if c.startswith("Sweep estimate")]
    assert "28 px 59s + 64 px 3m 57s" in note and "**1m 14s–4m 56s**" in note
    # Patience 0: nothing can end a run early, so the estimate is not called an upper bound.
    assert not any("upper bound" in c for c in texts(at.caption))


def test_over_an_hour_warns_with_a_subset_and_epochs(open_page, data_root, tmp_path, monkeypatch):
    monkeypatch.setattr(E, "measure_speed", lambda config, **kw: (10.0, "cpu"))  # 10 training images/s
    st.cache_data.clear()  # no real measurement may answer for the fake one, nor the reverse
    try:
        at = estimated(page(open_page, data_root, tmp_path / "runs", train_epochs=100, train_batch=96))
    finally:
        st.cache_data.clear()
    # (256 + 0.5 x 96) / 10 = 30.4 s per epoch: 100 epochs take 51 min, 150 take 76 min.
    assert E.VAL_COST == 0.5
    assert not at.warning
    at.number_input(key="train_epochs").set_value(150)
    try:
        at.run()
    finally:
        st.cache_data.clear()
    (warning,) = texts(at.warning)
    # Within an hour less the final scoring (0.5 x (96 + 96) / 10 = 9.6 s): 3,590.4/150 = 23.94 s per epoch =
    # 239.4 image-steps, minus 0.5 x 96 for validation -> 191 training images (192 without the final scoring);
    # or 3,590.4 // 30.4 = 118 epochs.
    assert "more than an hour" in warning and "191 images" in warning and "at most 118 epoch(s)" in warning


def test_the_page_never_waits_for_the_speed(open_page, data_root, tmp_path, monkeypatch):
    release, started = threading.Event(), threading.Event()

    def slow(config, **kw):
        started.set()
        release.wait(30)
        return 80.0, "cpu"
    monkeypatch.setattr(E, "measure_speed", slow)
    at = page(open_page, data_root, tmp_path / "runs", **FAST).run()
    # The first run draws the page and measures nothing: the CPU is the browser's while it draws.
    assert not at.exception and measuring(at) and not started.wait(0.5)
    at.run()  # the estimates' refresh: measuring starts, and the page returns while the speed is measured
    assert started.wait(30) and not at.exception and measuring(at)
    assert at.number_input(key="train_epochs").value == 1 and at.button(key="train_go")  # the page works meanwhile
    assert not [m for m in at.metric if m.label == "Training images/s"]
    release.set()
    at = estimated(at)
    assert next(m.value for m in at.metric if m.label == "Training images/s") == "80"


def test_start_is_part_of_the_total(open_page, data_root, tmp_path, monkeypatch):
    monkeypatch.setattr(E, "measure_speed", lambda config, **kw: (10.0, "cpu"))
    monkeypatch.setattr(E, "start_seconds", lambda: 30.0)
    at = estimated(page(open_page, data_root, tmp_path / "runs", **FAST))
    # 30 s to start, (256 + 0.5 x 96) / 10 = 30.4 s for the epoch, 0.5 x (96 + 96) / 10 = 9.6 s scoring.
    assert {m.label: m.value for m in at.metric}["Total for 1 epochs"] == "1m 10s"
    assert any("takes 30s to start" in c for c in texts(at.caption))


def test_a_busy_machine_gets_a_range_and_a_load_change_measures_again(open_page, data_root, tmp_path, monkeypatch):
    load = {"now": 3.0}
    monkeypatch.setattr(E, "load_per_cpu", lambda: load["now"])
    monkeypatch.setattr(E, "measure_speed", lambda config, **kw: (10.0 if load["now"] > 1 else 30.0, "cpu"))
    at = estimated(page(open_page, data_root, tmp_path / "runs", train_epochs=10, train_model="seed-cnn"))
    # 10 x 30.4 + 9.6 = 313.6 s measured at load 3 per CPU; about a third of that on an idle machine.
    assert {m.label: m.value for m in at.metric}["Total for 10 epochs"] == "1m 45s–5m 14s"
    assert any("busy (load 3.0 per CPU)" in c for c in texts(at.caption))
    load["now"] = 0.2  # the machine went idle: the old figure is shown while it is measured again
    at = estimated(at)
    at = estimated(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Training images/s"] == "30" and metrics["Total for 10 epochs"] == "1m 45s"


def test_a_run_stopped_just_after_its_start_offers_resume_at_once(open_page, data_root, tmp_path, launches):
    runs_dir = tmp_path / "runs"
    at = page(open_page, data_root, runs_dir, **FAST).run()
    at.button(key="train_go").click().run()
    (run_dir,) = run_dirs_in(runs_dir)
    time.sleep(0.01)
    runs.set_status(run_dir, "stopped", error="Stopped by request; resume to continue.")  # within the 30 s grace
    at.run()
    assert not any(c == "Starting…" for c in texts(at.caption))
    assert at.button(key=f"resume-{run_dir.name}").label == "Resume"


def test_train_prepares_a_run_and_launches_it(open_page, data_root, tmp_path, launches):
    runs_dir = tmp_path / "runs"
    at = page(open_page, data_root, runs_dir, train_size=64, train_lr=0.0005, train_augment=True,
              train_name="mine", train_select="val_loss", train_patience=3, **FAST).run()
    at.button(key="train_go").click().run()
    assert not at.exception and not at.error
    (run_dir,) = run_dirs_in(runs_dir)
    assert launches == [[run_dir.resolve()]]
    cfg = runs.read_config(run_dir)["train"]
    assert (cfg["size"], cfg["model"], cfg["epochs"], cfg["batch_size"]) == (64, "seed-cnn", 1, 64)
    assert (cfg["lr"], cfg["augment"], cfg["select_by"], cfg["patience"]) == (0.0005, True, "val_loss", 3)
    assert cfg["subset"] is None and cfg["name"] == "mine" and cfg["data_root"] == str(data_root.resolve())
    assert runs.read_status(run_dir)["state"] == "queued"
    assert any("4242" in s and run_dir.name in s for s in texts(at.success))
    # It is listed as queued in the live view, without a Start button (its process is on its way).
    assert any("Queued" in c for c in texts(at.caption))
    assert not [b for b in at.button if b.key and b.key.startswith("start-")]
    # The "started" note lasts as long as the run is active, not after it has finished.
    at.run()
    assert any("4242" in s for s in texts(at.success))
    runs.set_status(run_dir, "finished")
    at.run()
    assert not any("4242" in s for s in texts(at.success))


def test_sweep_prepares_one_run_per_size_in_one_queue(open_page, data_root, tmp_path, launches):
    runs_dir = tmp_path / "runs"
    at = page(open_page, data_root, runs_dir, train_lr=0.002, **FAST).run()
    assert at.button(key="train_sweep").label == "Same recipe at every size (28, 64 px)"
    at.button(key="train_sweep").click().run()
    assert not at.exception and not at.error
    dirs = run_dirs_in(runs_dir)
    assert len(launches) == 1 and sorted(launches[0]) == [d.resolve() for d in dirs]
    configs = [runs.read_config(d)["train"] for d in launches[0]]
    assert sorted(c["size"] for c in configs) == [28, 64]
    for c in configs:  # the same recipe apart from the size
        assert (c["model"], c["epochs"], c["batch_size"], c["lr"], c["name"]) == ("seed-cnn", 1, 64, 0.002, "study-sweep-s0")


def test_sweep_reuses_finished_runs_of_the_same_recipe_like_the_study(open_page, data_root, tmp_path, launches):
    runs_dir = tmp_path / "runs"
    at = page(open_page, data_root, runs_dir, train_lr=0.002, **FAST).run()
    at.button(key="train_sweep").click().run()
    first = {runs.read_config(d)["train"]["size"]: d for d in launches[0]}
    runs.set_status(first[28], "finished")  # 28 px done; 64 px stopped part-way (its process is gone)
    runs.set_status(first[64], "stopped")
    at.button(key="train_sweep").click().run()
    assert not at.exception and not at.error
    assert launches[1] == [first[64].resolve()]  # only the unfinished run is queued again, no new folder
    assert len(run_dirs_in(runs_dir)) == 2
    assert any("re-used" in i and "28 px" in i for i in texts(at.info))


def test_bad_config_is_an_error_and_leaves_no_run(open_page, data_root, tmp_path, launches):
    runs_dir = tmp_path / "runs"
    at = page(open_page, data_root, runs_dir, train_size=128, **FAST).run()  # a size without data
    assert any("No 128 px data" in w for w in texts(at.warning))
    at.button(key="train_go").click().run()
    assert not at.exception
    assert any(e.startswith("Not started") and "128 px" in e for e in texts(at.error))
    assert run_dirs_in(runs_dir) == [] and launches == []


def test_a_mistyped_data_root_is_said_in_the_apps_terms(open_page, tmp_path, launches):
    at = page(open_page, tmp_path / "dta", tmp_path / "runs", **FAST).run()
    problem = (f"The data root {tmp_path / 'dta'} does not exist. Choose the folder that holds the chestmnist*.npz "
               "files in the sidebar (a typo?), download or import data on the Data & runs page, or use the demo data.")
    assert problem in texts(at.error)
    at.button(key="train_go").click().run()
    assert not at.exception and f"Not started: {problem}" in texts(at.error)
    assert not any("--data-root" in e or "CHESTMNIST_ROOT" in e for e in texts(at.error))
    assert run_dirs_in(tmp_path / "runs") == [] and launches == []


def test_sweep_failing_at_one_size_leaves_no_half_sweep(open_page, tmp_path, launches):
    root, runs_dir = tmp_path / "data", tmp_path / "runs"
    write_planted(root, 28, n=(200, 40, 40))
    write_planted(root, 64, n=(100, 40, 40))
    at = page(open_page, root, runs_dir, train_subset=150, **FAST).run()
    at.button(key="train_sweep").click().run()
    assert any(e.startswith("Sweep not started: at 64 px") for e in texts(at.error))
    assert run_dirs_in(runs_dir) == [] and launches == []  # the 28 px run it had prepared is gone


def test_live_view_shows_progress_and_stop_writes_the_stop_file(open_page, data_root, runs_copy, launches):
    run_dir = runs_copy[28]
    runs.set_status(run_dir, "running")  # this test process is alive: the run reads as running
    runs.write_progress(runs.Progress(run_dir, epoch=2, epochs=4, phase="train", batch=3, n_batches=8,
                                      images_per_s=123.0, eta_s=75.0))
    at = page(open_page, data_root, run_dir.parent, **FAST).run()
    assert not at.exception
    (bar,) = at.get("progress")
    assert bar.value == int(100 * (1 + 3 / 8) / 4)  # AppTest reports percent
    assert "epoch 2/4 · batch 3/8 · 123 img/s · ETA 1m 15s" in bar.proto.text
    # Live curves: loss and AUC side by side, each as wide as its column, one colour per split.
    charts = at.get("vega_lite_chart")
    specs = [json.loads(c.proto.spec) for c in charts]
    assert [s["title"] for s in specs] == ["loss", "AUC (medmnist)"]
    assert all(s["encoding"]["color"]["field"] == "split" for s in specs)
    assert not any("width" in s for s in specs)  # no fixed width: st.altair_chart(width="stretch") fills the column
    assert all(s["autosize"]["type"] == "fit-x" for s in specs)  # ... and only the width: the plot keeps its height
    assert not (run_dir / "STOP").exists()
    at.button(key=f"stop-{run_dir.name}").click().run()
    assert (run_dir / "STOP").exists()
    assert any("Stop requested" in c for c in texts(at.caption) + texts(at.info))
    assert launches == []


def test_resume_relaunches_a_stopped_run_and_failed_runs_show_their_error(open_page, data_root, runs_copy, launches):
    stopped, failed = runs_copy[28], runs_copy[64]
    runs.set_status(stopped, "stopped", error="Stopped by request; resume to continue.")
    runs.set_status(failed, "failed", error="RuntimeError: out of memory")
    at = page(open_page, data_root, stopped.parent, **FAST).run()
    assert any("out of memory" in e for e in texts(at.error))
    at.button(key=f"resume-{stopped.name}").click().run()
    assert not at.exception
    assert launches == [[stopped.resolve()]]
    assert runs.read_status(stopped)["state"] == "queued"
    # On the next refresh it is queued and just launched: no Resume or Start button that could
    # start a second trainer on the same folder before the first one marks it running.
    at.run()
    assert not [b for b in at.button if b.key in (f"resume-{stopped.name}", f"start-{stopped.name}")]
    assert [b.key for b in at.button if b.key and b.key.startswith("resume-")] == [f"resume-{failed.name}"]


def test_real_background_run_finishes(open_page, data_root, tmp_path):
    """core.train.background.launch for real: a detached 1-epoch run on the generated data, followed to 'finished'."""
    runs_dir = tmp_path / "runs"
    at = page(open_page, data_root, runs_dir, train_size=28, **FAST).run()
    at.button(key="train_go").click().run()
    assert not at.exception and not at.error
    (run_dir,) = run_dirs_in(runs_dir)
    try:
        deadline = time.time() + 90
        while runs.read_status(run_dir)["state"] in ("queued", "running") and time.time() < deadline:
            time.sleep(0.5)
        status = runs.read_status(run_dir)
        assert status["state"] == "finished", (status, (run_dir / "train.log").read_text())
        assert (run_dir / "test_metrics.json").is_file() and len(runs.read_metrics(run_dir)) == 1
        assert status["pid"] != os.getpid()  # trained by the detached process, not in here
    finally:
        pid = runs.read_status(run_dir).get("pid")
        if pid and pid != os.getpid() and runs.read_status(run_dir)["state"] == "running":
            os.kill(pid, signal.SIGTERM)
    at.run()
    table = next(df for df in at.dataframe if "test AUC (medmnist)" in df.value.columns)
    finished = table.value
    assert list(finished["run"]) == [run_dir.name]
    test = json.loads((run_dir / "test_metrics.json").read_text())
    assert finished["test AUC (medmnist)"][0] == pytest.approx(test["auc"])
    config = json.loads(table.proto.columns)  # 4 decimals, as on Data & runs
    assert all(config[c]["type_config"]["format"] == "%.4f"
               for c in ("max val AUC (medmnist)", "test AUC (medmnist)", "test ACC (medmnist, 0.5)"))


def test_the_advanced_knobs_reach_the_run(open_page, data_root, tmp_path, launches):
    """Weight decay, schedule and layout, once CLI-only (issue #26), go from the page into the run's config."""
    runs_dir = tmp_path / "runs"
    at = page(open_page, data_root, runs_dir, train_weight_decay=0.05, train_schedule="cosine",
              train_channels_last=False, train_clip=5.0, train_threshold=0.4, **FAST).run()
    at.button(key="train_go").click().run()
    assert not at.exception and not at.error
    (run_dir,) = run_dirs_in(runs_dir)
    cfg = runs.read_config(run_dir)["train"]
    assert (cfg["weight_decay"], cfg["schedule"], cfg["channels_last"]) == (0.05, "cosine", False)
    assert (cfg["pos_weight_clip"], cfg["threshold"]) == (5.0, 0.4)


def test_the_sweep_trains_the_chosen_sizes_and_seeds(open_page, data_root, tmp_path, launches):
    runs_dir = tmp_path / "runs"
    at = page(open_page, data_root, runs_dir, train_sweep_sizes=[64], train_sweep_seeds=2, **FAST).run()
    assert at.button(key="train_sweep").label == "Same recipe at every size (64 px, 2 seeds)"
    at.button(key="train_sweep").click().run()
    assert not at.exception and not at.error
    (queue,) = launches
    assert [(c["size"], c["seed"]) for c in (runs.read_config(d)["train"] for d in queue)] == [(64, 0), (64, 1)]


def test_queued_runs_are_listed_in_size_order(open_page, data_root, tmp_path):
    runs_dir = tmp_path / "runs"
    for size in (128, 28, 64):  # ids made in one second sort 128 before 28
        run_dir = runs.new_run_dir(runs_dir, size, "res-cnn")
        runs.write_config(run_dir, {"train": {"size": size, "model": "res-cnn", "epochs": 1}})
        runs.set_status(run_dir, "queued")  # this process is alive: the run reads as queued
    at = page(open_page, data_root, runs_dir, **FAST).run()
    shown = [m.value for m in at.markdown if m.value.startswith("**") and " px · res-cnn · queued" in m.value]
    assert [int(v[2:].split(" px")[0]) for v in shown] == [28, 64, 128]


def test_the_recipe_form_is_kept_in_the_url_and_a_reload_restores_it(open_page, data_root, tmp_path):
    at = page(open_page, data_root, tmp_path / "runs").run()
    at.number_input(key="train_epochs").set_value(7).run()
    at.selectbox(key="train_size").set_value(64).run()
    at.checkbox(key="train_augment").check().run()
    assert {k: at.query_params[k] for k in ("train_epochs", "train_size", "train_augment")} == {
        "train_epochs": "7", "train_size": "64", "train_augment": "1"}
    assert "train_lr" not in at.query_params  # defaults stay out of the URL
    # A reload: a new session with that URL (plus values no knob allows, which are ignored).
    again = open_page("train.py", data_root, tmp_path / "runs")
    again.query_params.update({**at.query_params, "train_batch": "0", "train_model": "evil", "train_lr": "nan"})
    again.run()
    assert not again.exception and not again.error
    assert (again.number_input(key="train_epochs").value, again.selectbox(key="train_size").value) == (7, 64)
    assert again.checkbox(key="train_augment").value
    assert again.number_input(key="train_batch").value == 128 and again.selectbox(key="train_model").value == "res-cnn"


def test_train_again_fills_the_form_with_that_runs_recipe(open_page, data_root, runs_copy):
    source = runs_copy[64]
    train = runs.read_config(source)["train"]
    at = open_page("train.py", data_root, source.parent)
    at.query_params["from_run"] = source.name
    at.run()
    assert not at.exception and not at.error
    assert any("recipe of the run you came from" in i for i in texts(at.info))
    assert (at.selectbox(key="train_size").value, at.selectbox(key="train_model").value) == (64, train["model"])
    assert (at.number_input(key="train_epochs").value, at.number_input(key="train_batch").value) == (
        train["epochs"], train["batch_size"])
    assert at.text_input(key="train_name").value == train["name"]
    assert "from_run" not in at.query_params and at.query_params["train_size"] == "64"
    at.number_input(key="train_epochs").set_value(5).run()  # the form is the user's again
    assert at.number_input(key="train_epochs").value == 5
    at.query_params["from_run"] = source.name  # "Train again" on the same run, a second time in this session
    at.run()
    assert at.number_input(key="train_epochs").value == train["epochs"] and "from_run" not in at.query_params

    unknown = open_page("train.py", data_root, source.parent)
    unknown.query_params["from_run"] = "no-such-run"
    unknown.run()
    assert not unknown.exception and any("The run this link names is not in" in w for w in texts(unknown.warning))
    assert "from_run" not in unknown.query_params
