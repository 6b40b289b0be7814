"""ChestMNIST data: where it lives, what a valid file holds, downloading and loading it.

medmnist's own Dataset asserts the official sample count (it breaks on subsets and on other
data in the same layout) and its download needs torchvision, which this stack cannot import;
we use only its INFO table (labels, URLs, MD5s) and read the npz files ourselves (core.data.npz).
Batches for training are made by core.data.batching. This module imports neither torch nor medmnist's
package, so the app's first page paints without them.
"""
from __future__ import annotations

import errno
import hashlib
import importlib.util
import math
import os
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from core import env
from core.files import atomic_write
from core.data.npz import DataError, read_npz


def _medmnist_info():
    """medmnist's info module, loaded on its own: `import medmnist.info` first runs the package's
    __init__, which imports torch and scikit-learn (about 2 s) for the table of labels, URLs and MD5s."""
    if "medmnist.info" in sys.modules:
        return sys.modules["medmnist.info"]
    package = importlib.util.find_spec("medmnist")
    if package is None or not package.submodule_search_locations:
        raise ImportError("medmnist is not installed; run `python -m pip install -r requirements.txt`.")
    spec = importlib.util.spec_from_file_location(
        "_chestmnist_medmnist_info", Path(package.submodule_search_locations[0]) / "info.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_MEDMNIST = _medmnist_info()
DEFAULT_ROOT = _MEDMNIST.DEFAULT_ROOT
_INFO = _MEDMNIST.INFO["chestmnist"]
CLASS_NAMES: tuple[str, ...] = tuple(_INFO["label"][str(i)] for i in range(len(_INFO["label"])))
N_CLASSES = len(CLASS_NAMES)
SIZES: tuple[int, ...] = (28, 64, 128, 224)
SPLITS: tuple[str, ...] = ("train", "val", "test")
OFFICIAL_COUNTS: dict[str, int] = dict(_INFO["n_samples"])
ZENODO_RECORD = "https://zenodo.org/records/10519652"
# From this size up a split's images are read by row from an uncompressed .npy cache instead of
# being held in RAM (the 224 px train split alone is 3.9 GB): npz members are compressed, and
# np.load ignores mmap_mode for them.
ON_DISK_MIN_SIZE = 128


# The bundled demo set (667 real NIH radiographs at every size, NOT ChestMNIST; see demo/README.md).
DEMO_ROOT = Path(__file__).resolve().parents[2] / "demo"
DEMO_WORD = "demo"


def default_root() -> Path:
    """`CHESTMNIST_ROOT` if set, else medmnist's own default (~/.medmnist)."""
    return resolve_root(env.data_root() or DEFAULT_ROOT)


def resolve_root(text: str | Path | None) -> Path:
    """The data folder a user typed (`--data-root`, `CHESTMNIST_ROOT`, the app's sidebar).

    The word `demo` names the bundled demo folder wherever the process runs (`./demo` is a plain
    relative path); empty means default_root(); anything else is a path with `~` expanded.
    """
    text = str(text or "").strip()
    if not text:
        return default_root()
    return DEMO_ROOT if text == DEMO_WORD else Path(text).expanduser()


DATA_ROOT_HELP = "data folder; 'demo' = the bundled demo set (not ChestMNIST); default: $CHESTMNIST_ROOT, else ~/.medmnist"


def data_root_arg(text: str) -> str:
    """argparse type of every `--data-root`: the folder as the string TrainConfig keeps, so a run
    records the demo's real path rather than `demo` relative to wherever the command ran."""
    return str(resolve_root(text))


def is_demo(root: str | Path) -> bool:
    """Whether `root` is the bundled demo folder (which is not ChestMNIST)."""
    return resolve_root(root).resolve() == DEMO_ROOT.resolve()


def npz_name(size: int) -> str:
    """medmnist's file naming: `chestmnist.npz` at 28 px, `chestmnist_{size}.npz` otherwise."""
    check_size(size)
    return "chestmnist.npz" if size == 28 else f"chestmnist_{size}.npz"


def check_size(size: int) -> None:
    if size not in SIZES:
        raise DataError(f"Image size {size} is not a ChestMNIST size; choose one of {', '.join(map(str, SIZES))}.")


def npz_path(root: str | Path, size: int) -> Path:
    return Path(root).expanduser() / npz_name(size)


def available_sizes(root: str | Path) -> list[int]:
    """Sizes whose npz file exists under `root` (not validated; `load` does that)."""
    return [s for s in SIZES if npz_path(root, s).is_file()]


def approx_mb(size: int) -> int:
    """Upper estimate of a size's file in MB: the raw uint8 images and labels of all splits.

    Shown before a download starts; the npz on Zenodo is at most this large (its members may be
    compressed), and its exact length is taken from the server once the download begins.
    """
    n = sum(OFFICIAL_COUNTS.values())
    return math.ceil(n * (size * size + N_CLASSES) / 2**20)


def download_url(size: int) -> tuple[str, str]:
    """(url, md5) of the official file from medmnist's INFO."""
    suffix = "" if size == 28 else f"_{size}"
    return _INFO[f"url{suffix}"], _INFO[f"MD5{suffix}"]


def offline_instructions(root: str | Path, size: int) -> str:
    return (
        f"Download {npz_name(size)} (up to {approx_mb(size):,} MB) from the Zenodo record {ZENODO_RECORD} "
        f"on a machine with internet access and place it in {Path(root).expanduser().resolve()}/ "
        f"(or point --data-root / CHESTMNIST_ROOT at the folder that holds it). To use your own images, "
        f"convert them with `python -m core.data import-folder IMAGES_DIR LABELS.csv --size {size} --out DIR`."
    )


def file_md5(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def download(root: str | Path, size: int, progress: Callable[[int, int], None] | None = None,
             timeout: float = 30.0) -> Path:
    """Fetch the official npz for `size` into `root`, checking its MD5; returns the file's path.

    Writes to a `.part` file and renames only after the checksum matches, so an interrupted or
    corrupt download never looks like data. `progress(done_bytes, total_bytes)` is called per chunk.
    """
    root = Path(root).expanduser()
    dest = npz_path(root, size)
    url, md5 = download_url(size)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"Cannot create the data folder {root}: {e.strerror}. Choose a writable --data-root.") from None
    part = dest.with_suffix(".npz.part")
    # O_NOFOLLOW: a link planted at the .part name would otherwise have the download written through it.
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, os.fdopen(os.open(part, flags, 0o666), "wb") as out:
            total = int(response.headers.get("Content-Length") or approx_mb(size) * 2**20)
            done = 0
            while block := response.read(1 << 20):
                out.write(block)
                done += len(block)
                if progress:
                    progress(done, total)
    except BaseException as e:
        part.unlink(missing_ok=True)  # also when the app's script is stopped mid-download
        if not isinstance(e, OSError):
            raise
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DataError(f"Disk full while downloading {npz_name(size)} (up to {approx_mb(size):,} MB) to {part}; "
                            "the partial file was deleted. Free space there or choose another --data-root.") from None
        if e.errno == errno.ELOOP:
            raise DataError(f"{part} was a symbolic link; it was removed, not written through. Try again.") from None
        if isinstance(e, PermissionError):
            raise DataError(f"Cannot write {part}: permission denied. Choose a writable --data-root.") from None
        raise DataError(f"Could not download {npz_name(size)} from {url} ({e}). {offline_instructions(root, size)}") from None
    if file_md5(part) != md5:
        part.unlink(missing_ok=True)
        raise DataError(f"The downloaded {npz_name(size)} does not match its MD5 {md5}; it was deleted. Try again.")
    os.replace(part, dest)
    return dest


@dataclass
class Split:
    """One split: `images` uint8 (N, H, W), in RAM or NpyRows read from disk; `labels` uint8 (N, 14)."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class ChestData:
    root: Path
    size: int
    path: Path
    train: Split
    val: Split
    test: Split

    def split(self, name: str) -> Split:
        return getattr(self, name)



def _validate(path: Path, size: int, arrays: dict[str, np.ndarray]) -> None:
    for s in SPLITS:
        images, labels = arrays[f"{s}_images"], arrays[f"{s}_labels"]
        where = f"{path} ({s} split)"
        if len(images) == 0:
            raise DataError(f"{where} is empty; every split needs images. Re-import with more images.")
        if images.ndim == 4 and images.shape[-1] == 1:
            arrays[f"{s}_images"] = images = images[..., 0]
        if images.ndim != 3 or images.shape[1:] != (size, size):
            raise DataError(f"{where}: images have shape {images.shape}, expected (N, {size}, {size}) for the "
                            f"{size} px file. Is this the right file for this size?")
        if images.dtype != np.uint8:
            raise DataError(f"{where}: images are {images.dtype}, expected uint8 (0-255) as medmnist stores them.")
        if labels.ndim != 2 or labels.shape != (len(images), N_CLASSES):
            raise DataError(f"{where}: labels have shape {labels.shape}, expected ({len(images)}, {N_CLASSES}): "
                            f"one 0/1 column per finding ({', '.join(CLASS_NAMES)}).")
        if not np.isin(labels, (0, 1)).all():
            raise DataError(f"{where}: labels must be 0 or 1, found values {np.unique(labels)[:10].tolist()}.")
        arrays[f"{s}_labels"] = labels.astype(np.uint8, copy=False)


def split_counts(root: str | Path, size: int) -> dict[str, int]:
    """Images per split in the `size` px file under `root`, counted from its small label arrays (no
    image is read, nothing else is checked): what an estimate needs before anything is unpacked.
    Raises DataError when the file is missing, unreadable or lacks medmnist's keys."""
    path = npz_path(root, size)
    if not path.is_file():
        raise DataError(f"No {size} px data: {path} is missing. {offline_instructions(root, size)}")
    arrays = read_npz(path, SPLITS, "skip")
    return {s: len(arrays[f"{s}_labels"]) for s in SPLITS}


def split_counts_or_official(root: str | Path, size: int) -> tuple[dict[str, int], bool]:
    """(split_counts of the `size` px file under `root`, True), or (official ChestMNIST's split
    sizes, False) where there is no such file: what a run there would train on, or would once the
    file is downloaded. An unreadable file is a DataError, not a reason to assume other data."""
    if not npz_path(root, size).is_file():
        return dict(OFFICIAL_COUNTS), False
    return split_counts(root, size), True


def load(root: str | Path | None = None, size: int = 28, on_disk: bool | None = None) -> ChestData:
    """Load and validate all three splits of the ChestMNIST npz for `size` under `root`.

    `on_disk=None` keeps images on disk (NpyRows over a .npy cache) from size 128 up. Raises
    DataError (with what to do) when the folder or file is missing, unreadable, or not in
    medmnist's layout.
    """
    check_size(size)
    root = Path(root).expanduser() if root is not None else default_root()
    if not root.is_dir():
        raise DataError(f"The data folder {root} does not exist or is not a folder. "
                        f"Create it, or point --data-root / CHESTMNIST_ROOT at the folder with {npz_name(size)}.")
    if not os.access(root, os.R_OK | os.X_OK):
        raise DataError(f"The data folder {root} is not readable by this user; fix its permissions or choose another.")
    path = npz_path(root, size)
    if not path.is_file():
        present = available_sizes(root)
        have = f" This folder has sizes {present}." if present else ""
        raise DataError(f"No {size} px data: {path} is missing.{have} {offline_instructions(root, size)}")
    if on_disk is None:
        on_disk = size >= ON_DISK_MIN_SIZE
    arrays = read_npz(path, SPLITS, "disk" if on_disk else "memory")
    _validate(path, size, arrays)
    splits = {s: Split(arrays[f"{s}_images"], arrays[f"{s}_labels"]) for s in SPLITS}
    return ChestData(root=root, size=size, path=path, **splits)


def write_npz(root: str | Path, size: int, splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    """Write {split: (images uint8 (N,size,size), labels uint8 (N,14))} as medmnist's npz for `size`."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = npz_path(root, size)
    arrays = {f"{s}_{k}": a for s, pair in splits.items() for k, a in zip(("images", "labels"), pair)}
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays))
    return path


def subset_indices(n: int, k: int | None, seed: int) -> np.ndarray:
    """Sorted seeded random sample of k of n indices (all of them when k is None or >= n).

    The first k of one seeded permutation of all n: for a seed, a smaller subset lies inside every
    larger one, and the sample depends on nothing but (n, k, seed), so every size's file (same
    images, same order) gives the same images. `Generator.choice` without replacement did neither
    across k (Floyd's algorithm below n = 10,000), so an images-or-pixels grid compared other images."""
    if k is None or k >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).permutation(n)[:k])


def prevalence(labels: np.ndarray) -> np.ndarray:
    """Fraction of positives per class, (C,)."""
    return labels.mean(axis=0) if len(labels) else np.zeros(labels.shape[1])
