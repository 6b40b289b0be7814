"""ChestMNIST arrays: find, download, validate, load (read from disk by row where large) and batch them.

Images stay uint8 (N, H, W) as medmnist stores them; batches are built by tensor indexing and
normalised on the fly, so no per-sample PIL work happens in the training loop.

medmnist's own Dataset asserts the official sample count (it breaks on subsets and on other
data in the same layout) and its download needs torchvision, which this stack cannot import;
we use only its INFO table (labels, URLs, MD5s) and read the npz files ourselves.
"""
from __future__ import annotations

import errno
import hashlib
import math
import os
import shutil
import sys
import threading
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Literal

import numpy as np
import torch
import torch.nn.functional as F
from medmnist.info import DEFAULT_ROOT, INFO

from core.files import DiskFullError, atomic_write

_INFO = INFO["chestmnist"]
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


class DataError(ValueError):
    """Data is missing or malformed; the message says which file and what to do."""


# The bundled demo set (667 real NIH radiographs at every size, NOT ChestMNIST; see demo/README.md).
DEMO_ROOT = Path(__file__).resolve().parents[1] / "demo"
DEMO_WORD = "demo"


def default_root() -> Path:
    """`CHESTMNIST_ROOT` if set, else medmnist's own default (~/.medmnist)."""
    return resolve_root(os.environ.get("CHESTMNIST_ROOT") or DEFAULT_ROOT)


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
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
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
        if isinstance(e, PermissionError):
            raise DataError(f"Cannot write {part}: permission denied. Choose a writable --data-root.") from None
        raise DataError(f"Could not download {npz_name(size)} from {url} ({e}). {offline_instructions(root, size)}") from None
    if file_md5(part) != md5:
        part.unlink(missing_ok=True)
        raise DataError(f"The downloaded {npz_name(size)} does not match its MD5 {md5}; it was deleted. Try again.")
    os.replace(part, dest)
    return dest


def _npy_header(f: BinaryIO, where: str, advice: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) from the .npy header at `f`'s position, reading nothing past it."""
    version = np.lib.format.read_magic(f)
    read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if read_header is None:
        raise DataError(f"{where} is a .npy array of format {version}, which this reader does not know; {advice}")
    return read_header(f)


class NpyRows:
    """Read-only rows of an uncompressed .npy file, read on demand (seek + readinto under a lock,
    one read per run of consecutive rows).

    Behaves like the (N, ...) array for what the project does with images: `len`, `shape`,
    `dtype`, `ndim`, and indexing the first axis by an int, a slice, an integer array or a
    boolean mask (always returning a fresh in-memory array). Unlike np.memmap, rows that were
    read do not stay mapped into the process: a shuffled epoch over the 224 px train split
    touches every page of the file, and with a memmap all of them count toward the process's
    RSS (several times this reader's peak: bench/memory.py, docs/performance.md). The kernel's page
    cache still caches the file, outside the process and reclaimable.
    A trailing channel axis of 1, (N, H, W, 1), is dropped: the bytes are the same.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        with open(self.path, "rb") as f:
            shape, fortran, dtype = _npy_header(f, str(self.path), "delete it so it is rebuilt.")
            self.offset = f.tell()
        if fortran or dtype.hasobject or not shape:
            raise DataError(f"{self.path} is not a C-ordered numeric .npy array; delete it so it is rebuilt.")
        if len(shape) == 4 and shape[-1] == 1:
            shape = shape[:3]
        self.shape: tuple[int, ...] = tuple(shape)
        self.dtype = dtype
        self.row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        expected = self.offset + self.shape[0] * self.row_bytes
        if self.path.stat().st_size != expected:
            raise DataError(f"{self.path} holds {self.path.stat().st_size:,} bytes, not the {expected:,} its header "
                            "promises; it is truncated or corrupt. Delete it and load again to rebuild it.")
        self._file = open(self.path, "rb", buffering=0)
        self._lock = threading.Lock()  # seek + read must not interleave between threads

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"NpyRows({str(self.path)!r}, shape={self.shape}, dtype={self.dtype})"

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        n = self.shape[0]
        if isinstance(key, (int, np.integer)):
            if not -n <= key < n:
                raise IndexError(f"index {key} is out of bounds for {n} rows")
            out = self._rows(np.array([key % n]))[0]
        elif isinstance(key, slice):
            out = self._rows(np.arange(*key.indices(n)))
        else:
            idx = np.asarray(key)
            if idx.dtype == bool:
                if idx.shape != (n,):
                    raise IndexError(f"boolean index of shape {idx.shape} does not match {n} rows")
                idx = np.flatnonzero(idx)
            elif idx.dtype.kind not in "iu" or idx.ndim != 1:
                raise IndexError(f"rows are indexed by an int, a slice, or a 1-d integer or boolean array, not {key!r}")
            elif idx.size and not (-n <= idx.min() and idx.max() < n):
                raise IndexError(f"an index in {key!r} is out of bounds for {n} rows")
            out = self._rows(idx % n)
        return out

    def _rows(self, idx: np.ndarray) -> np.ndarray:
        out = np.empty((len(idx), *self.shape[1:]), dtype=self.dtype)
        flat = out.view(np.uint8).reshape(len(idx), self.row_bytes)
        # One read per run of consecutive rows: sorted batches and slices need few system calls.
        starts = np.flatnonzero(np.diff(idx, prepend=-2) != 1)
        ends = np.append(starts[1:], len(idx))
        with self._lock:
            for i, j in zip(starts.tolist(), ends.tolist()):
                self._read_into(memoryview(flat[i:j]).cast("B"), self.offset + int(idx[i]) * self.row_bytes)
        return out

    def _read_into(self, view: memoryview, offset: int) -> None:
        self._file.seek(offset)
        done = 0
        while done < len(view):  # a single read returns at most ~2 GB on Linux
            got = self._file.readinto(view[done:])
            if not got:
                raise DataError(f"{self.path} ended early; it was truncated while in use. Load the data again.")
            done += got

    def close(self) -> None:
        self._file.close()

    def __del__(self) -> None:
        if hasattr(self, "_file"):
            self._file.close()


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


def cache_root() -> Path:
    """`CHESTMNIST_CACHE` or ~/.cache/chestmnist-explorer: never inside a (possibly shared) data root."""
    return Path(os.environ.get("CHESTMNIST_CACHE") or Path.home() / ".cache" / "chestmnist-explorer").expanduser()


def _cache_dir(path: Path) -> Path:
    key = hashlib.md5(str(path.resolve()).encode()).hexdigest()[:12]
    return cache_root() / f"{path.stem}-{key}"


def _cache_target(path: Path, key: str) -> Path:
    """Where member `key` of the npz `path` is unpacked: keyed by the npz's size and mtime, so a
    replaced npz is not served from a stale cache."""
    stat = path.stat()
    return _cache_dir(path) / f"{key}.{stat.st_size}-{int(stat.st_mtime)}.npy"


def _npy_cache(path: Path, key: str) -> Path:
    """Extract one npz member to an uncompressed .npy in the cache (once) and return its path.

    Streams member to disk so the 3.9 GB train split at 224 px never sits in RAM.
    """
    target = _cache_target(path, key)
    cache = target.parent
    if target.is_file():
        return target
    try:
        cache.mkdir(parents=True, exist_ok=True)
        for old in cache.glob(f"{key}.*.npy"):
            old.unlink()
        with zipfile.ZipFile(path) as z, z.open(f"{key}.npy") as src:
            atomic_write(target, lambda dst: shutil.copyfileobj(src, dst, 1 << 24))
    except DiskFullError:
        raise DataError(f"Disk full while unpacking the images of {path.name} into the cache {cache}. Free space "
                        "there, or set CHESTMNIST_CACHE to a folder on a disk with room for them.") from None
    except PermissionError:
        # The npz itself was read a moment ago by np.load, so this is the cache.
        raise DataError(f"The image cache folder {cache} cannot be written by this user (permission denied). "
                        "Set CHESTMNIST_CACHE to a writable folder, or fix that folder's permissions.") from None
    return target


def _cached_rows(path: Path, key: str) -> NpyRows:
    """NpyRows over the .npy cache of one npz member; a damaged cache (it is derived data) is rebuilt once."""
    cached = _npy_cache(path, key)
    try:
        return NpyRows(cached)
    except DataError:
        cached.unlink()
        return NpyRows(_npy_cache(path, key))


def _available_memory() -> int | None:
    """Bytes the kernel can hand out without swapping (MemAvailable), None where it does not say."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _free_disk(folder: Path) -> int | None:
    """Free bytes on the disk that holds `folder` (or would, once created); None where unknown."""
    for p in (folder, *folder.parents):
        if p.exists():
            try:
                return shutil.disk_usage(p).free
            except OSError:
                return None
    return None


def _gb(n: int) -> str:
    return f"{n / 2**30:,.1f} GB" if n >= 2**30 else f"{n / 2**20:,.1f} MB"


def _check_declared_sizes(path: Path, z: zipfile.ZipFile, keys: list[str], in_memory: list[str],
                          to_cache: list[str]) -> None:
    """Refuse, before anything is allocated or unpacked, an npz whose arrays cannot fit.

    Each member's .npy header declares its shape and dtype; the bytes that implies must be what the
    member holds (a corrupt or crafted header can ask for terabytes), the arrays kept in memory
    must fit in available memory, and images unpacked to the cache must fit on its disk.
    """
    declared = {}
    for key in keys:
        info = z.getinfo(f"{key}.npy")
        with z.open(info) as f:
            shape, _, dtype = _npy_header(f, f"{path} ({key})", "download or import the file again.")
            header = f.tell()
        declared[key] = math.prod(shape) * dtype.itemsize
        if header + declared[key] != info.file_size:
            raise DataError(
                f"{path} is corrupt: its {key} array declares shape {tuple(shape)} of {dtype} ({declared[key]:,} "
                f"bytes) but holds {info.file_size - header:,} bytes. Download or import it again.")
    need, free = sum(declared[k] for k in in_memory), _available_memory()
    if free is not None and need > free:
        raise DataError(
            f"Loading {path} needs {_gb(need)} of memory for its arrays, but only {_gb(free)} is available. "
            "Close other programs, or use a machine with more memory.")
    cache = _cache_dir(path)
    need = sum(declared[k] for k in to_cache if not _cache_target(path, k).is_file())
    free = _free_disk(cache)
    if free is not None and need > free:
        raise DataError(
            f"Disk full: unpacking the images of {path} needs {_gb(need)} in the cache {cache}, but that disk has "
            f"{_gb(free)} free. Free space there, or set CHESTMNIST_CACHE to a folder on a disk with more room.")


def _read_npz(path: Path, images: Literal["memory", "disk", "skip"]) -> dict[str, np.ndarray | NpyRows]:
    """The npz's arrays, checked for medmnist's keys; images "memory" (arrays), "disk" (NpyRows
    over the .npy cache) or "skip" (labels only)."""
    if images not in ("memory", "disk", "skip"):
        raise ValueError(f"images must be 'memory', 'disk' or 'skip', not {images!r}")
    keys = [f"{s}_{k}" for s in SPLITS for k in ("images", "labels")]
    try:
        with np.load(path) as z:
            missing = [k for k in keys if k not in z.files]
            if missing:
                raise DataError(
                    f"{path} is not in ChestMNIST layout: it lacks {', '.join(missing)} (it has {', '.join(z.files) or 'nothing'}). "
                    "Use an official file or make one with `python -m core.data import-folder`.")
            in_memory = [k for k in keys if images == "memory" or k.endswith("labels")]
            to_cache = [f"{s}_images" for s in SPLITS if images == "disk"]
            _check_declared_sizes(path, z.zip, keys, in_memory, to_cache)
            out = {k: z[k] for k in in_memory}
        for key in to_cache:
            out[key] = _cached_rows(path, key)
        return out
    except DataError:
        raise
    except PermissionError as e:
        where = e.filename or path
        raise DataError(f"{where} cannot be read by this user (permission denied); the file itself may be fine. "
                        f"Make it readable (e.g. `chmod a+r {where}`) or run as the user who owns it.") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"{path} could not be read ({type(e).__name__}: {e}); it may be truncated or corrupt. "
                        "Delete it and download or import it again.") from None


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
    arrays = _read_npz(path, "skip")
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
    arrays = _read_npz(path, "disk" if on_disk else "memory")
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
    """Sorted seeded random sample of k of n indices (all of them when k is None or >= n)."""
    if k is None or k >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def prevalence(labels: np.ndarray) -> np.ndarray:
    """Fraction of positives per class, (C,)."""
    return labels.mean(axis=0) if len(labels) else np.zeros(labels.shape[1])


def pos_weight(labels: np.ndarray, clip: float) -> torch.Tensor | None:
    """BCE pos_weight = negatives / positives per class, clipped at `clip`; None when clip is 0.

    A class with no positives gets the clip value (its loss term is all-negative anyway).
    """
    if clip <= 0:
        return None
    pos = labels.sum(axis=0).astype(np.float64)
    neg = len(labels) - pos
    w = np.where(pos > 0, neg / np.maximum(pos, 1), clip)
    return torch.tensor(np.minimum(w, clip), dtype=torch.float32)


def to_tensor(images: np.ndarray, device: torch.device | str = "cpu", channels_last: bool = False) -> torch.Tensor:
    """uint8 (N, H, W) -> float (N, 1, H, W) in [-1, 1] (medmnist's Normalize(0.5, 0.5)).

    The uint8 -> float conversion happens on the device so only a quarter of the bytes move.
    """
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device, non_blocking=True).unsqueeze(1)
    x = x.float().div_(127.5).sub_(1.0)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def augment(x: torch.Tensor, generator: torch.Generator, max_shift: float = 0.06,
            max_degrees: float = 5.0) -> torch.Tensor:
    """Small random shifts and rotations of a normalised batch, one affine grid-sample for all.

    No horizontal flip: the heart sits on the left of a chest X-ray, a flip makes anatomy wrong.
    """
    n = x.shape[0]
    r = torch.rand(n, 3, generator=generator) * 2 - 1
    angle = r[:, 0] * math.radians(max_degrees)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos, -sin, r[:, 1] * max_shift * 2], 1),
                         torch.stack([sin, cos, r[:, 2] * max_shift * 2], 1)], 1).to(x.device, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # Padding with the border keeps the black film edge instead of inventing -1 bands.
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def batches(images: np.ndarray, labels: np.ndarray, indices: np.ndarray, batch_size: int, *,
            device: torch.device | str = "cpu", shuffle: bool = False, generator: torch.Generator | None = None,
            do_augment: bool = False, channels_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (x float (B,1,H,W) normalised, y float (B,14)) over `indices` of the arrays.

    Shuffling permutes `indices` with `generator` (seeded per epoch by the trainer, so a resumed
    run sees the same order). Indices within a batch are sorted so reads from disk are local.
    """
    order = indices
    if shuffle:
        order = indices[torch.randperm(len(indices), generator=generator).numpy()]
    for start in range(0, len(order), batch_size):
        idx = np.sort(order[start:start + batch_size])
        x = to_tensor(images[idx], device, channels_last)
        if do_augment:
            x = augment(x, generator)
        yield x, torch.from_numpy(labels[idx].astype(np.float32)).to(device, non_blocking=True)


if __name__ == "__main__":
    # The command line lives in core.data_cli, beside the importer it dispatches to (which imports this module).
    from core.data_cli import main
    sys.exit(main())
