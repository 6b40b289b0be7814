"""Which process is which: a pid plus its start time, and whether anyone holds a lock file.

A pid alone does not name a process: once it exits, the kernel may give its pid to another. The
pid with the process's start time does, and an flock the process holds vanishes when it dies.
core.runs uses these to tell a live trainer from a dead one.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path


def start_time(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot, /proc/<pid>/stat field 22); None without /proc.

    With the pid it names one process: a pid reused by a later process has a later start time.
    """
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def alive(pid: int, started: int | None = None) -> bool:
    """Whether process `pid` runs, and is the one that started at `started` (when both are known)."""
    if pid <= 0:  # os.kill would probe a process group, or every process
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError, ValueError):
        return False
    except PermissionError:
        pass
    # A killed child stays a zombie until its parent reaps it; it is not running.
    try:
        if Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[-1][:1] == "Z":
            return False
    except OSError:
        return True
    now = start_time(pid)
    return started is None or now is None or now == started


def lock_free(path: Path) -> bool:
    """Whether no process holds an flock on the file at `path` (a non-blocking probe, released at once).

    False when it cannot be told (no lock file, no permission): the pid check decides then.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # closing drops the probe's lock
