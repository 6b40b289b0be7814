"""Images or pixels (issue #23 item 3): nested subsets, the Pareto frontier, the equal-compute verdict, --subsets.

The frontier and the verdict are checked on planted tables whose answer is known; the study grid on a tiny
generated data set (28 and 64 px, 2 epochs).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from core import metrics
from core.data import chestmnist as D
from core.study import frontier as FR
from core.study import main, read_study_file, run_study
from core.study.common import FRONTIER_FIGURE
from core.train import TrainConfig
from tests.synthetic import write_planted

SEED_CNN_FLOPS = {28: 8_483_328, 64: 44_305_920}  # core.models.describe("seed-cnn", size)["flops"]


# --- the subset a run trains on -------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 7])
def test_a_seeds_subsets_are_nested(seed):
    n = 1013  # NIH-1667's training split: below the 10,000 where Generator.choice stops using Floyd's algorithm
    quarter, half = (set(D.subset_indices(n, round(f * n), seed)) for f in (0.25, 0.5))
    assert len(quarter) == 253 and len(half) == 506 and quarter < half < set(range(n))


def test_a_seeds_subset_is_the_same_images_at_every_size(tmp_path):
    for size in (28, 64):
        write_planted(tmp_path, size, n=(96, 16, 16))
    small, large = D.load(tmp_path, 28), D.load(tmp_path, 64)
    picked = [D.subset_indices(len(d.train), 24, seed=3) for d in (small, large)]  # as core.train's loop draws it
    np.testing.assert_array_equal(*picked)
    np.testing.assert_array_equal(small.train.labels[picked[0]], large.train.labels[picked[1]])


# --- the frontier and the verdict on planted tables ---------------------------------------------------------

def test_pareto_front_of_a_known_table():
    compute = [1, 2, 2, 3, 4, 4]
    auc = [0.60, 0.70, 0.65, 0.68, 0.80, 0.80]
    # (2, 0.65) is beaten at equal compute, (3, 0.68) by cheaper (2, 0.70); equal points dominate neither.
    assert FR.pareto(compute, auc).tolist() == [True, True, False, False, True, True]


def _point(size: int, n: int, seed: int, auc: float, split: int = 1000, epochs: int = 10) -> FR.RunPoint:
    return FR.RunPoint(f"{size}-{n}-{seed}", '{"model": "seed-cnn"}', size, seed, n, split,
                       FR.training_gflop(SEED_CNN_FLOPS[size], n, epochs), 1.0 + n * size / 1e4, auc)


def test_equal_compute_pairs_28_px_on_all_images_with_64_px_on_a_quarter():
    points = [_point(s, n, 0, 0.7) for s in (28, 64) for n in (250, 500, 1000)]
    grid = FR.cells(points)
    assert FR.training_gflop(1e9, 100, 2) == 600  # 3 x forward x images x epochs
    [(a, b)] = FR.equal_compute_pairs(grid)  # seed-cnn's 64 px costs 5.2x its 28 px per image
    assert (a.size, a.n_train, b.size, b.n_train) == (28, 1000, 64, 250)
    assert b.train_gflop / a.train_gflop == pytest.approx(5.2227 / 4, rel=1e-3)
    assert FR.equal_compute_pairs(grid, tolerance=1.2) == []


def test_the_equal_compute_pairs_are_one_holm_family():
    """res-cnn-like costs (64 px 1.2x 28 px per image): two pairs, all against half and half against a quarter."""
    labels = (np.random.default_rng(1).random((300, 14)) < 0.3).astype(np.uint8)
    flops = {28: 58_404_864, 64: 71_226_624}  # core.models.describe("res-cnn", size)["flops"]
    scores, points = {}, []
    for size in (28, 64):
        for n in (250, 500, 1000):
            for seed in range(2):
                name = f"{size}-{n}-{seed}"
                scores[name] = _planted(labels, 0.6 + 0.0002 * n, len(scores))
                points.append(FR.RunPoint(name, "r", size, seed, n, 1000, FR.training_gflop(flops[size], n, 10), None,
                                          float(np.nanmean(metrics.auc_per_class(labels, scores[name])))))

    def difference(a, b, n_boot, seed, min_positives):
        return metrics.seed_group_difference(labels, [scores[r] for r in a], [scores[r] for r in b], n_boot=n_boot,
                                             seed=seed, min_positives=min_positives)
    grid = FR.frontier(points, n_boot=200, difference=difference)
    assert [(r["a"].split(" (")[0], r["b"].split(" (")[0]) for r in grid["pairs"]] == [
        ("28 px · 1/2 of the images", "64 px · 1/4 of the images"), ("28 px · all images", "64 px · 1/2 of the images")]
    np.testing.assert_allclose([r["p_adjusted"] for r in grid["pairs"]],
                               metrics.holm([r["p_value"] for r in grid["pairs"]]))
    assert all(c["front_seconds"] is False for c in grid["cells"])  # no measured seconds: no frontier on that axis


def test_runs_of_two_data_folders_on_all_their_images_are_no_subsets():
    points = [_point(28, 1000, 0, 0.7), _point(64, 1000, 0, 0.7)]
    other = [FR.RunPoint(f"o{s}", '{"data_root": "other", "model": "res-cnn"}', s, 0, 400, 400, 1.0, None, 0.6)
             for s in (28, 64)]
    assert FR.subsets(points + other) == 1 and FR.subsets(points + [_point(28, 250, 0, 0.6)]) == 2
    labels = [c["label"] for c in FR.frontier(points + other)["cells"]]
    assert "res-cnn 28 px · all images (400 images)" in labels  # several recipes: each label names its model


def _planted(labels: np.ndarray, noise: float, seed: int) -> np.ndarray:
    return np.clip(labels + np.random.default_rng(seed).normal(0, noise, labels.shape), 0, 1).astype(np.float32)


def _answer(noise_images: float, noise_pixels: float) -> dict:
    """The frontier of a 2 x 2 grid (28/64 px x all/quarter of the images, 3 seeds) whose test scores are
    planted: the 28 px cell on all images scores with `noise_images`, the 64 px one on a quarter with `noise_pixels`."""
    labels = (np.random.default_rng(0).random((400, 14)) < 0.3).astype(np.uint8)
    noise = {(28, 1000): noise_images, (64, 250): noise_pixels, (28, 250): 1.5, (64, 1000): 0.2}
    scores, points = {}, []
    for (size, n), sd in noise.items():
        for seed in range(3):
            s = _planted(labels, sd, 100 * size + n + seed)
            p = _point(size, n, seed, float(np.nanmean(metrics.auc_per_class(labels, s))))
            scores[p.run_dir] = s
            points.append(p)

    def difference(a, b, n_boot, seed, min_positives):
        return metrics.seed_group_difference(labels, [scores[r] for r in a], [scores[r] for r in b], n_boot=n_boot,
                                             seed=seed, min_positives=min_positives)
    return FR.frontier(points, n_boot=300, difference=difference)


def test_more_images_that_score_better_at_equal_compute_are_named_the_winner():
    grid = _answer(noise_images=0.3, noise_pixels=0.8)
    [row] = grid["pairs"]
    assert (row["a"], row["b"]) == ("28 px · all images (1,000 images)", "64 px · 1/4 of the images (250 images)")
    assert row["delta"] > 0 and row["p_adjusted"] < 0.05 and row["correction"] == "holm"
    assert grid["sentences"][0].startswith("At ~") and "4.0x the images at 28 px (all images) beats 5.2x the " \
        "pixels at 64 px (1/4 of the images) by" in grid["sentences"][0]
    # On the GFLOP axis: the cheapest cell, the 28 px on all images (better and cheaper than 64 px on a
    # quarter), and the 64 px on all images (best); 64 px on a quarter is dominated.
    front = {c["label"] for c in grid["cells"] if c["front_gflop"]}
    assert front == {"28 px · 1/4 of the images (250 images)", "28 px · all images (1,000 images)",
                     "64 px · all images (1,000 images)"}


def test_more_pixels_that_score_better_are_named_and_equal_ones_are_not_distinguishable():
    assert "5.2x the pixels at 64 px (1/4 of the images) beats 4.0x the images" in \
        _answer(noise_images=0.8, noise_pixels=0.3)["sentences"][0]
    assert "are not distinguishable: delta" in _answer(noise_images=0.5, noise_pixels=0.5)["sentences"][0]


# --- the study grid ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def grid_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("grid-data")
    for size in (28, 64):
        write_planted(root, size, n=(96, 48, 48))
    return root


@pytest.fixture(scope="module")
def grid(grid_root, tmp_path_factory):
    """A 2-size x 2-subset x 1-seed grid of seed-cnn, 1 epoch, trained in-process."""
    runs_dir, out = tmp_path_factory.mktemp("grid-runs"), tmp_path_factory.mktemp("grid-reports") / "g"
    base = TrainConfig(model="seed-cnn", epochs=1, batch_size=48, device="cpu", data_root=str(grid_root),
                       runs_dir=str(runs_dir))
    drawn = []  # the training indices each run drew, in the order the runs trained (in this process)

    def recorded(n, k, seed):
        drawn.append(draw(n, k, seed))
        return drawn[-1]
    draw = D.subset_indices
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(D, "subset_indices", recorded)
        report = run_study(base, [28, 64], [0], name="grid", out_dir=out, subsets=[0.25, 1.0], isolate=False,
                           inference_images=16, log=lambda m: None, n_boot=100)
    return report, base, out, drawn


def test_subsets_plan_every_size_and_fraction_and_the_report_answers(grid):
    report, _, out, _ = grid
    entries = read_study_file(out)["runs"]
    assert sorted((e["size"], e.get("subset", 0), e["seed"]) for e in entries) == [
        (28, 0, 0), (28, 24, 0), (64, 0, 0), (64, 24, 0)]  # a quarter of 96 training images is 24; all: no subset
    trained = {(e["size"], e.get("subset")): json.loads((Path(e["run_dir"]) / "config.json").read_text())["train"]
               for e in entries}
    assert all(t["subset"] == k and t["seed"] == 0 for (_, k), t in trained.items())
    summary = json.loads((out / "summary.json").read_text())
    # The other tables name the subset runs by their subset; the full-data runs are the plain recipe.
    assert {(r["subset"], r["candidate"]) for r in summary["runs"]} == {(None, "seed-cnn"), (24, "seed-cnn subset=24")}
    labels = sorted(c["label"] for c in summary["frontier"]["cells"])
    assert labels == ["28 px · 1/4 of the images (24 images)", "28 px · all images (96 images)",
                      "64 px · 1/4 of the images (24 images)", "64 px · all images (96 images)"]
    # seed-cnn: 64 px on a quarter costs 5.2 / 4 of 28 px on all the images: the one equal-compute pair.
    [pair] = summary["frontier"]["pairs"]
    assert (pair["a"], pair["b"]) == ("28 px · all images (96 images)", "64 px · 1/4 of the images (24 images)")
    md = (out / "report.md").read_text()
    assert "## Images or pixels" in md and pair["sentence"] in md and (out / FRONTIER_FIGURE).is_file()
    assert report.summary["figures"]["frontier"] == FRONTIER_FIGURE


def test_each_run_trained_on_the_same_images_at_both_sizes(grid):
    *_, drawn = grid
    quarter28, quarter64, all28, all64 = drawn  # planned subset by subset, size by size
    np.testing.assert_array_equal(quarter28, quarter64)
    assert len(quarter28) == 24 and set(quarter28) < set(all28) and set(all28) == set(all64) == set(range(96))


def test_the_grid_resumes_without_training_again(grid):
    report, base, out, _ = grid
    before = {e["run_dir"]: (Path(e["run_dir"]) / "metrics.jsonl").stat().st_mtime_ns
              for e in read_study_file(out)["runs"]}
    run_study(base, [28, 64], [0], name="grid", out_dir=out, subsets=[1.0, 0.25], isolate=False,
              inference_images=16, log=lambda m: None, n_boot=100)
    after = {e["run_dir"]: (Path(e["run_dir"]) / "metrics.jsonl").stat().st_mtime_ns
             for e in read_study_file(out)["runs"]}
    assert after == before and len(after) == 4


@pytest.mark.parametrize("bad", ["0", "1.5", "-0.25", "nan"])
def test_fractions_outside_0_1_are_refused_with_exit_2(bad, grid_root, tmp_path, capsys):
    code = main(["--sizes", "28", "--subsets", "0.5", bad, "--data-root", str(grid_root), "--device", "cpu",
                 "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "--subsets takes fractions of the training split in (0, 1]" in err
    assert "Traceback" not in err and not (tmp_path / "runs").exists()


# --- the Compare page ---------------------------------------------------------------------------------------

def _frontier_chart(at) -> tuple[dict, list[dict], object]:
    for element in at.get("vega_lite_chart"):
        spec = json.loads(element.proto.spec)
        if any(lay.get("mark", {}).get("interpolate") == "step-after" for lay in spec.get("layer", [])):
            frames = [pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in element.proto.datasets]
            return spec, frames[0].to_dict("records"), element
    raise AssertionError("no frontier chart")


def test_compare_draws_the_frontier_when_the_runs_differ_in_subset(open_page, grid, grid_root):
    report, base, out, _ = grid
    ids = [Path(e["run_dir"]).name for e in read_study_file(out)["runs"]]
    at = open_page("compare.py", grid_root, Path(base.runs_dir), timeout=180)
    at.session_state["compare_runs"] = ids
    at.run()
    assert not at.exception and not at.error
    assert "Images or pixels" in [h.value for h in at.header]
    cells = {c["label"]: c for c in report.summary["frontier"]["cells"]}
    spec, rows, _ = _frontier_chart(at)
    assert {r["label"]: (r["x"], r["auc"], r["front"]) for r in rows} == pytest.approx(
        {k: (c["train_gflop"], c["auc"], c["front_gflop"]) for k, c in cells.items()})
    assert any(lay["mark"]["type"] == "text" and lay["encoding"]["text"]["field"] == "label" for lay in spec["layer"])
    said = " ".join(m.value for m in at.markdown)
    assert "4.0x the images at 28 px (all images)" in said and "5.2x the pixels at 64 px (1/4 of the images)" in said
    at.radio(key="compare_frontier_x").set_value("measured training seconds").run()
    _, rows, _ = _frontier_chart(at)
    assert {r["label"]: (r["x"], r["front"]) for r in rows} == pytest.approx(
        {k: (c["seconds"], c["front_seconds"]) for k, c in cells.items()})


def test_compare_leaves_the_frontier_out_when_every_run_saw_all_images(open_page, grid, grid_root):
    _, base, out, _ = grid
    full = [Path(e["run_dir"]).name for e in read_study_file(out)["runs"] if not e.get("subset")]
    at = open_page("compare.py", grid_root, Path(base.runs_dir), timeout=180)
    at.session_state["compare_runs"] = full
    at.run()
    assert not at.exception and "Images or pixels" not in [h.value for h in at.header]


@pytest.mark.parametrize("gflop, text", [(1990.4, "1,990"), (665.2, "665"), (3.25e3, "3,250"), (1.5e6, "1,500,000"),
                                         (99.94, "99.9"), (0.01234, "0.0123")])
def test_compute_reads_without_an_exponent(gflop, text):
    """The real grid's sentence read "At ~1.99e+03 GFLOP of training": three significant digits, no exponent."""
    assert FR.gflop_text(gflop) == text
