"""Whether a data file is the official ChestMNIST: by MD5 against medmnist's record, or by split sizes."""
from __future__ import annotations

from core.data import chestmnist as D


def is_official(size: int, md5: str | None) -> bool:
    """Whether a file with this MD5 is the official ChestMNIST npz of `size` (medmnist's record)."""
    try:
        return md5 is not None and md5 == D.download_url(int(size))[1]
    except (TypeError, ValueError, KeyError, D.DataError):
        return False


def official_split_sizes(n: dict[str, int]) -> bool:
    """Whether split sizes are those of the official ChestMNIST release (a cheap check where no MD5 is at hand)."""
    return all(n.get(s) == D.OFFICIAL_COUNTS[s] for s in D.SPLITS)


def data_provenance(size: int, n: dict, md5: str) -> dict:
    """{"official", "verdict"}: whether a run's npz is the official ChestMNIST, by MD5, with split sizes."""
    counts = [n.get(s) for s in D.SPLITS]
    official_counts = [D.OFFICIAL_COUNTS[s] for s in D.SPLITS]
    if is_official(size, md5):
        return {"official": True, "verdict": "official ChestMNIST (MD5 matches medmnist's record)"}
    if official_split_sizes(n):
        return {"official": False, "verdict": "same split sizes as the official ChestMNIST, but its MD5 differs "
                                               "from medmnist's record (a re-export or a modified file)"}
    fmt = "/".join(f"{c:,}" if c is not None else "?" for c in counts)
    return {"official": False, "verdict": f"NOT the official ChestMNIST: train/val/test {fmt} images, the official "
                                          f"release has {'/'.join(f'{c:,}' for c in official_counts)}"}


def run_data_label(config: dict) -> tuple[bool, str]:
    """(is official ChestMNIST, which data a run used) from its config (core.runs.read_config)."""
    train, data = config.get("train", {}), config.get("data", {})
    root, file = train.get("data_root") or "?", data.get("file") or "?"
    n = data.get("n") or {}
    where = f"{file} in {root}"
    if is_official(train.get("size"), data.get("md5")):
        return True, f"ChestMNIST (official file): {where}"
    sizes = "/".join(f"{n[s]:,}" for s in D.SPLITS if s in n)
    return False, f"NOT ChestMNIST: {where}" + (f" ({sizes} train/val/test images)" if sizes else "")
