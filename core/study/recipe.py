"""A study's recipe and names: what its runs share, how they are named and found, its study.json."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path
from typing import Callable, Iterable

from core.data import chestmnist as D
from core.runs import record as runs
from core.train.recipe import TrainConfig
from core.study.common import EXECUTION_FIELDS, StudyError, log


# The recipe's knobs a study passes to every run; size, seed and name are the study's own (--sizes, --seeds).
KNOBS = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in ("size", "seed", "name")]


def slug(text: str, limit: int = 60) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-_")[:limit]


def recipe_settings(train: dict) -> dict:
    """A run's train settings without size, seed and execution details: what a study's runs share.

    A setting the run's config lacks (recorded before the setting existed) is its default, which is
    what the run trained with; so old and new runs of one recipe group together.
    """
    added = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}
    return {k: v for k, v in (added | train).items() if k not in EXECUTION_FIELDS}


def recipe_of(config: TrainConfig) -> dict:
    """The settings every run of a study shares (TrainConfig minus size, seed and execution details)."""
    return recipe_settings(dataclasses.asdict(config)) | {"data_root": str(Path(config.data_root).expanduser().resolve())}


def default_name(config: TrainConfig) -> str:
    """Readable and recipe-specific: `<data folder>-<model>-e<epochs>[-sub<K>]-<hash of the recipe>`."""
    recipe = recipe_of(config)
    digest = hashlib.sha1(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:4]
    parts = [Path(recipe["data_root"]).name.lstrip(".") or "data", config.model, f"e{config.epochs}"]
    if config.subset:
        parts.append(f"sub{config.subset}")
    return slug("-".join(parts), 50) + f"-{digest}"


def run_name(study: str, seed: int) -> str:
    """TrainConfig.name of the study's run for `seed` (size is a field of its own)."""
    return f"study-{study}-s{seed}"


def study_of(name: object) -> str | None:
    """The study a run's TrainConfig.name says it was trained for (run_name's inverse); None for any other run."""
    m = re.fullmatch(r"study-(.+)-s\d+", name) if isinstance(name, str) else None
    return m.group(1) if m else None


def recipe_diff(want: dict, train_cfg: dict) -> dict:
    return {k: (v, train_cfg.get(k)) for k, v in want.items() if train_cfg.get(k) != v}


def is_study_run(run_dir: Path, study: str, size: int, seed: int, recipe: dict) -> bool:
    try:
        train_cfg = runs.read_config(run_dir)["train"]
    except runs.RunError:
        return False
    return (train_cfg.get("name") == run_name(study, seed) and train_cfg.get("size") == size
            and train_cfg.get("seed") == seed and not recipe_diff(recipe, train_cfg))


def study_file(out_dir: Path) -> Path:
    return Path(out_dir) / "study.json"


def read_study_file(out_dir: str | Path) -> dict | None:
    path = study_file(Path(out_dir))
    if not path.is_file():
        return None
    try:
        study = runs.read_json(path)
    except runs.RunError as e:
        raise StudyError(f"{e} Delete it to start the study's bookkeeping afresh (run folders are kept).") from None
    if not isinstance(study, dict) or "runs" not in study:
        raise StudyError(f"{path} is not a study file of this tool.")
    return study


def subset_counts(fractions: Iterable[float], data_root: str | Path, sizes: Iterable[int]) -> list[int | None]:
    """Training images per epoch (TrainConfig.subset) for each fraction of the training split, smallest
    first; None for the whole split, so the grid's full-data runs are a plain study's runs.

    The split must hold as many images at every size (one folder's files hold the same images): the
    subset drawn for a seed is then the same images at every size. StudyError for a fraction outside
    (0, 1], one that rounds to no image, or splits that differ across sizes.
    """
    fractions = list(fractions)
    bad = [f for f in fractions if not 0 < f <= 1]
    if bad or not fractions:
        raise StudyError(f"--subsets takes fractions of the training split in (0, 1], e.g. 0.25 0.5 1.0; got "
                         f"{', '.join(map(str, bad)) or 'none'}.")
    counts = {size: D.split_counts(data_root, size)["train"] for size in sizes}
    if len(set(counts.values())) > 1:
        raise StudyError("The training split differs across sizes (" + ", ".join(
            f"{s} px: {n:,}" for s, n in counts.items()) + " images): a subset would not be the same images at "
            "every size. Use one data folder whose files hold the same images.")
    n = next(iter(counts.values()))
    out: list[int | None] = []
    for f in sorted(set(fractions)):
        k = round(f * n)
        if k < 1:
            raise StudyError(f"--subsets {f} of the {n:,} training images is no image; use a larger fraction.")
        out.append(None if k >= n else k)
    return list(dict.fromkeys(out))


def write_sequential(out_dir: str | Path, record: dict) -> None:
    """Keep an until-decided study's record (core.study.until: design, rounds, budget spent) in its study.json."""
    study = read_study_file(out_dir)
    if study is None:
        raise StudyError(f"{study_file(Path(out_dir))} is missing: the study's runs must be planned first.")
    runs.write_json(study_file(Path(out_dir)), study | {"sequential": record})


def check_sizes(data_root: str | Path, sizes: Iterable[int], skip_missing: bool = False,
                log: Callable[[str], None] = log) -> list[int]:
    """The requested sizes that have data under `data_root`, sorted.

    A missing size is a DataError naming the files, what the folder has and how to get the rest,
    unless `skip_missing` (then it is left out with a message). Nothing is written.
    """
    sizes = sorted(set(sizes))
    if not sizes:
        raise StudyError("No sizes given; pass e.g. --sizes 28 64 128 224.")
    for size in sizes:
        D.check_size(size)
    root = Path(data_root).expanduser()
    if not root.is_dir():
        D.load(root, sizes[0])  # raises the DataError that explains the missing folder
    missing = [s for s in sizes if not D.npz_path(root, s).is_file()]
    if not missing:
        return sizes
    present = [s for s in sizes if s not in missing]
    have = D.available_sizes(root)
    files = ", ".join(D.npz_name(s) for s in missing)
    if not skip_missing or not present:
        hint = (f" Or pass --skip-missing to run the study on {present} only." if present else "")
        raise D.DataError(f"Sizes {missing} have no data in {root.resolve()} (missing {files}; the folder has "
                          f"{have or 'no ChestMNIST sizes'}). {D.offline_instructions(root, missing[0])}{hint}")
    log(f"skipping sizes {missing}: {files} not in {root} (--skip-missing)")
    return present
