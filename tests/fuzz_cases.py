"""The fuzz properties of issue #21, shared by tests/test_fuzz.py (a few examples, in CI) and bench/fuzz.py
(many): damaged run files, config.json values, URL parameters and command-line flags.

Each `*_property(...)` checks one generated case and raises AssertionError when the promise breaks:
no traceback (only a UserError, with a message), no page down, no file outside the run touched, every
other run still listed. `fuzz(prop, strategy, n)` makes a Hypothesis test of `n` examples of it.
"""
from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import UserError
from core.runs import folder as runs_folder
from core.runs import record as runs

# Files a run holds, by what a damage may do to them.
RUN_FILES = ("config.json", "status.json", "metrics.jsonl", "progress.json", "test_metrics.json", "test_scores.npz",
             "val_scores.npz", "study_cost.json", "thresholds.json", ".chestmnist-run", ".lock", "train.log", "STOP")

# JSON values a damaged or hand-edited file may hold: wrong types, huge numbers, NaN and infinities.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6)

damages = st.one_of(
    st.tuples(st.just("truncate"), st.sampled_from(RUN_FILES), st.floats(0, 1)),
    st.tuples(st.just("bytes"), st.sampled_from(RUN_FILES), st.binary(max_size=64)),
    st.tuples(st.just("json"), st.sampled_from(RUN_FILES), json_values),
    st.tuples(st.just("json-field"), st.sampled_from(("config.json", "status.json", "test_metrics.json")),
              st.tuples(st.sampled_from(("train", "format_version", "state", "pid", "host", "started", "auc", "data")),
                        json_values)),
    st.tuples(st.just("row"), st.just("metrics.jsonl"),
              st.dictionaries(st.sampled_from(("epoch", "val_auc", "val_loss", "train_loss", "seconds")), json_values,
                              max_size=4)),
    st.tuples(st.just("symlink"), st.sampled_from(RUN_FILES), st.none()),
    st.tuples(st.just("folder"), st.sampled_from(RUN_FILES), st.none()),
)


def damage_run(run_dir: Path, damage: tuple[str, str, Any], outside: Path) -> None:
    """Apply one generated damage to the file `name` of `run_dir`; links point at `outside`."""
    kind, name, arg = damage
    path = run_dir / name
    if kind in ("symlink", "folder", "bytes", "json") and (path.exists() or path.is_symlink()):
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    if kind == "truncate" and path.is_file():
        data = path.read_bytes()
        path.write_bytes(data[:int(len(data) * arg)])
    elif kind == "bytes":
        path.write_bytes(arg)
    elif kind == "json":
        path.write_text(json.dumps(arg))
    elif kind == "json-field" and path.is_file():
        obj = json.loads(path.read_text())
        obj[arg[0]] = arg[1]
        path.write_text(json.dumps(obj))
    elif kind == "row":
        with open(path, "a") as f:
            f.write(json.dumps(arg) + "\n")
    elif kind == "symlink":
        path.symlink_to(outside)
    elif kind == "folder":
        path.mkdir()


def _only_user_errors(call: Callable[[], Any]) -> Any:
    """call(), where a UserError (a message for the user) is an allowed outcome and anything else is a bug."""
    try:
        return call()
    except UserError:
        return None


def _snapshot(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


def two_runs(template: Path, where: Path) -> tuple[Path, Path, Path]:
    """(damaged-to-be run, healthy run, a file outside them) copied from the finished run `template`."""
    runs_dir = where / "runs"
    damaged, healthy = runs_dir / template.name, runs_dir / (template.name[:-4] + "beef")
    shutil.copytree(template, damaged, symlinks=True)
    shutil.copytree(template, healthy, symlinks=True)
    runs.write_json(healthy / runs.MARKER, {"run_id": healthy.name})
    outside = where / "thesis.txt"
    outside.write_text("four years of work\n")
    return damaged, healthy, outside


def damaged_run_property(template: Path, damage: tuple[str, str, Any]) -> None:
    """Every reader of a run survives one damaged file (a message at worst), writers never follow a link
    out of the run, the other run stays listed, and deleting the damaged run touches nothing outside it."""
    from core.runs.datafile import config_of

    with tempfile.TemporaryDirectory() as tmp:
        damaged, healthy, outside = two_runs(template, Path(tmp))
        damage_run(damaged, damage, outside)
        before = _snapshot(outside)
        listed = {r.id for r in runs_folder.list_runs(damaged.parent)}
        assert healthy.name in listed, listed
        assert runs.read_status(damaged).get("state") in runs.STATES
        runs.read_metrics(damaged)
        runs.read_progress(damaged)
        for read in (lambda: config_of(damaged), lambda: runs.read_test_metrics(damaged),
                     lambda: runs.read_cost_sessions(damaged), lambda: runs.load_scores(damaged, "test"),
                     lambda: runs.load_scores(damaged, "val"), lambda: runs.read_config(damaged)):
            _only_user_errors(read)
        _only_user_errors(lambda: runs.request_stop(damaged))
        _only_user_errors(lambda: runs.clear_stop(damaged))
        with contextlib.suppress(UserError), runs.training_lock(damaged):
            pass
        with contextlib.suppress(UserError, OSError):
            runs_folder.delete_run(damaged.parent, damaged.name)
        assert _snapshot(outside) == before, "a file outside the run was written"
        assert runs.read_status(healthy)["state"] == "finished"


def damaged_run_pages_property(template: Path, data_root: Path, damage: tuple[str, str, Any]) -> None:
    """The Data & runs and Run pages stay up with one damaged file, and still list the healthy run."""
    from streamlit.testing.v1 import AppTest

    pages = Path(__file__).resolve().parents[1] / "pages"
    with tempfile.TemporaryDirectory() as tmp:
        damaged, healthy, outside = two_runs(template, Path(tmp))
        damage_run(damaged, damage, outside)
        for page in ("home.py", "run.py"):
            at = AppTest.from_file(str(pages / page), default_timeout=60)
            at.session_state["data_root"], at.session_state["runs_dir"] = str(data_root), str(damaged.parent)
            if page == "run.py":
                at.query_params["run"] = damaged.name
            at.run()
            assert not at.exception, (page, damage, [e.value for e in at.exception])
            if page == "home.py":
                table = next(df.value for df in at.dataframe if "run" in df.value.columns)
                assert healthy.name in set(table["run"])


def config_value_property(template: Path, field: str, value: Any) -> None:
    """config.json's train section with any value in one field: config_of gives a RunError or a config the
    command line would accept too (so resume and evaluation never crash on a range later)."""
    from core.runs.datafile import config_of

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / template.name
        shutil.copytree(template, run_dir)
        config = json.loads(runs.config_path(run_dir).read_text())
        config["train"][field] = value
        runs.config_path(run_dir).write_text(json.dumps(config))
        cfg = _only_user_errors(lambda: config_of(run_dir))
        if cfg is not None:
            cfg.validate()


# Text a URL may carry: markdown links and images, HTML, autolinks, code spans, and plain text.
url_texts = st.one_of(st.text(max_size=40), st.lists(st.sampled_from(
    ["[", "]", "(", ")", "!", "https://evil.example/x", "www.evil.example", "`", "<img src=x>", "**", "_", "a", "/tmp",
     " ", "\n", "%20", "..", "/"]), max_size=10).map("".join))


def url_property(runs_dir: Path, data_root: Path, params: dict[str, str]) -> None:
    """The Run page with any query parameters stays up and never draws a link or image it did not make."""
    from streamlit.testing.v1 import AppTest

    pages = Path(__file__).resolve().parents[1] / "pages"
    at = AppTest.from_file(str(pages / "run.py"), default_timeout=60)
    at.session_state["data_root"], at.session_state["runs_dir"] = str(data_root), str(runs_dir)
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    shown = [e.value for kind in ("markdown", "warning", "error", "caption", "info", "success")
             for e in getattr(at, kind)]
    assert not any("evil.example" in text for text in shown), shown


NUMERIC_FLAGS = ("--size", "--epochs", "--subset", "--batch-size", "--lr", "--weight-decay", "--pos-weight-clip",
                 "--threshold", "--patience", "--seed")
TEXT_FLAGS = ("--model", "--select-by", "--device", "--amp", "--schedule")
flag_values = st.one_of(st.sampled_from(["nan", "inf", "-inf", "-1", "0", "1e400", "1e-400", "99999999999999999999",
                                         "-99999999999999999999", "3.5", "", " ", "../../etc", "tpu", "1" * 40]),
                        st.integers(-(2**70), 2**70).map(str), st.floats().map(str), st.text(max_size=8))


flags = st.lists(st.tuples(st.sampled_from(NUMERIC_FLAGS + TEXT_FLAGS), flag_values), min_size=1, max_size=4)


def cli_flags_property(flags: list[tuple[str, str]]) -> None:
    """core.train with any flag values and no data: status 2 with a message (never a traceback, never 0),
    and no run folder left behind."""
    from core.train.__main__ import main

    if any(flag == "--device" and value.strip() == "check" for flag, value in flags):
        return  # --device check only prints what torch sees
    with tempfile.TemporaryDirectory() as tmp:
        runs_dir = Path(tmp) / "runs"
        argv = [f"{flag}={value}" for flag, value in flags]
        argv += ["--data-root", str(Path(tmp) / "no-data"), "--runs-dir", str(runs_dir)]
        try:
            code = main(argv)
        except SystemExit as e:  # argparse: a value of the wrong type
            code = e.code
        assert code == 2, (argv, code)
        assert not runs_dir.exists() or not any(runs_dir.iterdir()), "a run folder was left behind"


def fuzz(prop: Callable[..., None], strategies: dict[str, st.SearchStrategy], n: int,
         **fixed: Any) -> Callable[[], None]:
    """A Hypothesis test of `n` examples of `prop`, with `fixed` arguments and the rest drawn from `strategies`."""
    @settings(max_examples=n, deadline=None, database=None, derandomize=False,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(**strategies)
    def run(**drawn: Any) -> None:
        prop(**fixed, **drawn)
    return run

