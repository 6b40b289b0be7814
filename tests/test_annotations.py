"""core.runs.annotations: a run's display name, notes and tags, on hand-made run folders (no training)."""
from __future__ import annotations

import json

import pytest

from core.runs import annotations as A
from core.runs import folder as runs_folder
from core.runs import record as runs


@pytest.fixture
def run_dir(tmp_path):
    path = runs.new_run_dir(tmp_path / "runs", 28, "res-cnn")
    runs.write_config(path, {"train": {"size": 28, "model": "res-cnn", "seed": 0}})
    runs.set_status(path, "finished")
    return path


def test_written_annotations_read_back_and_show_in_the_run_list(run_dir):
    saved = A.write(run_dir, "  baseline  ", "first try\nlr too high?", ["b", " a ", "b", ""])
    assert saved == A.Annotations("baseline", "first try\nlr too high?", ("a", "b")) == A.read(run_dir)
    (info,) = runs_folder.list_runs(run_dir.parent)
    assert (info.id, info.display_name, info.tags) == (run_dir.name, "baseline", ("a", "b"))  # the folder stays


@pytest.mark.parametrize("name, notes, tags", [
    ("x" * (A.MAX_NAME + 1), "", []), ("bell\x07", "", []), ("line\u2028break", "", []),
    ("[click](http://evil)", "", []), ("", "n" * (A.MAX_NOTES + 1), []), ("", "nul\x00", []),
    ("", "", ["a,b"]), ("", "", ["t" * (A.MAX_TAG + 1)]), ("", "", [f"t{i}" for i in range(A.MAX_TAGS + 1)]),
    ("", "", ["<img>"])])
def test_what_breaks_a_limit_is_refused_and_nothing_is_written(run_dir, name, notes, tags):
    with pytest.raises(A.AnnotationError):
        A.write(run_dir, name, notes, tags)
    assert not A.path(run_dir).exists()


def test_notes_keep_new_lines_and_tabs(run_dir):
    assert A.write(run_dir, "", "a\n\tb", []).notes == "a\n\tb"


def test_a_concurrent_trainers_files_are_not_touched(run_dir):
    runs.append_metrics(run_dir, {"epoch": 1, "val_auc": 0.5})
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    A.write(run_dir, "renamed", "", [])
    runs.append_metrics(run_dir, {"epoch": 2, "val_auc": 0.6})  # the trainer goes on writing
    assert runs.read_config(run_dir)["train"]["seed"] == 0 and len(runs.read_metrics(run_dir)) == 2
    after = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    assert {n for n in after if after[n] != before.get(n)} == {"metrics.jsonl", A.path(run_dir).name}


def test_a_damaged_file_reads_as_what_still_passes_and_a_folder_that_is_no_run_is_refused(run_dir, tmp_path):
    A.path(run_dir).write_text(json.dumps({"name": 3, "notes": "ok", "tags": ["x", 5]}))
    assert A.read(run_dir) == A.Annotations("", "ok", ("x",))
    A.path(run_dir).write_text("{not json")
    assert A.read(run_dir) == A.Annotations()
    # The largest file write() makes reads back; a planted larger one is ignored, not parsed on every listing.
    largest = A.write(run_dir, "n" * A.MAX_NAME, "\u2603" * A.MAX_NOTES, [f"t{i}" for i in range(A.MAX_TAGS)])
    assert A.read(run_dir) == largest
    A.path(run_dir).write_text(json.dumps({"name": "big"}) + " " * 70_000)  # valid, but no file write() makes
    assert A.read(run_dir) == A.Annotations()
    (tmp_path / "plain").mkdir()
    with pytest.raises(runs.RunError, match="not a run folder"):
        A.write(tmp_path / "plain", "x", "", [])


def test_deleting_a_run_deletes_its_annotations(run_dir):
    A.write(run_dir, "gone soon", "", [])
    assert runs_folder.delete_run(run_dir.parent, run_dir.name) == [] and not run_dir.exists()
