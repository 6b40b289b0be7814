"""A run's recipe and data read back from its folder: the TrainConfig it was prepared with, the data
file's MD5, and that file found again wherever it moved (MD5-checked)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from core import env
from core.data import chestmnist as D
from core.runs import record as runs
from core.train.recipe import ConfigError, TrainConfig


def config_of(run_dir: str | Path) -> TrainConfig:
    """The TrainConfig a run was prepared with (fields this version does not know are ignored).

    A field of the wrong type, or a config without size or model, is a RunError naming it.
    """
    train = runs.read_config(run_dir)["train"]
    defaults = TrainConfig()
    fields, problems = {}, []
    for f in dataclasses.fields(TrainConfig):
        if f.name not in train:
            if f.name in ("size", "model"):
                problems.append(f"{f.name} is missing")
            continue
        value, default = train[f.name], getattr(defaults, f.name)
        # The optional fields (subset) default to None and hold an int otherwise; a float field takes an int.
        kind = int if default is None else (int, float) if isinstance(default, float) else type(default)
        ok = (value is None and default is None) or (isinstance(value, kind) and
                                                     (isinstance(default, bool) or not isinstance(value, bool)))
        if not ok:
            problems.append(f"{f.name} is {value!r}")
        fields[f.name] = value
    if problems:
        raise runs.RunError(f"{runs.config_path(run_dir)} does not describe a run of this tool: "
                            + "; ".join(problems) + ". Restore the file, or start a new run.")
    config = TrainConfig(**fields)
    # The command line's range checks: a value no run could have been made with (subset 0, seed 2**70,
    # model "../../etc") would otherwise crash a resume or evaluation half way.
    try:
        config.validate()
    except ConfigError as e:
        raise runs.RunError(f"{runs.config_path(run_dir)} holds settings no run of this tool has: {e} "
                            "Restore the file, or start a new run.") from None
    return config


_MD5: dict[tuple[str, int, int], str] = {}


def data_md5(path: Path) -> str:
    """The file's MD5, computed once per process for a given path, size and modification time."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _MD5:
        _MD5[key] = D.file_md5(path)
    return _MD5[key]


def check_same_data(run_dir: str | Path, data: D.ChestData) -> None:
    """RunError when `data` is not the file the run was trained on (the MD5 in its config; split sizes
    for a run recorded without one), saying how to evaluate on other data instead."""
    recorded = runs.read_config(run_dir).get("data") or {}
    md5, n = recorded.get("md5"), recorded.get("n") or {}
    found = {s: len(data.split(s)) for s in D.SPLITS}
    same = data_md5(data.path) == md5 if md5 else all(n.get(s) == found[s] for s in D.SPLITS)
    if not same:
        was = "/".join(str(n.get(s, "?")) for s in D.SPLITS)
        raise runs.RunError(
            f"{data.path} is not the data run {Path(run_dir).name} was trained on (its MD5 differs from the one in "
            f"{runs.config_path(run_dir)}; train/val/test {'/'.join(map(str, found.values()))} images here, {was} then). The run's "
            f"results are kept. Point --data-root at the original file, or evaluate on this data into a new folder: "
            f"python -m core.evaluate {run_dir} --other-data {data.root} --out NEW_DIR")


def run_data(run_dir: str | Path, data_root: str | Path | None = None) -> D.ChestData:
    """The run's data, MD5-checked against the run's config.

    From `data_root` when given (the data moved there), else from the folder the run recorded, else,
    when its file is gone from there, from CHESTMNIST_ROOT. A found file that differs, or none found,
    is a RunError / DataError saying what to do.
    """
    cfg = config_of(run_dir)
    recorded = Path(cfg.data_root)
    if data_root is None and not D.npz_path(recorded, cfg.size).is_file() and env.data_root():
        data_root = D.default_root()
    root = Path(data_root).expanduser() if data_root is not None else recorded
    try:
        data = D.load(root, cfg.size)
    except D.DataError as e:
        moved = (f" The run was trained on {D.npz_name(cfg.size)} in {recorded}; if the file moved, pass "
                 "--data-root NEW_FOLDER (or set CHESTMNIST_ROOT) and it is used when its MD5 matches.")
        raise D.DataError(f"{e}{moved if root == recorded else ''}") from None
    check_same_data(run_dir, data)
    return data
