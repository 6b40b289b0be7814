"""What a person says about a run: its display name, notes and tags, in the run's annotations.json.

The one owner of that file (core.runs.record owns the files training writes; the two never write
each other's). A file of its own, so editing a run's notes never rewrites the run's config or status
while a trainer may be writing them; every write is atomic (core.runs.record.write_json), so a
reader sees the old annotations or the new, never half. The display name is shown before the run's size
and model in the app's run pickers and Compare's legend: the folder and its id stay.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

from core.runs import record as runs

_FILE = "annotations.json"
MAX_NAME, MAX_NOTES, MAX_TAG, MAX_TAGS = 80, 5000, 32, 20
# Larger than any file write() makes (notes of MAX_NOTES characters, each \uXXXX-escaped, are 30 KB): read on
# every run listing (the Train page's live view, every 2 s), a planted larger file is not parsed but ignored.
_MAX_BYTES = 64 * 1024
# Control characters (C0, DEL, C1) and the Unicode line and paragraph separators: a name or tag holding one
# could break a table row or hide text; notes may keep their newlines and tabs.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NOTES_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
# A name or tag is shown inside the app's markdown (run labels); a run folder may come from anyone (a tar file),
# so what would draw a link, an image or HTML there is refused. Notes are only ever shown as plain text.
_MARKUP = re.compile(r"[\[\]<>`]|://|www\.", re.IGNORECASE)


class AnnotationError(runs.RunError):
    """A display name, note or tag that cannot be saved; the message says which limit it broke."""


@dataclass(frozen=True)
class Annotations:
    """A run's display name ("" for none), notes and tags (sorted, each once)."""

    name: str = ""
    notes: str = ""
    tags: tuple[str, ...] = ()


def file_names() -> set[str]:
    """The run-folder file this module owns (core.runs.folder deletes it with the run's other files)."""
    return {_FILE}


def path(run_dir: str | Path) -> Path:
    return Path(run_dir) / _FILE


def clean(name: str, notes: str, tags: list[str] | tuple[str, ...]) -> Annotations:
    """The annotations to save, trimmed and checked: AnnotationError naming the field that breaks a limit."""
    name, notes = name.strip(), notes.strip()
    tags = sorted({t.strip() for t in tags if t.strip()})
    if len(name) > MAX_NAME or _CONTROL.search(name) or _MARKUP.search(name):
        raise AnnotationError(f"A run's name is at most {MAX_NAME} characters, without control characters, "
                              "brackets [ ] < >, backticks or web addresses.")
    if len(notes) > MAX_NOTES or _NOTES_CONTROL.search(notes):
        raise AnnotationError(f"Notes are at most {MAX_NOTES} characters, with no control characters but new lines.")
    if len(tags) > MAX_TAGS or any(len(t) > MAX_TAG or _CONTROL.search(t) or _MARKUP.search(t) or "," in t
                                   for t in tags):
        raise AnnotationError(f"At most {MAX_TAGS} tags of at most {MAX_TAG} characters each, without commas, "
                              "control characters, brackets [ ] < >, backticks or web addresses.")
    return Annotations(name, notes, tuple(tags))


def read(run_dir: str | Path) -> Annotations:
    """The run's annotations; none when there is no file. A damaged file (hand-edited, wrong types) reads as
    the fields that still pass clean(), so a list of runs never fails on it."""
    file = path(run_dir)
    if not file.is_file() or file.is_symlink() or file.stat().st_size > _MAX_BYTES:
        return Annotations()
    try:
        raw = runs.read_json(file)
    except runs.RunError:
        return Annotations()
    raw = raw if isinstance(raw, dict) else {}
    fields = {k: raw.get(k) for k in ("name", "notes")}
    tags = raw.get("tags") if isinstance(raw.get("tags"), list) else []
    try:
        return clean(*(v if isinstance(v, str) else "" for v in fields.values()), [t for t in tags if isinstance(t, str)])
    except AnnotationError:
        return Annotations()


def write(run_dir: str | Path, name: str, notes: str, tags: list[str] | tuple[str, ...]) -> Annotations:
    """Check and save the run's display name, notes and tags (atomically); returns what was saved.

    RunError when `run_dir` is not a run folder (no config or status: a typo'd or deleted run), or the file's
    place holds a symlink (run folders travel as tar files; a planted link must not redirect the write).
    """
    saved = clean(name, notes, tags)
    run_dir = Path(run_dir)
    if not runs.holds_run_files(run_dir):
        raise runs.RunError(f"{run_dir} is not a run folder; nothing is saved there.")
    if path(run_dir).is_symlink():
        raise runs.RunError(f"{path(run_dir)} is a symbolic link; refusing to write through it. Remove the link.")
    runs.write_json(path(run_dir), {"format_version": 1, **asdict(saved), "tags": list(saved.tags)})
    return saved
