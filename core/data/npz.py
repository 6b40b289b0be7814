"""medmnist-layout npz files, read safely: each member's .npy header is checked before anything is
allocated, and large image arrays are unpacked once to an uncompressed .npy cache and read by row.

core.data decides what a ChestMNIST file must hold; this module only reads what a file declares.
"""
from __future__ import annotations

import errno
import hashlib
import math
import os
import shutil
import threading
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np

from core.errors import UserError
from core import env
from core.files import DiskFullError, atomic_write


class DataError(UserError):
    """Data is missing or malformed; the message says which file and what to do."""

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




def cache_root() -> Path:
    """`CHESTMNIST_CACHE` or ~/.cache/chestmnist-explorer: never inside a (possibly shared) data root."""
    return env.cache_dir()


def _cache_dir(path: Path) -> Path:
    key = hashlib.md5(os.fsencode(path.resolve())).hexdigest()[:12]  # fsencode: a path of non-UTF-8 bytes too
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


# Images one split may hold: over four times NIH ChestX-ray14 (112,120 images), every ChestMNIST split included.
MAX_IMAGES = 500_000


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
        if shape and shape[0] > MAX_IMAGES:  # a zip bomb: a few KB of zeros that unpack to gigabytes
            raise DataError(f"{path} declares {shape[0]:,} images in {key}, more than any chest X-ray set holds "
                            f"(at most {MAX_IMAGES:,} here; NIH ChestX-ray14 has 112,120), so it is not loaded.")
    need, free = sum(declared[k] for k in in_memory), _available_memory()
    if free is not None and need > free:
        raise DataError(
            f"Loading {path} needs {_gb(need)} of memory for its arrays, but only {_gb(free)} is available. "
            "Close other programs, or use a machine with more memory.")
    cache = _cache_dir(path)
    need = sum(declared[k] for k in to_cache if not _cache_target(path, k).is_file())
    try:  # made now (unpacking needs it next): a read-only disk reports 0 bytes free and is not a full one
        if need:
            cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            why = (e.strerror or str(e)).lower()
            raise DataError(f"The image cache folder {cache} cannot be created ({why}). Set CHESTMNIST_CACHE to a "
                            "writable folder, or fix that folder's permissions.") from None
    free = _free_disk(cache)
    if free is not None and need > free:
        raise DataError(
            f"Disk full: unpacking the images of {path} needs {_gb(need)} in the cache {cache}, but that disk has "
            f"{_gb(free)} free. Free space there, or set CHESTMNIST_CACHE to a folder on a disk with more room.")


def read_npz(path: Path, splits: tuple[str, ...], images: Literal["memory", "disk", "skip"]) -> dict[str, np.ndarray | NpyRows]:
    """The npz's `{split}_images` and `{split}_labels` arrays, checked for presence and declared size; images "memory" (arrays), "disk" (NpyRows
    over the .npy cache) or "skip" (labels only)."""
    if images not in ("memory", "disk", "skip"):
        raise ValueError(f"images must be 'memory', 'disk' or 'skip', not {images!r}")
    keys = [f"{s}_{k}" for s in splits for k in ("images", "labels")]
    try:
        with np.load(path) as z:
            missing = [k for k in keys if k not in z.files]
            if missing:
                raise DataError(
                    f"{path} is not in ChestMNIST layout: it lacks {', '.join(missing)} (it has {', '.join(z.files) or 'nothing'}). "
                    "Use an official file or make one with `python -m core.data import-folder`.")
            in_memory = [k for k in keys if images == "memory" or k.endswith("labels")]
            to_cache = [f"{s}_images" for s in splits if images == "disk"]
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
