"""Interaction: what a user waits for in the app.

* (Grad-CAM timings are in bench/saliency.py, with the checks of the maps.)
* core.metrics.threshold_metrics on ChestMNIST-test-sized scores (22,433 x 14) at a new threshold
  vector each call (what every slider move recomputes).
* Streamlit reruns driven by streamlit.testing.v1.AppTest against the real pages, on real
  (tiny) runs trained with core.train on planted data: the Thresholds page after a slider move
  (with the run's score files replaced by ChestMNIST-sized ones: 11,219 val / 22,433 test), and
  the Saliency page after picking another image (which also redraws the same image's Grad-CAM
  through the runs at the other sizes).

AppTest times include AppTest's own work (running the script in-process and collecting its
elements), so they are an upper bound on the server-side rerun.
"""
from __future__ import annotations

import importlib.util
import shutil
import time
from pathlib import Path

import numpy as np

from bench.common import Context, Mode, Row, at_most, median, time_call, write_planted

REPO = Path(__file__).resolve().parents[1]
CHESTMNIST_VAL, CHESTMNIST_TEST = 11_219, 22_433


def saliency_available() -> bool:
    return importlib.util.find_spec("core.explain.saliency") is not None


def pages_available() -> dict[str, bool]:
    return {p: (REPO / "pages" / f"{p}.py").is_file() for p in ("thresholds", "saliency")}


def chestmnist_sized_scores(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels at ChestMNIST-like prevalence and scores that separate them imperfectly (AUC ~0.75)."""
    from core.data.chestmnist import N_CLASSES

    rng = np.random.default_rng(seed)
    prev = np.array([.10, .025, .12, .18, .05, .06, .012, .045, .04, .02, .022, .015, .03, .002])[:N_CLASSES]
    labels = (rng.random((n, N_CLASSES)) < prev).astype(np.uint8)
    logits = rng.normal(-2.5, 1.0, (n, N_CLASSES)) + 1.0 * labels
    return (1 / (1 + np.exp(-logits))).astype(np.float32), labels


def bench_threshold_metrics(mode: Mode) -> dict:
    """Median ms of core.metrics.threshold_metrics over (rows x 14) float32 scores, new thresholds each call."""
    from core import metrics

    scores, labels = chestmnist_sized_scores(mode.metric_rows, 0)
    rng = np.random.default_rng(1)

    def call() -> None:
        metrics.threshold_metrics(labels, scores, rng.uniform(0.05, 0.6, labels.shape[1]))
    ms = time_call(call, max(21, mode.repeats * 5), 3) * 1e3
    return {"interaction.threshold_metrics_ms": ms, "interaction.threshold_metrics_rows": mode.metric_rows}


# ---------------------------------------------------------------- Streamlit pages


def make_app_runs(base: Path, sizes: tuple[int, ...]) -> tuple[Path, Path, dict[int, Path]]:
    """(data root, runs dir, {size: run dir}): planted data (same labels at every size) and one
    finished 1-epoch core.train run per size."""
    from core.train import TrainConfig, prepare_run, train

    data_root, runs_dir = base / "app-data", base / "app-runs"
    out = {}
    for size in sizes:
        write_planted(data_root, size, (256, 96, 96), seed=7)  # same seed: same labels at every size
        cfg = TrainConfig(size=size, epochs=1, batch_size=64, data_root=str(data_root), runs_dir=str(runs_dir),
                          device="cpu", name="bench-app", patience=0)
        run_dir = prepare_run(cfg)
        if train(run_dir) != "finished":
            raise RuntimeError(f"app bench run {run_dir} did not finish")
        out[size] = run_dir
    return data_root, runs_dir, out


def _app(page: str, data_root: Path, runs_dir: Path, run_id: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "pages" / f"{page}.py"), default_timeout=120)
    at.session_state["data_root"] = str(data_root)
    at.session_state["runs_dir"] = str(runs_dir)
    at.session_state["run"] = run_id
    at.run()
    if at.exception:
        raise RuntimeError(f"pages/{page}.py raised: {at.exception}")
    return at


def bench_thresholds_page(data_root: Path, run_dir: Path, mode: Mode, big: bool = True) -> dict:
    """Median ms of a Thresholds-page rerun after a slider move. With `big`, the run's score files are
    replaced (in a copy) by ChestMNIST-sized ones first."""
    from core.runs import record as R

    if big:
        copy = run_dir.parent.parent / "app-runs-big" / run_dir.name
        if not copy.exists():
            shutil.copytree(run_dir, copy)
            for split, n in (("val", CHESTMNIST_VAL), ("test", CHESTMNIST_TEST)):
                R.save_scores(copy, split, *chestmnist_sized_scores(n, len(split)))
        run_dir = copy
    at = _app("thresholds", data_root, run_dir.parent, run_dir.name)
    times = []
    repeats = max(3, mode.repeats * 2)
    for i in range(repeats + mode.warmup):
        c = i % 14
        value = round(0.1 + 0.05 * (i % 12), 2)
        at.slider(key=f"thr_{c}").set_value(value)
        t = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - t)
        if at.exception:
            raise RuntimeError(f"pages/thresholds.py raised: {at.exception}")
    n_val = R.load_scores(run_dir, "val")[0].shape[0]
    return {"interaction.thresholds_rerun_ms": median(times[mode.warmup:]) * 1e3,
            "interaction.thresholds_rows": n_val}


def bench_saliency_page(data_root: Path, run_dir: Path, mode: Mode, n_runs: int) -> dict:
    """Median ms of a Saliency-page rerun after picking another test image (index mode)."""
    at = _app("saliency", data_root, run_dir.parent, run_dir.name)
    times = []
    repeats = max(3, mode.repeats * 2)
    for i in range(repeats + mode.warmup):
        at.number_input(key="sal_index").set_value(1 + i % 90)
        t = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - t)
        if at.exception:
            raise RuntimeError(f"pages/saliency.py raised: {at.exception}")
    return {"interaction.saliency_rerun_ms": median(times[mode.warmup:]) * 1e3,
            "interaction.saliency_runs_shown": n_runs}


# ---------------------------------------------------------------- rows


def run(ctx: Context) -> list[Row]:
    mode, rows = ctx.mode, []
    ctx.log("interaction: threshold_metrics")
    f = bench_threshold_metrics(mode)
    rows.append(Row("interaction.threshold_metrics_ms", f["interaction.threshold_metrics_ms"], "ms", None, None,
                    "< 10 ms", at_most(f["interaction.threshold_metrics_ms"], 10.0),
                    f"{mode.metric_rows:,} x 14 scores, new threshold vector per call"))

    have = pages_available()
    if not mode.app_runs:
        return rows
    if not all(have.values()) or not saliency_available():
        missing = [f"pages/{p}.py" for p, ok in have.items() if not ok] + ([] if saliency_available() else ["core.explain.saliency"])
        rows.append(Row("interaction.pages", None, "ms", note=f"skipped: {', '.join(missing)} not present"))
        return rows
    sizes = tuple(s for s in (28, 64, 224) if s in mode.cam_sizes) or (28,)
    ctx.log(f"interaction: training tiny runs at {sizes} px for the pages")
    data_root, runs_dir, made = make_app_runs(ctx.workdir, sizes)
    ctx.log("interaction: Thresholds page reruns")
    f = bench_thresholds_page(data_root, made[min(sizes)], mode, big=True)
    rows.append(Row("interaction.thresholds_rerun_ms", f["interaction.thresholds_rerun_ms"], "ms", None, None,
                    "< 300 ms", at_most(f["interaction.thresholds_rerun_ms"], 300.0),
                    f"AppTest: slider move, {CHESTMNIST_VAL:,} val / {CHESTMNIST_TEST:,} test scores"))
    ctx.log("interaction: Saliency page reruns")
    f = bench_saliency_page(data_root, made[min(sizes)], mode, len(made))
    rows.append(Row("interaction.saliency_rerun_ms", f["interaction.saliency_rerun_ms"], "ms", None, None,
                    "< 500 ms", at_most(f["interaction.saliency_rerun_ms"], 500.0),
                    f"AppTest: another image index; Grad-CAM of the {min(sizes)} px run + "
                    f"{len(made) - 1} side-by-side run(s) at {', '.join(str(s) for s in sizes[1:])} px"))
    return rows
