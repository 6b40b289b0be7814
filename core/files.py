"""Atomic file writes, the one way every module writes a file another process may be reading, and
the conversion of numpy values to strict JSON that every JSON file here goes through."""
from __future__ import annotations

import errno
import math
import os
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np

from core.errors import UserError

# atomic_write's temp files: `.<name>.<32 hex>.tmp` beside the file they will replace.
_TEMP = re.compile(r"^\..+\.[0-9a-f]{32}\.tmp$")

# Quota exhaustion reads the same to the user as a full disk.
_FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(OSError, UserError):
    """No space was left to write a file; the message names the file. Still an OSError (errno
    ENOSPC or EDQUOT), so callers that handle any failed write handle this one too."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


def _disk_full(e: BaseException | None) -> OSError | None:
    """The ENOSPC/EDQUOT error behind `e`, if any: torch.save reports one as a RuntimeError
    ("unexpected pos ...") raised while handling it."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError) and e.errno in _FULL:
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> None:
    """Call `write` on a binary temp file beside `path`, flush it to disk, then rename it over `path`,
    so a reader (the app polling a run, a second process) never sees half a file and a crash
    leaves the old file. The file gets the usual permissions (umask), not mkstemp's 0600, which
    would hide a shared data root or runs folder from its other users.

    Raises DiskFullError, naming `path`, when the disk (or quota) is full; the old file stays.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")  # a name _TEMP matches
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        full = _disk_full(e) if isinstance(e, Exception) and not isinstance(e, DiskFullError) else None
        if full is not None:
            raise DiskFullError(full.errno, f"Disk full (no space left on device) while writing {path}. "
                                            "Free space on that disk, or choose a folder on another one, "
                                            "and try again.") from e
        raise


def temp_files(folder: str | os.PathLike[str]) -> list[Path]:
    """atomic_write's temp files left in `folder` by a process killed mid-write (regular files only)."""
    folder = Path(folder)
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return [folder / n for n in names if _TEMP.match(n) and (folder / n).is_file() and not (folder / n).is_symlink()]


def to_jsonable(obj: Any) -> Any:
    """Convert numpy values and containers into plain JSON types, NaN/inf becoming None.

    The result passes ``json.dumps(..., allow_nan=False)``: dicts (keys made
    str), lists/tuples/arrays become lists, numpy scalars become Python
    bool/int/float.
    """
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return [to_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    return obj
