"""core.evaluate.effective on planted data whose answer is known: a finding drawn as a fine grating (period
4 px at 64 px) is lost below the effective size where the grating can no longer be drawn (32 px, its Nyquist
size: kept at 40 px and above, gone at 28 px and below), while a coarse finding (a large bright square)
survives every effective size. The stand-in model sees exactly the two findings, with a fixed per-image
noise on the grating's score as any real model has (without it, bicubic resizing's faint residue of the
grating would still rank the images)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from core.data.chestmnist import N_CLASSES, SPLITS, write_npz
from core.evaluate import effective as EF
from core.evaluate import scoring
from core.runs import record as runs
from core.runs import checkpoints
from core.train import TrainConfig, prepare_run, train

S, N = 64, 240
FINE, COARSE = 0, 1
PERIOD = 4  # px at 64 px: drawable down to 2 * 64 / PERIOD = 32 px
NOISE = 25_000.0  # the fine score's per-image noise, about a tenth of a native positive's grating energy


def planted(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, N_CLASSES)) < 0.4).astype(np.uint8)
    images = rng.normal(100, 12, (n, S, S))
    grating = 40 * np.cos(2 * np.pi * np.arange(24) / PERIOD)[:, None]  # horizontal stripes
    images[labels[:, FINE] == 1, 8:32, 8:32] += grating
    images[labels[:, COARSE] == 1, 36:60, 36:60] += 50
    return np.clip(images, 0, 255).astype(np.uint8), labels


def detector(images: np.ndarray) -> np.ndarray:
    """A stand-in model that sees exactly the two planted findings: grating energy and the square's brightness."""
    x = images.astype(np.float64)
    profile, rows = x[:, 8:32, 8:32].mean(axis=2), np.arange(24)
    fine = ((profile * np.cos(2 * np.pi * rows / PERIOD)).sum(1) ** 2 + (profile * np.sin(2 * np.pi * rows / PERIOD)).sum(1) ** 2)
    coarse = x[:, 36:60, 36:60].mean(axis=(1, 2)) - x[:, 4:28, 36:60].mean(axis=(1, 2))
    out = np.random.default_rng(1).random((len(images), N_CLASSES))
    fine = fine + np.random.default_rng(2).normal(0, NOISE, len(images))
    out[:, FINE], out[:, COARSE] = 1 / (1 + np.exp(-(fine - 50_000) / 50_000)), 1 / (1 + np.exp(-coarse / 10))
    return out.astype(np.float32)


def grating_energy(images: np.ndarray) -> np.ndarray:
    profile, rows = images.astype(np.float64)[:, 8:32, 8:32].mean(axis=2), np.arange(24)
    return (profile * np.cos(2 * np.pi * rows / PERIOD)).sum(1) ** 2 + (profile * np.sin(2 * np.pi * rows / PERIOD)).sum(1) ** 2


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("planted-effective")
    write_npz(root, S, {s: planted(N, i) for i, s in enumerate(SPLITS)})
    run_dir = prepare_run(TrainConfig(size=S, epochs=1, batch_size=64, subset=64, model="seed-cnn", device="cpu",
                                      data_root=str(root), runs_dir=str(root / "runs")))
    assert train(run_dir) == "finished"
    images, labels = planted(N, 2)  # the test split written above
    runs.save_scores(run_dir, "test", detector(images), labels)
    return run_dir


@pytest.fixture
def detector_scores(monkeypatch):
    calls = []
    monkeypatch.setattr(scoring, "run_scorer", lambda *a, **k: (lambda im: calls.append(len(im)) or detector(im)))
    monkeypatch.setattr(checkpoints, "load_model", lambda *a, **k: None)
    return calls


def test_degrade_keeps_size_and_removes_detail_above_the_effective_size():
    images, _ = planted(8, 0)
    for r in (16, 40):
        out = EF.degrade(images, r)
        assert out.shape == images.shape and out.dtype == np.uint8
    # the grating's energy survives 40 px and not 28 px; a flat image stays flat
    energy = {r: grating_energy(EF.degrade(images, r)) for r in (28, 40)}
    assert energy[40].max() > 5 * energy[28].max()
    flat = np.full((2, S, S), 77, np.uint8)
    assert np.abs(EF.degrade(flat, 20).astype(int) - 77).max() <= 1


def test_a_fine_finding_is_lost_exactly_below_its_nyquist_size_and_a_coarse_one_never(planted_run, detector_scores):
    curve = {p["effective_size"]: p for p in EF.effective_curve([planted_run], (16, 20, 28, 40, 56), n_boot=300)
             if p["source"] == "resampled"}
    fine = {r: p["per_class"][FINE] for r, p in curve.items()}
    coarse = {r: p["per_class"][COARSE] for r, p in curve.items()}
    assert all(fine[r] > 0.85 for r in (40, 56)), fine
    assert all(fine[r] < 0.70 for r in (16, 20, 28)), fine
    assert all(a > 0.95 for a in coarse.values()), coarse
    # The paired per-finding change says the same: a large loss, its interval below 0, only where the detail is gone.
    for r, p in curve.items():
        row, other = p["per_class_delta"][FINE], p["per_class_delta"][COARSE]
        assert (row["delta"] < -0.2 and row["ci_high"] < 0) == (r <= 28), (r, row)
        assert abs(other["delta"]) < 0.05, (r, other)
    assert len(curve[16]["per_class"]) == N_CLASSES


def test_scores_are_cached_in_the_run_folder_until_the_checkpoint_changes(planted_run, detector_scores):
    EF.effective_scores(planted_run, (24, 44))
    assert len(detector_scores) == 2
    first = EF.effective_scores(planted_run, (24, 44))
    assert len(detector_scores) == 2  # from the cache
    EF.effective_scores(planted_run, (24, 44, 48))
    assert len(detector_scores) == 3  # only the new size is scored
    np.testing.assert_array_equal(first[("resampled", 24)], detector(EF.degrade(planted(N, 2)[0], 24)))
    best = runs.checkpoint_path(planted_run, "best")
    os.utime(best, ns=(best.stat().st_atime_ns, best.stat().st_mtime_ns + 10**9))
    EF.effective_scores(planted_run, (24,))
    assert len(detector_scores) == 4  # another checkpoint: scored again


def test_bad_effective_sizes_are_refused_and_sizes_at_or_above_the_run_are_left_out():
    assert EF.check_sizes([40, 16, 16, 64, 128], 64) == [16, 40]
    with pytest.raises(EF.EffectiveSizeError):
        EF.check_sizes([0], 64)


def test_cli_prints_one_json_object_per_effective_size(runs_copy):
    run_dir = runs_copy[64]
    out = subprocess.run([sys.executable, "-m", "core.evaluate", str(run_dir), "--effective-sizes", "16", "28", "40",
                          "--json", "--device", "cpu"], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["effective_size"] for r in rows] == [16, 28, 40]
    for r in rows:
        assert {"effective_size", "auc", "delta", "ci", "per_class"} <= set(r) and len(r["per_class"]) == N_CLASSES
    bad = subprocess.run([sys.executable, "-m", "core.evaluate", str(run_dir), "--effective-sizes", "0"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.startswith("error:") and "Traceback" not in bad.stderr


@pytest.fixture(scope="module")
def run_at_28(planted_run):
    """A run of the same data folder trained at 28 px (its 28 px file: the 64 px images brought down, as
    every size is made), whose test scores a test sets."""
    root = planted_run.parents[1]
    write_npz(root, 28, {s: (np.stack([EF.upscale(im, 28) for im in planted(N, i)[0]]), planted(N, i)[1])
                         for i, s in enumerate(SPLITS)})
    run_dir = prepare_run(TrainConfig(size=28, epochs=1, batch_size=64, subset=64, model="seed-cnn", device="cpu",
                                      data_root=str(root), runs_dir=str(root / "runs")))
    assert train(run_dir) == "finished"
    return run_dir


def test_information_or_training_says_which_from_the_paired_gap(planted_run, run_at_28, detector_scores):
    """Trained at 28 px as good as the 64 px model shown 28 px images: information; clearly worse: training."""
    from core.data.chestmnist import load

    small = load(planted_run.parents[1], 28).test
    as_seen = detector(np.stack([EF.upscale(im, S) for im in small.images]))  # what the 64 px model scores at 28 px
    runs.save_scores(run_at_28, "test", as_seen, small.labels)
    same = EF.information_or_training([run_at_28], [planted_run], 28, n_boot=300)
    assert same["source"] == "file" and abs(same["delta"]) < 1e-9 and same["words"].startswith("Information"), same["words"]
    worse = as_seen.copy()
    worse[:, COARSE] = np.random.default_rng(5).random(len(worse))  # the 28 px model never learned the square
    runs.save_scores(run_at_28, "test", worse, small.labels)
    lost = EF.information_or_training([run_at_28], [planted_run], 28, n_boot=300)
    assert lost["delta"] < 0 and lost["words"].startswith("Limited by its training"), lost["words"]


@pytest.mark.parametrize("gap, loss, start", [
    ((-0.03, -0.05, -0.01, 0.001), (-0.04, -0.06, -0.02, 0.001), "Limited by its training"),
    ((0.03, 0.01, 0.05, 0.001), (-0.04, -0.06, -0.02, 0.001), "Models trained at 28 px do better"),
    ((0.00, -0.02, 0.02, 0.9), (-0.04, -0.06, -0.02, 0.001), "Information, as far as these runs can tell"),
    ((0.00, -0.02, 0.02, 0.9), (0.001, -0.02, 0.02, 0.9), "No cost of 28 px to explain"),
    ((0.00, -0.02, 0.02, 0.9), (0.04, 0.02, 0.06, 0.001), "No loss at 28 px"),
])
def test_gap_words_claim_only_what_the_intervals_cover(gap, loss, start):
    """Each sentence follows its verdicts: a gap only when decided, 'information' only when the larger model loses."""
    def result(d, lo, hi, p):
        return {"delta": d, "ci": [lo, hi], "p_value": p, "ci_level": 0.95}
    words = EF.gap_words(result(*gap), result(*loss), 28, 224)
    assert words.startswith(start), words


def test_a_page_reading_the_cache_loads_no_data_file(planted_run, detector_scores, monkeypatch):
    """Compare asks for the cache on every rerun: that must not load (or unpack) the run's data file."""
    EF.effective_scores(planted_run, (24,))
    monkeypatch.setattr(EF.D, "load", lambda *a, **k: pytest.fail("the data file was loaded"))
    assert ("resampled", 24) in EF.effective_scores(planted_run, (24,), cached_only=True)
    assert EF.effective_scores(planted_run, (24,), data_root=planted_run / "nowhere", cached_only=True) == {}
