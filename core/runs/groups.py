"""Runs grouped into recipes and seeds, and the one decision whether two runs scored the same test images.

A *recipe* is every training setting but size, seed, name and how the run executes
(core.study.recipe.recipe_settings), its data folder resolved; a *seed group* is the runs of one
recipe at one size, each seed counted once: a copied run folder, or a sweep run and a study run of one
recipe and seed, are the same seed again, not new evidence, and the most recent of them is the one used. Two runs scored the same test images when they were trained on the same data folder (its
files at every size hold the same images in the same order; the same data file's MD5 where both runs
are of one size) and their saved test labels agree. The Compare page and the study report both group
and pair through this module.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import metrics
from core.data import chestmnist as D
from core.runs import record as runs
from core.study.recipe import recipe_settings

__all__ = ["SeedGroup", "group_difference", "images_problem", "images_source", "one_per_size", "recipe_key",
           "repeat_notes",
           "same_images", "seed_groups"]


def images_source(train: Mapping[str, Any]) -> str | None:
    """What identifies a run's test images: its resolved data folder; None when the config has none."""
    root = train.get("data_root")
    return None if root is None else str(D.resolve_root(root).resolve())


def recipe_key(train: Mapping[str, Any]) -> str:
    """A run's recipe (train settings minus size, seed and execution) as sorted JSON, its data folder resolved."""
    settings = recipe_settings(dict(train))
    if "data_root" in settings:
        settings["data_root"] = images_source(train)
    return json.dumps(settings, sort_keys=True, default=str)


@dataclass
class SeedGroup:
    """The runs of one recipe at one size, one per seed."""

    recipe: str  # recipe_key of its runs
    size: int | None
    model: str | None
    runs: list[str] = field(default_factory=list)  # run folders, one per seed (its most recent), in the order given
    seeds: list[Any] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)  # further run folders of a seed already counted
    repeats: dict[Any, list[str]] = field(default_factory=dict)  # seed -> all its runs, the one used first


def _recency(run_dir: str | Path) -> str:
    """Run ids begin with their creation time (core.runs.record.new_run_dir): the larger id is the more recent run."""
    return Path(run_dir).name


def seed_groups(configs: Mapping[str, Mapping[str, Any]]) -> list[SeedGroup]:
    """Group runs by (recipe, size), each seed counted once: its most recent run, the others set aside.

    Args:
        configs: run folder -> its config's "train" dict (core.runs.record.read_config(run)["train"]).

    Returns:
        SeedGroups in order of first appearance; a group's runs in the order given.
    """
    groups: dict[tuple[str, Any], SeedGroup] = {}
    by_seed: dict[tuple[str, Any, Any], list[str]] = {}
    for run_dir, train in configs.items():
        key = (recipe_key(train), train.get("size"))
        groups.setdefault(key, SeedGroup(key[0], train.get("size"), train.get("model")))
        by_seed.setdefault((*key, train.get("seed")), []).append(str(run_dir))
    for run_dir, train in configs.items():
        key, seed = (recipe_key(train), train.get("size")), train.get("seed")
        group, same = groups[key], by_seed[(*key, seed)]
        used = max(same, key=_recency) if seed is not None else str(run_dir)
        if str(run_dir) != used:
            group.duplicates.append(str(run_dir))
            continue
        group.runs.append(used)
        group.seeds.append(seed)
        if seed is not None and len(same) > 1:
            group.repeats[seed] = [used] + sorted((r for r in same if r != used), key=_recency, reverse=True)
    return list(groups.values())


def repeat_notes(group: SeedGroup, name: str) -> list[str]:
    """What the app and the report say of a group's repeated seeds (`name`: how they call the group)."""
    return [f"{len(same)} runs repeat seed {seed} of {name}; the most recent ({Path(same[0]).name}) is used, "
            f"the other{'s' if len(same) > 2 else ''} ({', '.join(Path(r).name for r in same[1:])}) left out."
            for seed, same in group.repeats.items()]


def _train(run_dir: str | Path) -> dict:
    return runs.read_config(run_dir).get("train") or {}


def images_problem(run_a: str | Path, run_b: str | Path) -> str | None:
    """Why runs a and b (run folders with test scores) did not score the same test images; None when they did."""
    config_a, config_b = runs.read_config(run_a), runs.read_config(run_b)
    train_a, train_b = config_a.get("train") or {}, config_b.get("train") or {}
    names = (Path(run_a).name, Path(run_b).name)
    md5_a, md5_b = (config_a.get("data") or {}).get("md5"), (config_b.get("data") or {}).get("md5")
    if train_a.get("size") == train_b.get("size") and md5_a and md5_b and md5_a != md5_b:
        return (f"{names[0]} and {names[1]} were trained on different data files (MD5 {md5_a[:8]}... and "
                f"{md5_b[:8]}...): a paired comparison needs runs scored on the same images.")
    try:
        metrics.check_same_images(runs.load_scores(run_a, "test")[1], runs.load_scores(run_b, "test")[1],
                                  images_source(train_a), images_source(train_b), names=names)
    except metrics.PairingError as e:
        return str(e)
    return None


def same_images(run_a: str | Path, run_b: str | Path) -> bool:
    """True when runs a and b scored the same test images in the same order (see images_problem)."""
    return images_problem(run_a, run_b) is None


def one_per_size(run: str | Path, others: Sequence[str | Path]) -> list[str]:
    """One of `others` per size other than `run`'s, ordered by size: the closest kin of `run` at each size (its
    recipe and seed, else its recipe, else its seed, else the first given), so that a strip of the same image
    across resolutions differs in resolution only, where the runs allow."""
    def train(r: str | Path) -> Mapping[str, Any]:
        try:
            return runs.read_config(r).get("train") or {}
        except runs.RunError:
            return {}
    own = train(run)
    recipe, seed = recipe_key(own), own.get("seed")
    best: dict[Any, tuple[int, str]] = {}
    for other in others:
        t = train(other)
        if t.get("size") is None or t.get("size") == own.get("size"):
            continue
        kin = 2 * (recipe_key(t) != recipe) + (t.get("seed") != seed)  # 0: same recipe and seed ... 3: neither
        if t["size"] not in best or kin < best[t["size"]][0]:  # ties: the first given stays
            best[t["size"]] = (kin, str(other))
    return [best[size][1] for size in sorted(best)]


def group_difference(runs_a: Sequence[str | Path], runs_b: Sequence[str | Path], n_boot: int = 2000, seed: int = 0,
                     min_positives: int = metrics.MIN_POSITIVES) -> dict[str, Any]:
    """core.metrics.seed_group_difference of two seed groups (run folders), after checking every run
    scored the images of the first run of a; PairingError saying why not otherwise."""
    first = runs_a[0]
    for run in list(runs_a[1:]) + list(runs_b):
        problem = images_problem(first, run)
        if problem:
            raise metrics.PairingError(problem)
    labels = runs.load_scores(first, "test")[1]
    return metrics.seed_group_difference(labels, [runs.load_scores(r, "test")[0] for r in runs_a],
                                         [runs.load_scores(r, "test")[0] for r in runs_b], n_boot=n_boot, seed=seed,
                                         class_names=D.CLASS_NAMES[:labels.shape[1]], min_positives=min_positives)
