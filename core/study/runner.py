"""Running the grid: find, resume or prepare each (size, seed) run, train it in a child process, then report.

Each run trains in a child process (`python -m core.study _train-one`) so its peak memory can be
measured on its own: the child's maximum resident set size from the kernel, and on CUDA torch's
peak allocated GPU memory.
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from core.errors import UserError
from core import env
from core.data import chestmnist as D
from core.runs import record as runs
from core.train.recipe import ConfigError, TrainConfig
from core.train.device import resolve_device
from core.evaluate.scoring import evaluate_run
from core.train.loop import prepare_run, print_epoch, print_progress, train
from core.study.common import DEFAULT_REPORTS_DIR, ROOT, STUDY_VERSION, StudyError, StudyStopped, log
from core.study.recipe import (check_sizes, default_name, is_study_run, read_study_file, recipe_diff, recipe_of,
                               run_name, slug, study_file, subset_counts)
from core.study.reading import StudyReport
from core.study.report import build_report


@dataclass
class PlannedRun:
    size: int
    seed: int
    run_dir: Path
    state: str  # state before this invocation did anything
    subset: int | None = None  # training images per epoch (None: the whole split)


def find_existing(study: dict | None, runs_dir: Path, name: str, size: int, seed: int, recipe: dict) -> Path | None:
    """The study's run for (size, seed): the one study.json lists, else one found in `runs_dir` by name."""
    if study:
        for entry in study.get("runs", []):
            path = Path(entry.get("run_dir", ""))
            if entry.get("size") == size and entry.get("seed") == seed and path.is_dir() \
                    and is_study_run(path, name, size, seed, recipe):
                return path
    if not runs_dir.is_dir():
        return None
    found = [d for d in runs_dir.iterdir() if d.is_dir() and not d.is_symlink() and runs.is_run_dir(d)
             and is_study_run(d, name, size, seed, recipe)]
    # Prefer a finished run, then the newest (ids start with the creation time).
    found.sort(key=lambda d: (runs.read_status(d).get("state") == "finished", d.name), reverse=True)
    return found[0].resolve() if found else None


def save_study(out_dir: Path, name: str, base: TrainConfig, plan: list[PlannedRun], previous: dict | None,
                command: list[str] | None) -> None:
    # Keyed by subset too: an images-or-pixels grid has several runs per size and seed.
    entries = {(e["size"], e.get("subset"), e["seed"]): e for e in (previous or {}).get("runs", [])}
    for p in plan:
        entries[(p.size, p.subset, p.seed)] = {"size": p.size, "seed": p.seed, "run_dir": str(p.run_dir)} | (
            {"subset": p.subset} if p.subset else {})
    runs.write_json(study_file(out_dir), {
        "format_version": STUDY_VERSION, "name": name, "recipe": recipe_of(base),
        "execution": {k: getattr(base, k) for k in ("device", "amp", "channels_last", "runs_dir")},
        "sizes": sorted({e["size"] for e in entries.values()}), "seeds": sorted({e["seed"] for e in entries.values()}),
        "runs": sorted(entries.values(), key=lambda e: (e["size"], e.get("subset") or 0, e["seed"])),
        "command": command, "created": (previous or {}).get("created", time.time()), "updated": time.time(),
        # an until-decided study's rounds (core.study.until) outlive the runs it adds each round
        **({"sequential": previous["sequential"]} if (previous or {}).get("sequential") else {}),
    })


def train_child(run_dir: Path, nproc_per_node: int, log: Callable[[str], None]) -> str:
    """Train (or resume) one run in a child process; record its peak memory. Returns the run's state."""
    child_file = runs.cost_child_path(run_dir)
    child_file.unlink(missing_ok=True)
    cmd = ["-m", "core.study", "_train-one", str(run_dir), str(child_file)]
    if nproc_per_node > 1:
        cmd = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc_per_node}", *cmd]
    epochs_before = len(runs.read_metrics(run_dir))
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, *cmd], cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    asked = []

    def ask_stop(*_):  # a cooperative stop: the child finishes its batch and saves a resumable state
        asked.append(True)
        runs.request_stop(run_dir)
    previous = signal.signal(signal.SIGTERM, ask_stop)
    try:
        while True:
            try:
                _, status, usage = os.wait4(proc.pid, 0)
                break
            except KeyboardInterrupt:
                log("interrupt: asking the run to stop after its current batch (it stays resumable)")
                ask_stop()
            except ChildProcessError:  # already reaped
                status, usage = 0, None
                break
    finally:
        signal.signal(signal.SIGTERM, previous)
    proc.returncode = os.waitstatus_to_exitcode(status) if usage is not None else proc.returncode
    child = {}
    if child_file.is_file():
        try:
            child = json.loads(child_file.read_text())
        except (OSError, json.JSONDecodeError):
            pass
        child_file.unlink(missing_ok=True)
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    runs.append_cost_session(run_dir, {
        # ru_maxrss of a waited child is the peak of it and of its waited descendants (the torchrun
        # ranks), so this is the largest single training process, never a sum.
        "peak_rss_mb": usage.ru_maxrss * scale / 2**20 if usage is not None else None,
        "cuda_peak_mb": child.get("cuda_peak_mb"), "cuda_reserved_mb": child.get("cuda_reserved_mb"),
        "device": child.get("device"), "world_size": nproc_per_node, "returncode": proc.returncode,
        "epochs_before": epochs_before, "epochs_after": len(runs.read_metrics(run_dir)),
        "wall_s": time.time() - t0, "ended": time.time(), "isolated": True,
    })
    state = runs.read_status(run_dir).get("state", "failed")
    if asked and state != "stopped":
        # Asked while the child was starting (its train() clears a STOP left from before, so it trained on to the
        # end) or dying of the same Ctrl-C (a "failed" round): the study stops all the same, resumable.
        raise StudyStopped(f"stopped by request while {run_dir.name} was {'finishing' if state == 'finished' else 'starting'}"
                           f" ({state}); run the same command again to resume the study.")
    return state


def settled_state(run_dir: Path, log: Callable[[str], None], poll_s: float = 5.0) -> str:
    """The run's state once no process trains it. Two studies of one recipe in one runs folder share their
    runs: a run the other study is training is waited for, and its result counts here (not as FAILED)."""
    status = runs.read_status(run_dir)
    if status.get("state") == "running":
        log(f"{run_dir.name} is being trained by process {status.get('pid')} (another study?); waiting for it")
    while status.get("state") == "running":
        time.sleep(poll_s)
        status = runs.read_status(run_dir)
    return status.get("state", "failed")


def train_in_process(run_dir: Path, log: Callable[[str], None]) -> str:
    epochs_before, t0 = len(runs.read_metrics(run_dir)), time.time()
    try:
        state = train(run_dir)
    except Exception as e:  # train() marked the run failed; the study goes on with the others
        log(f"{run_dir.name} failed: {type(e).__name__}: {e}")
        state = "failed"
    runs.append_cost_session(run_dir, {
        "peak_rss_mb": None, "cuda_peak_mb": None, "device": None, "world_size": 1, "isolated": False,
        "epochs_before": epochs_before, "epochs_after": len(runs.read_metrics(run_dir)),
        "wall_s": time.time() - t0, "ended": time.time()})
    return state


def _check_same_study(previous: dict | None, name: str, recipe: dict, out_dir: Path) -> None:
    """StudyError when `out_dir` already holds a study with another name or recipe."""
    if previous is None:
        return
    diff = recipe_diff(previous.get("recipe", {}), recipe)
    if previous.get("name") != name or diff:
        what = "; ".join(f"{k}: study {a!r}, now {b!r}" for k, (a, b) in diff.items()) or \
            f"it is study {previous.get('name')!r}"
        raise StudyError(f"{study_file(out_dir)} belongs to a study with other settings ({what}). "
                         f"Use the same settings to continue it, or another --name / --out for a new study.")


def plan_runs(base: TrainConfig, name: str, sizes: list[int], seeds: list[int], previous: dict | None,
              subsets: list[int | None] | None = None) -> list[PlannedRun]:
    """The study's run for every (subset, size, seed): the existing one (study.json's, else found by name
    in the runs folder) or a newly prepared one (core.train.prepare_run). `subsets` (training images per
    epoch, None = all) default to base.subset alone.

    All or nothing: when one run cannot be prepared (bad settings or data at one size), the runs this
    call prepared are removed before the error is raised, so no half-made sweep is left behind."""
    runs_dir = Path(base.runs_dir).expanduser()
    plan: list[PlannedRun] = []
    try:
        for subset, size, seed in ((k, s, x) for k in (subsets or [base.subset]) for s in sizes for x in seeds):
            config = dataclasses.replace(base, size=size, seed=seed, name=run_name(name, seed), subset=subset)
            config.validate()
            found = find_existing(previous, runs_dir, name, size, seed, recipe_of(config))
            state = "new" if found is None else runs.read_status(found).get("state", "failed")
            plan.append(PlannedRun(size, seed, found or prepare_run(config).resolve(), state, subset))
    except BaseException as e:
        for p in plan:
            if p.state == "new":
                runs.discard_new_run(p.run_dir)
        if isinstance(e, (ConfigError, D.DataError, runs.RunError)):
            raise type(e)(f"at {size} px, seed {seed}: {e}") from None
        raise
    return plan


def run_study(base: TrainConfig, sizes: Iterable[int], seeds: Iterable[int], name: str | None = None,
              out_dir: str | Path | None = None, *, skip_missing: bool = False, nproc_per_node: int = 1,
              isolate: bool = True, command: list[str] | None = None, inference_images: int = 512,
              log: Callable[[str], None] = log, subsets: Iterable[float] | None = None,
              **verdicts: Any) -> "StudyReport":
    """Train `base` at every size and seed (re-using, resuming or preparing runs), then build the report.

    `subsets`: fractions of the training split (core.study.recipe.subset_counts) to train every size and
    seed on, an images-or-pixels grid; a seed draws the same, nested images at every size and fraction.

    `base.size`/`base.seed`/`base.name` are ignored (set per run). `isolate` trains each run in a
    child process (needed to measure its peak memory); `nproc_per_node` > 1 launches that child
    with torchrun (DDP). Raises DataError/ConfigError/StudyError before anything is trained when
    the data or settings are wrong, StudyStopped when a run is stopped. Runs that fail are
    reported and left out of the report; the others still are reported.
    """
    study = open_study(base, sizes, name, out_dir, skip_missing=skip_missing, subsets=subsets, log=log)
    plan = plan_grid(study, seeds, nproc_per_node, command, log)
    failed = train_plan(study, plan, nproc_per_node, isolate, log)
    finished = [p.run_dir for p in plan if p not in failed]
    if not finished:
        raise StudyError("Every run of the study failed; see each run's status and log in its folder.")
    return build_report(finished, study.out_dir, device=study.base.device, study_name=study.name,
                        inference_images=inference_images, failed=[str(p.run_dir) for p in failed], command=command,
                        **verdicts)


@dataclass
class Study:
    """A study's checked settings: its recipe (size, seed and name unset), sizes, name and report folder."""

    base: TrainConfig
    sizes: list[int]
    name: str
    out_dir: Path
    subsets: list[int | None] | None = None  # training images per epoch of an images-or-pixels grid (None = all)


def open_study(base: TrainConfig, sizes: Iterable[int], name: str | None = None, out_dir: str | Path | None = None,
               *, skip_missing: bool = False, subsets: Iterable[float] | None = None,
               log: Callable[[str], None] = log) -> Study:
    """Check the data, settings and name of a study (nothing is written); StudyError and the like when wrong."""
    sizes = check_sizes(base.data_root, sizes, skip_missing, log)
    if subsets is not None and base.subset:
        raise StudyError("--subset and --subsets both given: --subsets sets each run's subset.")
    counts = subset_counts(subsets, base.data_root, sizes) if subsets is not None else None
    base = dataclasses.replace(base, size=sizes[0], seed=0, name="")
    base.validate()
    name = slug(name) if name else default_name(base)
    if not name:
        raise StudyError("--name must contain letters or digits.")
    out_dir = Path(out_dir) if out_dir else DEFAULT_REPORTS_DIR / name
    _check_same_study(read_study_file(out_dir), name, recipe_of(base), out_dir)
    return Study(base, sizes, name, out_dir, counts)


def plan_grid(study: Study, seeds: Iterable[int], nproc_per_node: int, command: list[str] | None,
              log: Callable[[str], None] = log) -> list[PlannedRun]:
    """Find or prepare every (size, seed) run of `seeds` and list them in study.json (kept with the earlier ones)."""
    seeds = sorted(set(seeds))
    if not seeds:
        raise StudyError("No seeds given.")
    if nproc_per_node < 1:
        raise StudyError(f"--nproc-per-node {nproc_per_node} must be at least 1.")
    previous = read_study_file(study.out_dir)
    # Find or prepare every run first: bad settings or data fail here, before hours of training.
    plan = plan_runs(study.base, study.name, study.sizes, seeds, previous, study.subsets)
    busy = [p for p in plan if runs.read_status(p.run_dir).get("state") == "running"]
    if busy:
        raise StudyError("Being trained by another process (wait for it or stop it, then run this again): "
                         + ", ".join(f"{p.size} px seed {p.seed} ({p.run_dir}, pid {runs.read_status(p.run_dir).get('pid')})"
                                     for p in busy))
    study.out_dir.mkdir(parents=True, exist_ok=True)
    save_study(study.out_dir, study.name, study.base, plan, previous, command)
    todo = [p for p in plan if p.state != "finished"]
    log(f"{study.name}: {len(plan)} runs ({len(plan) - len(todo)} finished, {len(todo)} to train) -> {study.out_dir}")
    return plan


def train_plan(study: Study, plan: list[PlannedRun], nproc_per_node: int = 1, isolate: bool = True,
               log: Callable[[str], None] = log) -> list[PlannedRun]:
    """Train (or re-use, or resume) every planned run in turn and score it on test; the runs that failed.
    StudyStopped when a run is stopped (Ctrl-C, SIGTERM, a STOP file)."""
    failed = []
    for i, p in enumerate(plan):
        label = f"{p.size} px seed {p.seed}" + (f" subset {p.subset}" if p.subset else "")
        state = settled_state(p.run_dir, log)
        if state != "finished":
            done = len(runs.read_metrics(p.run_dir))
            log(f"[{i + 1}/{len(plan)}] {label}: {'resuming after epoch ' + str(done) if done else 'training'} "
                f"{p.run_dir}")
            state = (train_child(p.run_dir, nproc_per_node, log) if isolate
                     else train_in_process(p.run_dir, log))
            # Refused because another study trains it: that study's result is this one's too.
            state = settled_state(p.run_dir, log) if state in ("running", "failed") else state
            if state == "stopped":  # asked to stop (Ctrl-C, SIGTERM, a STOP file): stop the study too
                raise StudyStopped(f"{label} was stopped after {len(runs.read_metrics(p.run_dir))} epochs "
                                   f"({p.run_dir}); run the same command again to resume the study.")
            if state != "finished":
                # 'interrupted' = the process died without saying so (e.g. killed for memory): the
                # other sizes still run; a later invocation resumes this one from its last epoch.
                err = runs.read_status(p.run_dir).get("error", "")
                log(f"{label} {state}: {err}")
                failed.append(p)
                continue
            runs.clear_stop(p.run_dir)  # a stop asked for after the run had finished
        else:
            log(f"[{i + 1}/{len(plan)}] {label}: finished already, re-used ({p.run_dir.name})")
        if not runs.has_test_metrics(p.run_dir):
            log(f"{label}: evaluating on test")
            evaluate_run(p.run_dir, study.base.device)
    return failed


def train_one_main(argv: list[str]) -> int:
    """`python -m core.study _train-one RUN_DIR CHILD_JSON`: the child that trains one run (maybe under torchrun)."""
    run_dir, child_file = Path(argv[0]), Path(argv[1])
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    lead = env.rank() == 0  # under torchrun only rank 0 reports (as core.train does)
    live = lead and sys.stderr.isatty()  # batch progress redraws one line: terminals only; logs get epochs
    state, code = "failed", 2
    device = None
    try:
        device = resolve_device(runs.read_config(run_dir)["train"]["device"])
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        state = train(run_dir, print_progress if live else None, print_epoch if lead else None)
        code = 0 if state == "finished" else 1
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
    finally:
        if lead:
            info: dict[str, Any] = {"device": str(device) if device else None, "state": state}
            if device is not None and device.type == "cuda":
                info["device"] = f"{device} ({torch.cuda.get_device_name(device)})"
                info["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
                info["cuda_reserved_mb"] = torch.cuda.max_memory_reserved() / 2**20
            runs.write_json(child_file, info)  # atomic: a link in its place is replaced, never written through
    return code
