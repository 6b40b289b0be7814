"""Atomic file writes: the one way every module writes a file another process may be reading."""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import BinaryIO, Callable


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> None:
    """Call `write` on a binary temp file beside `path`, flush it to disk, then rename it over `path`,
    so a reader (the app polling a run, a second process) never sees half a file and a crash
    leaves the old file. The file gets the usual permissions (umask), not mkstemp's 0600, which
    would hide a shared data root or runs folder from its other users."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
