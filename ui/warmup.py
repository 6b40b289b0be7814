"""The app's warm-up: the training stack imported in the background, once per server, while no page runs.

app.py runs every page inside `page_run` and calls `warm_up` last; the Train page's speed measurement
calls `wait_for_warm_up` so that it does not time its steps beside the imports.
"""
from __future__ import annotations

import contextlib
import importlib
import threading
import time
from typing import Iterator

WARM_UP = "warm-up"  # the warm-up thread's name
QUIET_S = 1.0  # the warm-up starts once no page has run for this long (the user is reading)
_page_runs = {"active": 0, "last_end": 0.0}
_page_runs_lock = threading.Lock()


@contextlib.contextmanager
def page_run() -> Iterator[None]:
    """app.py runs each page inside this, so the warm-up knows when a page is running."""
    with _page_runs_lock:
        _page_runs["active"] += 1
    try:
        yield
    finally:
        with _page_runs_lock:
            _page_runs["active"] -= 1
            _page_runs["last_end"] = time.monotonic()


def _import_when_quiet(module: str) -> None:
    # Imports hold the GIL for most of their seconds: started while a page runs, they slow that page's
    # run about twofold (a Train page clicked at once took 2.9 s instead of 1.6 s), so wait for a pause.
    while True:
        with _page_runs_lock:
            quiet = _page_runs["active"] == 0 and time.monotonic() - _page_runs["last_end"] >= QUIET_S
        if quiet:
            break
        time.sleep(0.1)
    importlib.import_module(module)


_warm_up: list[threading.Thread] = []  # the one warm-up thread of this server process, once started


def warm_up() -> threading.Thread:
    """Import the training stack in the background, once per server, after the first page is drawn
    and while no page runs (app.py calls it last): torch, scikit-learn and matplotlib, through the
    study runner (behind the Train page's buttons), take seconds on a small machine, and a first
    visit to Compare or Saliency, or the Train page's speed measurement, then finds them loaded.
    No page needs them to draw its first elements."""
    with _page_runs_lock:
        if not _warm_up:
            _warm_up.append(threading.Thread(target=_import_when_quiet, args=("core.study.runner",), name=WARM_UP,
                                             daemon=True))
            _warm_up[0].start()
    return _warm_up[0]


def wait_for_warm_up() -> None:
    """Return once warm_up's imports are done (at once where none was started: a page run on its own)."""
    if _warm_up:
        _warm_up[0].join()
