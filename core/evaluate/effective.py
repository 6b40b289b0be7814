"""Effective resolution: how a run's test AUC changes when its test images carry less detail than its size.

A run trained at S px scores its test images after each is brought down to r px and back up to S
(bicubic both ways, as the importer makes every size from an original), and, where the data root holds
the same images at r px, that file's images brought up to S. Paired against the run's own test scores
(the same images), the change per finding and overall says whether the model uses the detail it was
given; set beside runs *trained* at r, the gap says whether a low-resolution model is limited by the
information or by its training.

The degraded scores are cached in the run folder (core.runs.record owns the file), keyed by the best
checkpoint and the data file, so a page draws from the cache once one scoring has run.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from core import metrics
from core.errors import UserError
from core.data import chestmnist as D
from core.runs import record as runs
from core.runs.datafile import config_of, data_md5, run_data

GRID: tuple[int, ...] = (16, 20, 28, 40, 56, 64, 96, 128, 160)


class EffectiveSizeError(UserError):
    """An effective size that is not a whole number of pixels of at least 2."""
SOURCES = ("resampled", "file")  # r px made from the S px images; the data root's own r px file


def degrade(images: np.ndarray, r: int) -> np.ndarray:
    """uint8 images (N, S, S) brought down to (r, r) and back up to (S, S), bicubic both ways."""
    s = images.shape[-1]
    return np.stack([upscale(np.asarray(Image.fromarray(im).resize((r, r), Image.Resampling.BICUBIC)), s)
                     for im in images]) if len(images) else images.copy()


def upscale(image: np.ndarray, size: int) -> np.ndarray:
    """One uint8 image (r, r) brought up to (size, size), bicubic (the way `degrade` brings it back)."""
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC), dtype=np.uint8)


def check_sizes(sizes: Sequence[int], native: int) -> list[int]:
    """The effective sizes below `native`, sorted and unique; EffectiveSizeError for one that is not a size."""
    bad = [r for r in sizes if not isinstance(r, (int, np.integer)) or isinstance(r, bool) or r < 2]
    if bad:
        raise EffectiveSizeError(f"effective sizes must be whole numbers of pixels of at least 2, not {bad}")
    return sorted({int(r) for r in sizes if r < native})


def _cache_key(run_dir: Path, data_file: Path) -> str:
    best = runs.checkpoint_path(run_dir, "best").stat()
    return f"{best.st_size}-{best.st_mtime_ns}-{data_md5(data_file)}"


def effective_scores(run_dir: str | Path, sizes: Sequence[int] = GRID, device: str = "auto",
                     data_root: str | Path | None = None, cached_only: bool = False) -> dict[tuple[str, int], np.ndarray]:
    """{(source, r): (N, 14) test probabilities} of the run's best model on its test images at effective
    size r < its size, from the cache where it holds them (same best checkpoint and data file), else
    scored now and added to the cache. With `cached_only` (a page drawing what is there), only the cache,
    without loading or checking the data file; {} where the recorded file is gone. source is
    "resampled", or "file" where the data root holds the same test images (by labels and count) at r px."""
    run_dir = Path(run_dir)
    cfg = config_of(run_dir)
    wanted = check_sizes(sizes, cfg.size)
    if cached_only:  # a page's rerun: no data file loaded, only its MD5 (computed once per process) for the key
        path = D.npz_path(Path(data_root).expanduser() if data_root is not None else Path(cfg.data_root), cfg.size)
        cached = runs.read_effective_scores(run_dir, _cache_key(run_dir, path)) if path.is_file() else {}
        return {k: v for k, v in cached.items() if k[1] in wanted}
    data = run_data(run_dir, data_root)
    key = _cache_key(run_dir, data.path)
    cached = runs.read_effective_scores(run_dir, key)
    todo = [r for r in wanted if ("resampled", r) not in cached]
    files = {r: f for r in wanted if ("file", r) not in cached and (f := _same_images_at(data, r)) is not None}
    if todo or files:
        from core.evaluate.scoring import run_scorer
        from core.runs.checkpoints import load_model
        from core.train.device import resolve_device

        dev = resolve_device(device)
        model = load_model(run_dir, "best", dev)
        images = data.test.images
        score = run_scorer(run_dir, model, cfg.size, dev, len(images) * (len(todo) + len(files)))
        cached |= score_grid(score, images, todo, files)
        runs.write_effective_scores(run_dir, key, cached)
    return {k: v for k, v in cached.items() if k[1] in wanted}


def score_grid(score: Callable[[np.ndarray], np.ndarray], images: np.ndarray, sizes: Sequence[int],
               files: dict[int, np.ndarray] | None = None) -> dict[tuple[str, int], np.ndarray]:
    """{(source, r): scores} of uint8 `images` (N, S, S) degraded to each r in `sizes` ("resampled") and of each
    smaller file's images brought up to S ("file"), scored by `score` (uint8 (N, S, S) -> (N, 14))."""
    s = images.shape[-1]
    out = {("resampled", r): score(degrade(images, r)) for r in sizes}
    return out | {("file", r): score(np.stack([upscale(im, s) for im in small])) for r, small in (files or {}).items()}


def _same_images_at(data: D.ChestData, r: int) -> np.ndarray | None:
    """The test images of the data root's r px file when it holds the same test images (same count and
    labels, as the bundled demo does at every size), else None."""
    if r not in D.SIZES or not D.npz_path(data.root, r).is_file():
        return None
    try:
        other = D.load(data.root, r).test
    except D.DataError:
        return None
    same = len(other) == len(data.test) and np.array_equal(other.labels, data.test.labels)
    return other.images if same else None


def effective_curve(run_dirs: Sequence[str | Path], sizes: Sequence[int] = GRID, n_boot: int = 2000,
                    seed: int = 0, device: str = "auto", data_root: str | Path | None = None) -> list[dict[str, Any]]:
    """One dict per (effective size, source): the runs' test AUC (medmnist, mean over the runs) at that
    effective size, its paired difference from their native test AUC (`delta`, `ci`, `p_value`, and per
    finding), and the per-class AUCs in ChestMNIST's class order (None where undefined).

    `run_dirs` are one run, or the seeds of one recipe at one size (scored on the same test images): with
    several, the difference is core.metrics.seed_group_difference's, which carries seed-to-seed variance.
    """
    run_dirs = [Path(d) for d in run_dirs]
    native = [runs.load_scores(d, "test") for d in run_dirs]
    labels = native[0][1]
    per_run = [effective_scores(d, sizes, device, data_root) for d in run_dirs]
    keys = sorted(set.intersection(*(set(p) for p in per_run)), key=lambda k: (k[1], SOURCES.index(k[0])))
    out = []
    for source, r in keys:
        degraded = [p[(source, r)] for p in per_run]
        if len(run_dirs) > 1:
            diff = metrics.seed_group_difference(labels, degraded, [s for s, _ in native], n_boot=n_boot, seed=seed,
                                                 class_names=D.CLASS_NAMES)
        else:
            diff = metrics.paired_auc_difference(labels, degraded[0], native[0][0], n_boot=n_boot, seed=seed,
                                                 class_names=D.CLASS_NAMES)
        per_class = np.nanmean([metrics.auc_per_class(labels, s) for s in degraded], axis=0)
        out.append({"effective_size": r, "source": source, "native_size": int(config_of(run_dirs[0]).size),
                    "runs": len(run_dirs), "auc": float(np.mean([metrics.mean_auc(labels, s) for s in degraded])),
                    "native_auc": float(np.mean([metrics.mean_auc(labels, s) for s, _ in native])),
                    "delta": diff["delta"], "ci": list(diff["ci"]), "p_value": diff["p_value"],
                    "per_class": [None if np.isnan(a) else float(a) for a in per_class],
                    "per_class_delta": diff["per_class"], "comparison": diff})
    return out


def information_or_training(trained_at_r: Sequence[str | Path], trained_at_s: Sequence[str | Path], r: int,
                            n_boot: int = 2000, seed: int = 0, device: str = "auto") -> dict[str, Any]:
    """Is a model trained at r px limited by the information at r px or by its training? The paired
    difference (seed-aware) of the runs trained at r against the runs trained at S > r shown the same test
    images at r px (the data root's own r px file where it holds them, else brought down from S), with a
    sentence saying what it supports. PairingError when the two groups did not score the same images."""
    from core.runs.groups import images_problem

    problem = images_problem(trained_at_r[0], trained_at_s[0])
    if problem:
        raise metrics.PairingError(problem)
    at_r = [effective_scores(d, [r], device) for d in trained_at_s]
    source = "file" if all(("file", r) in s for s in at_r) else "resampled"
    labels = runs.load_scores(trained_at_r[0], "test")[1]
    kw = {"n_boot": n_boot, "seed": seed, "class_names": D.CLASS_NAMES}
    degraded = [s[(source, r)] for s in at_r]
    result = metrics.seed_group_difference(labels, [runs.load_scores(d, "test")[0] for d in trained_at_r], degraded, **kw)
    # What the larger model itself loses at r: without a loss there is no cost of r to attribute.
    loss = metrics.seed_group_difference(labels, degraded, [runs.load_scores(d, "test")[0] for d in trained_at_s], **kw)
    s = int(config_of(trained_at_s[0]).size)
    return result | {"source": source, "trained_at": r, "tested_from": s, "loss_at_r": loss,
                     "words": gap_words(result, loss, r, s)}


def _decided(result: dict[str, Any]) -> bool:
    return bool(result["p_value"] < 1 - result.get("ci_level", 0.95))


def _span(result: dict[str, Any]) -> str:
    return f"{result['delta']:+.3f} [{result['ci'][0]:+.3f}, {result['ci'][1]:+.3f}]"


def gap_words(result: dict[str, Any], loss: dict[str, Any], r: int, s: int) -> str:
    """What `result`, (trained at r) - (trained at s, tested at r), supports, given `loss`, (trained at s, tested at
    r) - (trained at s, tested at s): a sentence or two that claim no more than the intervals."""
    if not all(np.isfinite(x) for x in (result["delta"], *result["ci"], loss["delta"], *loss["ci"])):
        return f"At {r} px the runs cannot be compared: no finding has enough test positives and negatives."
    gap, lost = _span(result), _span(loss)
    if _decided(result) and result["delta"] < 0:
        return (f"Limited by its training: the {s} px model shown the same images at {r} px scores higher than the "
                f"models trained at {r} px ({gap}), so {r} px images hold more than training at {r} px reached.")
    if _decided(result) and result["delta"] > 0:
        return (f"Models trained at {r} px do better on {r} px images than the {s} px model shown them ({gap}): "
                f"the {s} px model relies on detail that {r} px lacks.")
    if not _decided(loss):
        return (f"No cost of {r} px to explain: the {s} px model shown {r} px images is not distinguishable from "
                f"itself at {s} px ({lost}), nor from models trained at {r} px ({gap}). Not distinguishable is not "
                "equal: the intervals say how large a difference these runs could have missed.")
    if loss["delta"] > 0:  # the larger model does better on less detail: nothing lost to attribute
        return (f"No loss at {r} px: the {s} px model scores higher on {r} px images than on its own ({lost}), and "
                f"models trained at {r} px are not distinguishable from it there ({gap}).")
    return (f"Information, as far as these runs can tell: the {s} px model loses {-loss['delta']:.3f} when shown "
            f"{r} px images ({lost}), and models trained at {r} px score like it there ({gap}).")


def finding_rows(result: dict[str, Any], correction: str = "holm") -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per finding of a paired result (a minus b): (rows compared, sorted by gain, with p adjusted over them as
    one family and a verdict "gain" / "loss" / "not distinguishable"; rows left apart for too few test
    positives, which carry no verdict)."""
    from core.metrics.decisions import adjust_p

    compared = [c for c in result["per_class"] if c["status"] == "compared"]
    alpha = 1 - result.get("ci_level", 0.95)
    rows = [{"finding": c["class"], "delta": c["delta"], "ci_low": c["ci_low"], "ci_high": c["ci_high"],
             "positives": c["n_pos"], "p": c["p_value"], "p_adjusted": p,
             "verdict": "not distinguishable" if not p < alpha else "gain" if c["delta"] > 0 else "loss"}
            for c, p in zip(compared, adjust_p([c["p_value"] for c in compared], correction))]
    apart = [{"finding": c["class"], "positives": c["n_pos"], "verdict": c["status"]}
             for c in result["per_class"] if c["status"] != "compared"]
    return sorted(rows, key=lambda r: -r["delta"]), apart
