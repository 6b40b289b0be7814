"""The resolution trade-off study: one recipe at several image sizes and seeds, one report.

    python -m core.study --sizes 28 64 128 224 --epochs 30 --seeds 3
    python -m core.study --sizes 28 64 --epochs 2 --data-root demo
    python -m core.study --sizes 28 64 128 224 --epochs 30 --nproc-per-node 4    # each run on 4 GPUs (DDP)
    python -m core.study --report-only --out reports/<study-name>                 # rebuild the report only

Every size and seed gets its own ordinary run folder (core.train), named `study-<name>-s<seed>`,
and the report folder (default `reports/<name>/`) keeps `study.json`, the list of those run
folders. Running the same command again re-uses finished runs, resumes stopped or interrupted
ones and trains only what is missing, then rebuilds the report: report.md, summary.json (every
number), CSV tables and PNG figures.

Each run trains in a child process so its peak memory can be measured on its own (the child's
maximum resident set size from the kernel, and on CUDA torch's peak allocated GPU memory).

From Python (a notebook): `load_study(report_dir)` opens a finished report,
`build_report(run_dirs, out_dir)` builds one from any finished runs, `list_studies()` finds them.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd
import torch

from core import data as D
from core import metrics, runs
from core.models import fold_batchnorm
from core.train import AMP_HELP, ConfigError, TrainConfig, format_seconds, prepare_run, resolve_device

STUDY_VERSION = 1
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REPORTS_DIR = Path("reports")
# How a run is executed, not what it learns: a study may be resumed on another device.
EXECUTION_FIELDS = ("size", "seed", "name", "runs_dir", "device", "amp", "channels_last")
VAL_KEYS = ("val_auc", "val_acc", "val_macro_f1", "val_micro_f1", "val_loss")
TEST_KEYS = ("test_auc", "test_acc", "test_macro_f1")
COST_KEYS = ("params", "gflops", "seconds_per_epoch", "train_images_per_s", "inference_ms_per_image",
             "peak_rss_mb", "cuda_peak_mb", "data_mb")
FIGURES = {"curves": "curves.png", "auc_vs_cost": "auc_vs_cost.png", "per_class_auc": "per_class_auc.png"}


class StudyError(ValueError):
    """The study cannot go on as asked; the message says why and what to do."""


class StudyStopped(RuntimeError):
    """A run was stopped (Ctrl-C, SIGTERM, STOP file); re-running the same command resumes it."""


def _log(msg: str) -> None:
    print(f"study: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- naming and matching

def _slug(text: str, limit: int = 60) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-_")[:limit]


def _recipe(train: dict) -> dict:
    """A run's train settings without size, seed and execution details: what a study's runs share."""
    return {k: v for k, v in train.items() if k not in EXECUTION_FIELDS}


def recipe_of(config: TrainConfig) -> dict:
    """The settings every run of a study shares (TrainConfig minus size, seed and execution details)."""
    return _recipe(dataclasses.asdict(config)) | {"data_root": str(Path(config.data_root).expanduser().resolve())}


def default_name(config: TrainConfig) -> str:
    """Readable and recipe-specific: `<data folder>-<model>-e<epochs>[-sub<K>]-<hash of the recipe>`."""
    recipe = recipe_of(config)
    digest = hashlib.sha1(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:4]
    parts = [Path(recipe["data_root"]).name.lstrip(".") or "data", config.model, f"e{config.epochs}"]
    if config.subset:
        parts.append(f"sub{config.subset}")
    return _slug("-".join(parts), 50) + f"-{digest}"


def run_name(study: str, seed: int) -> str:
    """TrainConfig.name of the study's run for `seed` (size is a field of its own)."""
    return f"study-{study}-s{seed}"


def _recipe_diff(want: dict, train_cfg: dict) -> dict:
    return {k: (v, train_cfg.get(k)) for k, v in want.items() if train_cfg.get(k) != v}


def _is_study_run(run_dir: Path, study: str, size: int, seed: int, recipe: dict) -> bool:
    try:
        train_cfg = runs.read_config(run_dir)["train"]
    except runs.RunError:
        return False
    return (train_cfg.get("name") == run_name(study, seed) and train_cfg.get("size") == size
            and train_cfg.get("seed") == seed and not _recipe_diff(recipe, train_cfg))


def _study_file(out_dir: Path) -> Path:
    return Path(out_dir) / "study.json"


def read_study_file(out_dir: str | Path) -> dict | None:
    path = _study_file(Path(out_dir))
    if not path.is_file():
        return None
    try:
        study = runs.read_json(path)
    except runs.RunError as e:
        raise StudyError(f"{e} Delete it to start the study's bookkeeping afresh (run folders are kept).") from None
    if not isinstance(study, dict) or "runs" not in study:
        raise StudyError(f"{path} is not a study file of this tool.")
    return study


def check_sizes(data_root: str | Path, sizes: Iterable[int], skip_missing: bool = False,
                log: Callable[[str], None] = _log) -> list[int]:
    """The requested sizes that have data under `data_root`, sorted.

    A missing size is a DataError naming the files, what the folder has and how to get the rest,
    unless `skip_missing` (then it is left out with a message). Nothing is written.
    """
    sizes = sorted(set(sizes))
    if not sizes:
        raise StudyError("No sizes given; pass e.g. --sizes 28 64 128 224.")
    for size in sizes:
        D.check_size(size)
    root = Path(data_root).expanduser()
    if not root.is_dir():
        D.load(root, sizes[0])  # raises the DataError that explains the missing folder
    missing = [s for s in sizes if not D.npz_path(root, s).is_file()]
    if not missing:
        return sizes
    present = [s for s in sizes if s not in missing]
    have = D.available_sizes(root)
    files = ", ".join(D.npz_name(s) for s in missing)
    if not skip_missing or not present:
        hint = (f" Or pass --skip-missing to run the study on {present} only." if present else "")
        raise D.DataError(f"Sizes {missing} have no data in {root.resolve()} (missing {files}; the folder has "
                          f"{have or 'no ChestMNIST sizes'}). {D.offline_instructions(root, missing[0])}{hint}")
    log(f"skipping sizes {missing}: {files} not in {root} (--skip-missing)")
    return present


# --------------------------------------------------------------------------- running

@dataclass
class PlannedRun:
    size: int
    seed: int
    run_dir: Path
    state: str  # state before this invocation did anything


def _find_existing(study: dict | None, runs_dir: Path, name: str, size: int, seed: int, recipe: dict) -> Path | None:
    """The study's run for (size, seed): the one study.json lists, else one found in `runs_dir` by name."""
    if study:
        for entry in study.get("runs", []):
            path = Path(entry.get("run_dir", ""))
            if entry.get("size") == size and entry.get("seed") == seed and path.is_dir() \
                    and _is_study_run(path, name, size, seed, recipe):
                return path
    if not runs_dir.is_dir():
        return None
    found = [d for d in runs_dir.iterdir() if d.is_dir() and not d.is_symlink() and (d / "config.json").is_file()
             and _is_study_run(d, name, size, seed, recipe)]
    # Prefer a finished run, then the newest (ids start with the creation time).
    found.sort(key=lambda d: (runs.read_status(d).get("state") == "finished", d.name), reverse=True)
    return found[0].resolve() if found else None


def _save_study(out_dir: Path, name: str, base: TrainConfig, plan: list[PlannedRun], previous: dict | None,
                command: list[str] | None) -> None:
    entries = {(e["size"], e["seed"]): e for e in (previous or {}).get("runs", [])}
    for p in plan:
        entries[(p.size, p.seed)] = {"size": p.size, "seed": p.seed, "run_dir": str(p.run_dir)}
    runs.write_json(_study_file(out_dir), {
        "format_version": STUDY_VERSION, "name": name, "recipe": recipe_of(base),
        "execution": {k: getattr(base, k) for k in ("device", "amp", "channels_last", "runs_dir")},
        "sizes": sorted({p.size for p in plan}), "seeds": sorted({p.seed for p in plan}),
        "runs": sorted(entries.values(), key=lambda e: (e["size"], e["seed"])),
        "command": command, "created": (previous or {}).get("created", time.time()), "updated": time.time(),
    })


COST_FILE = "study_cost.json"  # in the run folder: any report on the run (or the app) can show it


def _record_session(run_dir: Path, session: dict) -> None:
    """Append one training session's measurements (peak memory, wall time) to the run's cost log."""
    path = Path(run_dir) / COST_FILE
    sessions = runs.read_json(path)["sessions"] if path.is_file() else []
    runs.write_json(path, {"sessions": sessions + [session]})


def _train_child(run_dir: Path, nproc_per_node: int, log: Callable[[str], None]) -> str:
    """Train (or resume) one run in a child process; record its peak memory. Returns the run's state."""
    child_file = run_dir / f".{COST_FILE}.child"
    child_file.unlink(missing_ok=True)
    cmd = ["-m", "core.study", "_train-one", str(run_dir), str(child_file)]
    if nproc_per_node > 1:
        cmd = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc_per_node}", *cmd]
    epochs_before = len(runs.read_metrics(run_dir))
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, *cmd], cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def ask_stop(*_):  # a cooperative stop: the child finishes its batch and saves a resumable state
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
    _record_session(run_dir, {
        # ru_maxrss of a waited child is the peak of it and of its waited descendants (the torchrun
        # ranks), so this is the largest single training process, never a sum.
        "peak_rss_mb": usage.ru_maxrss * scale / 2**20 if usage is not None else None,
        "cuda_peak_mb": child.get("cuda_peak_mb"), "cuda_reserved_mb": child.get("cuda_reserved_mb"),
        "device": child.get("device"), "world_size": nproc_per_node, "returncode": proc.returncode,
        "epochs_before": epochs_before, "epochs_after": len(runs.read_metrics(run_dir)),
        "wall_s": time.time() - t0, "ended": time.time(), "isolated": True,
    })
    return runs.read_status(run_dir).get("state", "failed")


def _train_in_process(run_dir: Path, log: Callable[[str], None]) -> str:
    from core.train import train
    epochs_before, t0 = len(runs.read_metrics(run_dir)), time.time()
    try:
        state = train(run_dir)
    except Exception as e:  # train() marked the run failed; the study goes on with the others
        log(f"{run_dir.name} failed: {type(e).__name__}: {e}")
        state = "failed"
    _record_session(run_dir, {
        "peak_rss_mb": None, "cuda_peak_mb": None, "device": None, "world_size": 1, "isolated": False,
        "epochs_before": epochs_before, "epochs_after": len(runs.read_metrics(run_dir)),
        "wall_s": time.time() - t0, "ended": time.time()})
    return state


def run_study(base: TrainConfig, sizes: Iterable[int], seeds: Iterable[int], name: str | None = None,
              out_dir: str | Path | None = None, *, skip_missing: bool = False, nproc_per_node: int = 1,
              isolate: bool = True, command: list[str] | None = None, inference_images: int = 512,
              log: Callable[[str], None] = _log) -> "StudyReport":
    """Train `base` at every size and seed (re-using, resuming or preparing runs), then build the report.

    `base.size`/`base.seed`/`base.name` are ignored (set per run). `isolate` trains each run in a
    child process (needed to measure its peak memory); `nproc_per_node` > 1 launches that child
    with torchrun (DDP). Raises DataError/ConfigError/StudyError before anything is trained when
    the data or settings are wrong, StudyStopped when a run is stopped. Runs that fail are
    reported and left out of the report; the others still are reported.
    """
    seeds = sorted(set(seeds))
    if not seeds:
        raise StudyError("No seeds given.")
    if nproc_per_node < 1:
        raise StudyError(f"--nproc-per-node {nproc_per_node} must be at least 1.")
    sizes = check_sizes(base.data_root, sizes, skip_missing, log)
    base = dataclasses.replace(base, size=sizes[0], seed=seeds[0], name="")
    base.validate()
    name = _slug(name) if name else default_name(base)
    if not name:
        raise StudyError("--name must contain letters or digits.")
    out_dir = Path(out_dir) if out_dir else DEFAULT_REPORTS_DIR / name
    recipe = recipe_of(base)
    previous = read_study_file(out_dir)
    if previous is not None:
        diff = _recipe_diff(previous.get("recipe", {}), recipe)
        if previous.get("name") != name or diff:
            what = "; ".join(f"{k}: study {a!r}, now {b!r}" for k, (a, b) in diff.items()) or \
                f"it is study {previous.get('name')!r}"
            raise StudyError(f"{_study_file(out_dir)} belongs to a study with other settings ({what}). "
                             f"Use the same settings to continue it, or another --name / --out for a new study.")
    runs_dir = Path(base.runs_dir).expanduser()

    # Find or prepare every run first: bad settings or data fail here, before hours of training.
    plan: list[PlannedRun] = []
    for size in sizes:
        for seed in seeds:
            config = dataclasses.replace(base, size=size, seed=seed, name=run_name(name, seed))
            config.validate()
            found = _find_existing(previous, runs_dir, name, size, seed, recipe)
            if found is None:
                found = prepare_run(config).resolve()
                plan.append(PlannedRun(size, seed, found, "new"))
            else:
                plan.append(PlannedRun(size, seed, found, runs.read_status(found).get("state", "failed")))
    busy = [p for p in plan if runs.read_status(p.run_dir).get("state") == "running"]
    if busy:
        raise StudyError("Being trained by another process (wait for it or stop it, then run this again): "
                         + ", ".join(f"{p.size} px seed {p.seed} ({p.run_dir}, pid {runs.read_status(p.run_dir).get('pid')})"
                                     for p in busy))
    out_dir.mkdir(parents=True, exist_ok=True)
    _save_study(out_dir, name, base, plan, previous, command)
    todo = [p for p in plan if p.state != "finished"]
    log(f"{name}: {len(plan)} runs ({len(plan) - len(todo)} finished, {len(todo)} to train) -> {out_dir}")

    failed = []
    for i, p in enumerate(plan):
        label = f"{p.size} px seed {p.seed}"
        state = runs.read_status(p.run_dir).get("state")
        if state == "running":
            raise StudyError(f"{p.run_dir} ({label}) is being trained by process "
                             f"{runs.read_status(p.run_dir).get('pid')}; wait for it or stop it, then run this again.")
        if state != "finished":
            done = len(runs.read_metrics(p.run_dir))
            log(f"[{i + 1}/{len(plan)}] {label}: {'resuming after epoch ' + str(done) if done else 'training'} "
                f"{p.run_dir}")
            state = (_train_child(p.run_dir, nproc_per_node, log) if isolate
                     else _train_in_process(p.run_dir, log))
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
        if not (p.run_dir / "test_metrics.json").is_file():
            from core.evaluate import evaluate_run
            log(f"{label}: evaluating on test")
            evaluate_run(p.run_dir, base.device)
    finished = [p.run_dir for p in plan if p not in failed]
    if not finished:
        raise StudyError("Every run of the study failed; see the runs' status.json / train.log.")
    report = build_report(finished, out_dir, device=base.device, study_name=name, inference_images=inference_images,
                          failed=[str(p.run_dir) for p in failed], command=command)
    return report


def _train_one_main(argv: list[str]) -> int:
    """`python -m core.study _train-one RUN_DIR CHILD_JSON`: the child that trains one run (maybe under torchrun)."""
    from core import train as T

    run_dir, child_file = Path(argv[0]), Path(argv[1])
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    lead = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 reports (as core.train does)
    live = lead and sys.stderr.isatty()  # batch progress redraws one line: terminals only; logs get epochs
    state, code = "failed", 2
    device = None
    try:
        device = resolve_device(runs.read_config(run_dir)["train"]["device"])
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        state = T.train(run_dir, T._print_progress if live else None, T._print_epoch if lead else None)
        code = 0 if state == "finished" else 1
    except (ConfigError, D.DataError, runs.RunError) as e:
        print(f"error: {e}", file=sys.stderr)
    finally:
        if lead:
            info: dict[str, Any] = {"device": str(device) if device else None, "state": state}
            if device is not None and device.type == "cuda":
                info["device"] = f"{device} ({torch.cuda.get_device_name(device)})"
                info["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
                info["cuda_reserved_mb"] = torch.cuda.max_memory_reserved() / 2**20
            child_file.write_text(json.dumps(info))
    return code


# --------------------------------------------------------------------------- measuring

def measure_inference(run_dir: str | Path, data: D.ChestData, device: str | torch.device = "auto",
                      n_images: int = 512, batch_size: int = 256, repeats: int = 3) -> dict:
    """Inference time of the run's best model on up to `n_images` test images, ms per image.

    Batches of `batch_size` through core.evaluate.predict (the app's and evaluation's path: fp32,
    batch norm folded), one warm-up pass, then the median of `repeats` timed passes, with the
    run's channels_last setting on `device`.
    """
    from core.evaluate import predict
    from core.train import _config_of

    cfg = _config_of(Path(run_dir))
    dev = resolve_device(device)
    model = fold_batchnorm(runs.load_model(run_dir, "best", dev))  # as predict does, once
    images = np.ascontiguousarray(data.test.images[:n_images])
    kw = dict(batch_size=batch_size, device=dev, channels_last=cfg.channels_last, fold_bn=False)
    predict(model, images[:batch_size], **kw)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        predict(model, images, **kw)  # copies scores back to the CPU, so CUDA work is finished
        times.append(time.perf_counter() - t)
    return {"inference_ms_per_image": float(np.median(times)) / len(images) * 1000, "inference_images": len(images),
            "inference_batch": batch_size, "inference_device": str(dev), "inference_threads": torch.get_num_threads()}


def data_provenance(size: int, n: dict, md5: str) -> dict:
    """Whether a run's npz is the official ChestMNIST: MD5 against medmnist's record, split sizes."""
    official_md5 = D.download_url(size)[1]
    counts = [n.get(s) for s in D.SPLITS]
    official_counts = [D.OFFICIAL_COUNTS[s] for s in D.SPLITS]
    if md5 == official_md5:
        return {"official": True, "verdict": "official ChestMNIST (MD5 matches medmnist's record)"}
    if counts == official_counts:
        return {"official": False, "verdict": "same split sizes as the official ChestMNIST, but its MD5 differs "
                                               "from medmnist's record (a re-export or a modified file)"}
    fmt = "/".join(f"{c:,}" for c in counts)
    return {"official": False, "verdict": f"NOT the official ChestMNIST: train/val/test {fmt} images, the official "
                                          f"release has {'/'.join(f'{c:,}' for c in official_counts)}"}


def _readme_title(root: str | Path) -> str | None:
    path = Path(root) / "README.md"
    try:
        for line in path.read_text(errors="replace").splitlines()[:20]:
            if line.startswith("#"):
                return line.lstrip("#").strip()
    except OSError:
        pass
    return None


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _best_row(rows: list[dict]) -> dict:
    """The metrics row of the checkpoint the run kept (best.pt): the last row's best_epoch."""
    best_epoch = rows[-1].get("best_epoch") or 0
    for r in rows:
        if r["epoch"] == best_epoch:
            return r
    return rows[0]


def _run_record(run_dir: Path) -> dict:
    """Every number the report shows about one finished run, from its files (and the study's cost log)."""
    config = runs.read_config(run_dir)
    tc = config["train"]
    rows = runs.read_metrics(run_dir)
    if not rows:
        raise runs.RunError(f"{run_dir} has no metrics.jsonl rows; it never finished an epoch.")
    test = runs.read_json(run_dir / "test_metrics.json")
    best = _best_row(rows)
    scores, labels = runs.load_scores(run_dir, "test")
    acc_lo, acc_hi = metrics.medmnist_acc_ci(labels, scores, n_boot=int(test.get("n_boot") or 1000))
    auc_ci = test.get("auc_ci") or [None, None]
    cost_file = run_dir / COST_FILE
    sessions = runs.read_json(cost_file)["sessions"] if cost_file.is_file() else []
    isolated = [s for s in sessions if s.get("isolated") and s.get("peak_rss_mb") is not None]
    rss = max((s["peak_rss_mb"] for s in isolated), default=None)
    cuda = max((s["cuda_peak_mb"] for s in sessions if s.get("cuda_peak_mb") is not None), default=None)
    if isolated:
        memory_note = f"peak RSS of the training process, max over {len(isolated)} session(s)"
    elif sessions:
        memory_note = "trained inside the study process: peak memory not measured per size"
    else:
        memory_note = "trained outside this study's runner: peak memory not measured"
    n = config["data"]["n"]
    size = tc["size"]
    return {
        "size": size, "seed": tc["seed"], "run_id": run_dir.name, "run_dir": str(run_dir.resolve()),
        "state": runs.read_status(run_dir).get("state"), "model": tc["model"],
        "epochs": tc["epochs"], "epochs_done": len(rows), "best_epoch": best["epoch"],
        **{k: best.get(k) for k in VAL_KEYS},
        "test_auc": test.get("auc"), "test_auc_ci_low": auc_ci[0], "test_auc_ci_high": auc_ci[1],
        "test_acc": test.get("acc"), "test_acc_ci_low": acc_lo, "test_acc_ci_high": acc_hi,
        "test_macro_f1": test.get("macro_f1"), "test_n": test.get("n_samples"),
        "ci_level": test.get("ci_level", 0.95), "n_boot": test.get("n_boot"),
        "test_auc_per_class": {c: v.get("auc") for c, v in (test.get("per_class") or {}).items()},
        "test_positives": {c: v.get("support") for c, v in (test.get("per_class") or {}).items()},
        "auc_undefined_classes": test.get("auc_undefined_classes") or [],
        "params": config["model"]["params"], "flops_per_image": config["model"]["flops_per_image"],
        "gflops": config["model"]["flops_per_image"] / 1e9,
        # Wall time of the whole epoch (training + validation) and training throughput, per epoch row.
        "seconds_per_epoch": float(np.median([r["seconds"] for r in rows])),
        "train_images_per_s": float(np.median([r["images_per_s"] for r in rows])),
        "peak_rss_mb": rss, "cuda_peak_mb": cuda, "memory_note": memory_note,
        "world_size": max((s.get("world_size") or 1 for s in sessions), default=1),
        "device": config["machine"]["device"], "train_devices": sorted({s["device"] for s in sessions if s.get("device")}),
        "machine": config["machine"], "versions": config.get("versions", {}),
        "data_root": tc["data_root"], "data_file": config["data"]["file"], "data_md5": config["data"]["md5"],
        "data_n": n, "data_mb": sum(n.values()) * size * size / 2**20, "subset": tc.get("subset"),
        "curves": {k: [r.get(k) for r in rows] for k in ("epoch", "val_auc", "train_loss", "val_loss", "train_auc")},
        "train_config": tc,
    }


def _mean_std(values: list) -> tuple[float | None, float | None]:
    v = np.array([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if not len(v):
        return None, None
    return float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else None)


def _size_rows(records: list[dict]) -> list[dict]:
    out = []
    for size in sorted({r["size"] for r in records}):
        rs = [r for r in records if r["size"] == size]
        row: dict[str, Any] = {"size": size, "seeds": [r["seed"] for r in rs], "n_seeds": len(rs),
                               "best_epoch": [r["best_epoch"] for r in rs], "epochs_done": [r["epochs_done"] for r in rs]}
        for key in (*VAL_KEYS, *TEST_KEYS, *COST_KEYS):
            mean, std = _mean_std([r.get(key) for r in rs])
            row[key], row[f"{key}_std"] = mean, std
        if len(rs) == 1:  # one seed: its bootstrap intervals are the uncertainty shown
            for key in ("test_auc_ci_low", "test_auc_ci_high", "test_acc_ci_low", "test_acc_ci_high"):
                row[key] = rs[0][key]
        classes = list(rs[0]["test_auc_per_class"])
        row["test_auc_per_class"] = {c: _mean_std([r["test_auc_per_class"].get(c) for r in rs])[0] for c in classes}
        row["auc_undefined_classes"] = rs[0]["auc_undefined_classes"]
        row["test_positives"] = rs[0]["test_positives"]
        row["device"] = ", ".join(sorted({r["device"] for r in rs}))
        row["world_size"] = max(r["world_size"] for r in rs)
        row["memory_note"] = "; ".join(sorted({r["memory_note"] for r in rs}))
        out.append(row)
    return out


# --------------------------------------------------------------------------- tables

def _f(v, digits: int = 3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.{digits}f}"


def _ms(row: dict, key: str, digits: int = 3) -> str:
    """`mean ± std` over seeds, or the single value."""
    if row.get(key) is None:
        return "n/a"
    std = row.get(f"{key}_std")
    return f"{row[key]:.{digits}f} ± {std:.{digits}f}" if std is not None else f"{row[key]:.{digits}f}"


def _with_ci(row: dict, key: str) -> str:
    if row.get(key) is None:
        return "n/a"
    if row.get("n_seeds", 1) > 1:
        return f"{_ms(row, key)} (n={row['n_seeds']})"
    lo, hi = row.get(f"{key}_ci_low"), row.get(f"{key}_ci_high")
    return f"{row[key]:.3f} [{_f(lo)}, {_f(hi)}]"


def _num(v, fmt: str) -> str:
    return "n/a" if v is None else format(v, fmt)


def _multi_seed(summary: dict) -> bool:
    """Whether some size has several seeds: its tables then show mean ± std, not bootstrap CIs."""
    return any(r["n_seeds"] > 1 for r in summary["sizes"])


def format_tables(summary: dict) -> dict[str, pd.DataFrame]:
    """The report's three tables as display-ready DataFrames (the same text report.md shows)."""
    sizes = summary["sizes"]
    multi = _multi_seed(summary)
    val = pd.DataFrame([{
        "size": f"{r['size']} px", "seeds": r["n_seeds"], "best epoch": ", ".join(map(str, r["best_epoch"])),
        "val AUC": _ms(r, "val_auc"), "val ACC": _ms(r, "val_acc"), "val macro-F1": _ms(r, "val_macro_f1"),
        "val micro-F1": _ms(r, "val_micro_f1"), "val loss": _ms(r, "val_loss")} for r in sizes])
    ci = "mean ± std over seeds" if multi else f"{int(100 * summary.get('ci_level', 0.95))}% bootstrap CI"
    test = pd.DataFrame([{
        "size": f"{r['size']} px", f"test AUC ({ci})": _with_ci(r, "test_auc"),
        f"test ACC ({ci})": _with_ci(r, "test_acc"), "test macro-F1 (val-tuned thresholds)": _ms(r, "test_macro_f1"),
        "AUC undefined": ", ".join(u["name"] for u in r["auc_undefined_classes"]) or "-"} for r in sizes])
    cuda = any(r.get("cuda_peak_mb") is not None for r in sizes)
    cost = pd.DataFrame([{
        "size": f"{r['size']} px", "params": _num(r["params"], ",.0f"), "GFLOPs/image": _f(r["gflops"], 4),
        "s/epoch": _ms(r, "seconds_per_epoch", 1), "train img/s": _ms(r, "train_images_per_s", 0),
        "inference ms/image": _f(r.get("inference_ms_per_image"), 3),
        "peak RSS MB": _num(r.get("peak_rss_mb"), ",.0f"),
        **({"peak GPU MB": _num(r.get("cuda_peak_mb"), ",.0f")} if cuda else {}),
        "dataset MB": _num(r.get("data_mb"), ",.0f"),
        "device": r["device"] + (f" x{r['world_size']}" if r.get("world_size", 1) > 1 else "")} for r in sizes])
    return {"Table 1: validation at the best epoch": val, "Test": test, "Cost": cost}


def _markdown_table(df: pd.DataFrame) -> str:
    cells = [list(map(str, df.columns))] + [[str(v) for v in row] for row in df.itertuples(index=False)]
    lines = ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
    lines.insert(1, "|" + "|".join(" --- " for _ in df.columns) + "|")
    return "\n".join(lines)


# --------------------------------------------------------------------------- figures

def _figures(summary: dict, records: list[dict], out_dir: Path) -> dict[str, str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["size"] for r in summary["sizes"]]
    colors = {s: plt.get_cmap("viridis")(i / max(1, len(sizes) - 1) * 0.85) for i, s in enumerate(sizes)}
    made = {}
    source = summary["data"]["label"]

    # 1. Curves: validation AUC and losses per epoch.
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
    for r in records:
        c, first = colors[r["size"]], r["seed"] == min(x["seed"] for x in records if x["size"] == r["size"])
        ep = r["curves"]["epoch"]
        label = f"{r['size']} px" if first else None
        for ax, key in zip(axes, ("val_auc", "train_loss", "val_loss")):
            y = [np.nan if v is None else v for v in r["curves"][key]]
            ax.plot(ep, y, "-o", color=c, ms=3, lw=1.4, alpha=0.9, label=label)
        i = ep.index(r["best_epoch"]) if r["best_epoch"] in ep else None
        if i is not None and r["curves"]["val_auc"][i] is not None:
            axes[0].plot(ep[i], r["curves"]["val_auc"][i], "*", color=c, ms=12, mec="black", mew=0.6)
    for ax, title in zip(axes, ("validation AUC (medmnist; star = kept checkpoint)", "train loss (weighted BCE)",
                                "validation loss (weighted BCE)")):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0].legend(title="size", fontsize=8)
    seeds_note = f"{len(summary['seeds'])} seed(s), one line per run" if len(summary["seeds"]) > 1 else "seed " + str(summary["seeds"][0])
    fig.suptitle(f"Training curves per size - {source} - {seeds_note}", fontsize=11)
    fig.tight_layout()
    fig.savefig(out_dir / FIGURES["curves"], dpi=110)
    plt.close(fig)
    made["curves"] = FIGURES["curves"]

    # 2. Test AUC against cost.
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    multi = _multi_seed(summary)
    for ax, key, xlabel in ((axes[0], "gflops", "GFLOPs per image (forward)"),
                            (axes[1], "seconds_per_epoch", "measured seconds per epoch (train + val)")):
        for r in summary["sizes"]:
            x, y = r.get(key), r.get("test_auc")
            if x is None or y is None:
                continue
            if multi and r["n_seeds"] > 1:
                yerr = [[r["test_auc_std"] or 0], [r["test_auc_std"] or 0]]
                for rec in records:
                    if rec["size"] == r["size"] and rec.get(key) is not None:
                        ax.plot(rec[key], rec["test_auc"], ".", color=colors[r["size"]], alpha=0.5)
            else:
                lo, hi = r.get("test_auc_ci_low"), r.get("test_auc_ci_high")
                yerr = [[y - lo], [hi - y]] if lo is not None and hi is not None else None
            ax.errorbar([x], [y], yerr=yerr, fmt="o", ms=8, capsize=5, color=colors[r["size"]], label=f"{r['size']} px")
            ax.annotate(f"{r['size']} px", (x, y), textcoords="offset points", xytext=(8, 6), fontsize=9)
        lo_y, hi_y = ax.get_ylim()
        if lo_y <= 0.5 <= hi_y + 0.02:
            ax.axhline(0.5, color="grey", ls="--", lw=0.8)
            ax.annotate("chance", (0, 0.5), xycoords=("axes fraction", "data"), xytext=(4, 3),
                        textcoords="offset points", fontsize=8, color="grey")
        xs = [r[key] for r in summary["sizes"] if r.get(key)]
        if xs and max(xs) / min(xs) > 8:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test AUC (medmnist)")
        ax.grid(alpha=0.3)
    bars = "mean ± 1 std over seeds (dots: seeds)" if multi else "95% bootstrap CI"
    fig.suptitle(f"Test AUC against cost - error bars: {bars} - {source}", fontsize=11)
    fig.tight_layout()
    fig.savefig(out_dir / FIGURES["auc_vs_cost"], dpi=110)
    plt.close(fig)
    made["auc_vs_cost"] = FIGURES["auc_vs_cost"]

    # 3. Per-class test AUC across sizes; undefined classes blank.
    classes = list(D.CLASS_NAMES)
    grid = np.array([[np.nan if r["test_auc_per_class"].get(c) is None else r["test_auc_per_class"][c]
                      for r in summary["sizes"]] for c in classes], dtype=float)
    fig, ax = plt.subplots(figsize=(2.2 + 1.3 * len(sizes), 7.2))
    cmap = plt.get_cmap("RdYlGn").with_extremes(bad="white")
    # Centred on chance (0.5): red is worse than guessing, green better.
    norm = matplotlib.colors.TwoSlopeNorm(vmin=0.0, vcenter=0.5, vmax=1.0)
    im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, norm=norm, aspect="auto")
    for i in range(len(classes)):
        for j in range(len(sizes)):
            ax.text(j, i, "n/a" if np.isnan(grid[i, j]) else f"{grid[i, j]:.2f}", ha="center", va="center",
                    fontsize=8, color="grey" if np.isnan(grid[i, j]) else "black")
    ax.set_xticks(range(len(sizes)), [f"{s} px" for s in sizes])
    positives = summary["sizes"][0].get("test_positives") or {}
    ax.set_yticks(range(len(classes)), [f"{c} ({positives[c]:,} pos.)" if positives.get(c) is not None else c
                                        for c in classes])
    fig.colorbar(im, ax=ax, fraction=0.05, label="test AUC" + (" (mean over seeds)" if multi else ""))
    undefined = sorted({(u["name"], u["reason"]) for r in summary["sizes"] for u in r["auc_undefined_classes"]})
    note = ("Blank = AUC undefined on test: " + "; ".join(f"{n} ({why})" for n, why in undefined) + ".") if undefined \
        else "AUC is defined for every class."
    thin = [c for c in classes if positives.get(c) and positives[c] < 10]
    if thin:
        note += f"\nFewer than 10 test positives (AUC very noisy): {', '.join(thin)}."
    ax.set_title(f"Per-class test AUC\n{source}", fontsize=10)
    fig.text(0.02, 0.01, note, fontsize=8, wrap=True)
    fig.tight_layout(rect=(0, 0.03 + 0.025 * note.count("\n"), 1, 1))
    fig.savefig(out_dir / FIGURES["per_class_auc"], dpi=110)
    plt.close(fig)
    made["per_class_auc"] = FIGURES["per_class_auc"]
    return made


# --------------------------------------------------------------------------- report

def _data_section(records: list[dict]) -> dict:
    files = {}
    for r in records:
        files.setdefault(r["size"], {"size": r["size"], "data_root": r["data_root"], "file": r["data_file"],
                                     "md5": r["data_md5"], "n": r["data_n"],
                                     **data_provenance(r["size"], r["data_n"], r["data_md5"])})
    entries = [files[s] for s in sorted(files)]
    roots = sorted({e["data_root"] for e in entries})
    official = all(e["official"] for e in entries)
    title = next((t for t in (_readme_title(root) for root in roots) if t), None)
    if official:
        label = "official ChestMNIST"
    elif title:
        label = f"{title.split(':')[0].strip()} (not ChestMNIST)"
    else:
        label = "not the official ChestMNIST"
    verdicts: dict[str, list[int]] = {}
    for e in entries:
        verdicts.setdefault(e["verdict"], []).append(e["size"])
    summary = " ".join(f"{', '.join(map(str, s))} px: {v}." for v, s in verdicts.items())
    return {"official": official, "label": label, "roots": roots, "readme_title": title, "files": entries,
            "verdict": summary}


def _machine_section(records: list[dict], inference: dict) -> dict:
    trained = sorted({(r["machine"].get("platform"), r["machine"].get("cpus"), r["machine"].get("device"),
                       r["versions"].get("torch")) for r in records}, key=str)
    gpu = None
    if torch.cuda.is_available():
        gpu = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    return {
        "trained_on": [{"platform": p, "cpus": c, "device": d, "torch": t} for p, c, d, t in trained],
        "train_devices": sorted({d for r in records for d in r["train_devices"]}),
        "report_built_on": {"platform": platform.platform(), "cpus": os.cpu_count(), "cpu_model": _cpu_model(),
                            "gpus": gpu, "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                            "python": platform.python_version()},
        "inference_device": inference.get("device"),
    }


def build_report(run_dirs: Iterable[str | Path], out_dir: str | Path, *, device: str = "auto",
                 study_name: str | None = None, measure_inference_time: bool = True, inference_images: int = 512,
                 failed: list[str] | None = None, command: list[str] | None = None) -> "StudyReport":
    """Write the report for finished runs into `out_dir` and return it (as `load_study` would).

    Any finished runs can be passed (e.g. ones picked on the Compare page): they are grouped by
    size, seeds of a size are averaged. Writes report.md, summary.json, runs.csv, table1_val.csv,
    test.csv, cost.csv, per_class_test_auc.csv and the figures. Runs without test_metrics.json
    raise RunError (evaluate them first). Inference time is measured here, on `device`, with
    the first run of each size (seeds share the architecture).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run_dirs = [Path(p).resolve() for p in run_dirs]
    if not run_dirs:
        raise StudyError("No runs to report on.")
    for p in run_dirs:
        if not (p / "test_metrics.json").is_file():
            raise runs.RunError(f"{p} has no test_metrics.json: it has not finished (or was never evaluated). "
                                f"Finish it, or run `python -m core.evaluate {p}`.")
    records = sorted((_run_record(p) for p in run_dirs), key=lambda r: (r["size"], r["seed"]))
    notes: list[str] = []

    inference: dict = {}
    if measure_inference_time:
        for size in sorted({r["size"] for r in records}):
            first = next(r for r in records if r["size"] == size)
            try:
                data = D.load(first["data_root"], size)
                m = measure_inference(first["run_dir"], data, device, n_images=inference_images)
            except (D.DataError, runs.RunError, ConfigError) as e:
                notes.append(f"Inference time at {size} px not measured: {e}")
                continue
            inference.setdefault("device", m["inference_device"])
            inference.setdefault("threads", m["inference_threads"])
            inference.setdefault("images", m["inference_images"])
            inference.setdefault("batch", m["inference_batch"])
            for r in records:
                if r["size"] == size:
                    r.update(m)
    sizes = _size_rows(records)
    data = _data_section(records)
    machine = _machine_section(records, inference)
    seeds = sorted({r["seed"] for r in records})
    first_cfg = records[0]["train_config"]
    summary = {
        "format_version": STUDY_VERSION, "name": study_name or out_dir.name, "report_dir": str(out_dir.resolve()),
        "created": time.time(), "command": command,
        "recipe": _recipe(first_cfg),
        "seeds": seeds, "sizes": sizes, "runs": [{k: v for k, v in r.items() if k != "train_config"} for r in records],
        "data": data, "machine": machine, "inference": inference,
        "ci_level": records[0]["ci_level"], "n_boot": records[0]["n_boot"],
        "failed_runs": failed or [], "notes": notes,
    }
    summary["observations"] = observations(summary)
    mixed = sorted({json.dumps(_recipe(r["train_config"]), sort_keys=True) for r in records})
    if len(mixed) > 1:
        notes.append("The runs do not share one recipe (settings other than size/seed differ); compare with care.")
    summary["figures"] = _figures(summary, records, out_dir)
    _write_tables(summary, out_dir)
    (out_dir / "report.md").write_text(_markdown(summary))
    runs.write_json(out_dir / "summary.json", summary)
    return StudyReport(out_dir, summary)


def _write_tables(summary: dict, out_dir: Path) -> None:
    flat = []
    for r in summary["runs"]:
        row = {k: v for k, v in r.items() if not isinstance(v, (dict, list))}
        row["auc_undefined_classes"] = ", ".join(u["name"] for u in r["auc_undefined_classes"])
        row.update({f"test_auc_{c}": v for c, v in r["test_auc_per_class"].items()})
        flat.append(row)
    pd.DataFrame(flat).to_csv(out_dir / "runs.csv", index=False)
    size_cols = ["size", "n_seeds"]
    by_size = pd.DataFrame([{k: (", ".join(map(str, v)) if isinstance(v, list) and k in ("seeds", "best_epoch") else v)
                             for k, v in r.items() if not isinstance(v, dict) and k != "auc_undefined_classes"}
                            for r in summary["sizes"]])

    def cols(keys):
        out = []
        for k in keys:
            out += [c for c in (k, f"{k}_std", f"{k}_ci_low", f"{k}_ci_high") if c in by_size.columns]
        return out
    by_size[size_cols + ["seeds", "best_epoch"] + cols(VAL_KEYS)].to_csv(out_dir / "table1_val.csv", index=False)
    by_size[size_cols + cols(TEST_KEYS)].to_csv(out_dir / "test.csv", index=False)
    by_size[size_cols + cols(COST_KEYS) + ["device", "world_size", "memory_note"]].to_csv(out_dir / "cost.csv", index=False)
    per_class = pd.DataFrame({f"{r['size']} px": r["test_auc_per_class"] for r in summary["sizes"]})
    per_class.index.name = "class"
    per_class.to_csv(out_dir / "per_class_test_auc.csv")


def observations(summary: dict) -> list[str]:
    """Plain statements the numbers support (chance level, overlapping intervals), for report.md and the app."""
    out = []
    sizes = [r for r in summary["sizes"] if r.get("test_auc") is not None]
    single = [r for r in sizes if r["n_seeds"] == 1 and r.get("test_auc_ci_low") is not None]
    chance = [r["size"] for r in single if r["test_auc_ci_low"] <= 0.5 <= r["test_auc_ci_high"]]
    if chance:
        out.append(f"Test AUC at {', '.join(map(str, chance))} px is not distinguishable from chance (0.5): "
                   "its 95% CI contains 0.5.")
    if len(single) > 1 and len(single) == len(sizes):
        lo = max(r["test_auc_ci_low"] for r in single)
        hi = min(r["test_auc_ci_high"] for r in single)
        if lo <= hi:
            out.append("The test AUC intervals of all sizes overlap, so this study does not separate the sizes; "
                       "more seeds, epochs or test images would be needed to rank them.")
    if sizes:
        best = max(sizes, key=lambda r: r["test_auc"])
        cheapest = min(sizes, key=lambda r: r["gflops"])
        if best["size"] != cheapest["size"]:
            out.append(f"Highest test AUC: {best['size']} px ({best['test_auc']:.3f}) at "
                       f"{best['gflops'] / cheapest['gflops']:.1f}x the FLOPs per image of {cheapest['size']} px "
                       f"({cheapest['test_auc']:.3f}).")
        else:
            out.append(f"Highest test AUC: {best['size']} px ({best['test_auc']:.3f}), also the cheapest size.")
    return out


def _markdown(summary: dict) -> str:
    data, machine, recipe = summary["data"], summary["machine"], summary["recipe"]
    tables = format_tables(summary)
    sizes = [r["size"] for r in summary["sizes"]]
    multi = _multi_seed(summary)
    L: list[str] = [f"# Resolution study `{summary['name']}`", ""]
    if not data["official"]:
        L += [f"> **Data: {data['label']}.** These numbers describe this data only; do not quote them as "
              f"ChestMNIST results. {data['verdict']}", ""]
    L += [f"{len(summary['runs'])} runs: sizes {', '.join(map(str, sizes))} px, seed(s) "
          f"{', '.join(map(str, summary['seeds']))}; generated {time.strftime('%Y-%m-%d %H:%M', time.localtime(summary['created']))}"
          + (f" by `{' '.join(summary['command'])}`." if summary.get("command") else "."), ""]
    knobs = ", ".join(f"{k} {recipe.get(k)}" for k in ("model", "epochs", "batch_size", "lr", "pos_weight_clip",
                                                      "threshold", "select_by", "patience", "subset", "augment"))
    L += [f"**Recipe** (the same for every size): {knobs}.", ""]

    L += ["## Data", ""]
    for root in data["roots"]:
        L += [f"- data root `{root}`" + (f" - its README: *{data['readme_title']}*" if data["readme_title"] else "")]
    L += ["", "| size | file | MD5 | train | val | test | source |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for f in data["files"]:
        n = f["n"]
        L.append(f"| {f['size']} px | `{f['file']}` | `{f['md5']}` | {n['train']:,} | {n['val']:,} | {n['test']:,} | "
                 f"{f['verdict']} |")
    L += [""]

    b = machine["report_built_on"]
    L += ["## Machine", ""]
    for t in machine["trained_on"]:
        L.append(f"- trained on: {t['platform']}, {t['cpus']} CPUs, device `{t['device']}`, torch {t['torch']}")
    if machine["train_devices"]:
        L.append(f"- training processes reported: {', '.join(machine['train_devices'])}")
    L.append(f"- report built on: {b['platform']}, {b['cpus']} CPUs ({b['cpu_model'] or 'CPU model unknown'}), "
             f"GPUs: {b['gpus'] or 'none'}, torch {b['torch']} ({b['torch_threads']} threads)")
    L += [""]

    L += ["## Table 1: validation at the best epoch", "",
          "The epoch whose checkpoint was kept (best " + str(recipe.get("select_by")) + "), from each run's metrics.jsonl. "
          "F1 at the study's global threshold " + str(recipe.get("threshold")) + "."
          + (" Mean ± std over seeds." if multi else ""), "",
          _markdown_table(tables["Table 1: validation at the best epoch"]), ""]
    L += ["## Test", "",
          "From each run's test_metrics.json (best checkpoint): medmnist AUC (mean of the per-class AUCs that are "
          "defined) and ACC (all labels at score > 0.5), "
          + ("mean ± std over seeds (per-seed 95% bootstrap CIs are in runs.csv)" if multi else
             f"with {int(100 * summary['ci_level'])}% percentile bootstrap CIs ({summary['n_boot']} resamples of "
             "the test images; ACC on the same resamples)")
          + ". Macro-F1 uses per-class thresholds chosen on validation (Youden's J).", "",
          _markdown_table(tables["Test"]), ""]
    inf = summary.get("inference") or {}
    L += ["## Cost", "", _markdown_table(tables["Cost"]), "",
          "- params and GFLOPs/image: from config.json (core.models.flops_per_image: convolutions and linear layers, "
          "forward pass, a multiply-add = 2 FLOPs).",
          "- s/epoch: median wall time of an epoch including validation; train img/s: median training throughput "
          "(metrics.jsonl). Both were measured while training, on the device named, and depend on whatever else "
          "the machine was doing.",
          (f"- inference ms/image: core.evaluate.predict on the first {inf.get('images')} test images in batches of "
           f"{inf.get('batch')}, on `{inf.get('device')}` ({inf.get('threads')} CPU threads, fp32 as evaluation scores), median of 3 timed passes "
           "after a warm-up; best model of the first seed of each size." if inf else
           "- inference ms/image: not measured."),
          "- peak RSS: maximum resident set size of the training process (kernel rusage of the child process the "
          "study trains each run in; under torchrun, the largest rank). It includes the Python/torch runtime and the "
          "dataset arrays held in memory (dataset MB; from 128 px images are read from disk by batch and only the batch counts), "
          "so it is not the model's memory alone. "
          + ("Peak GPU MB: torch.cuda.max_memory_allocated of rank 0. " if any(r.get("cuda_peak_mb") for r in summary["sizes"]) else "")
          + "Sizes whose runs were trained outside the study's child process show n/a.",
          ""]
    for r in summary["sizes"]:
        if "not measured" in r["memory_note"]:
            L.append(f"  - {r['size']} px: {r['memory_note']}.")
    L += ["## Figures", "",
          f"![Training curves]({FIGURES['curves']})", "",
          "Validation AUC, train loss and validation loss per epoch for each size; the star marks the kept checkpoint.", "",
          f"![Test AUC against cost]({FIGURES['auc_vs_cost']})", "",
          "Test AUC against forward GFLOPs per image and against measured seconds per epoch; error bars are "
          + ("± 1 std over seeds." if multi else f"the {int(100 * summary['ci_level'])}% bootstrap CI."), "",
          f"![Per-class test AUC]({FIGURES['per_class_auc']})", "",
          "Per-class test AUC across sizes."]
    undefined = sorted({(u["name"], u["reason"]) for r in summary["sizes"] for u in r["auc_undefined_classes"]})
    if undefined:
        L[-1] += (" Blank cells: AUC is undefined because the test split has "
                  + "; ".join(f"{why} for {n}" for n, why in undefined) + "; the mean AUC averages the other classes.")
    L += [""]
    reading = observations(summary)
    if reading:
        L += ["## Reading this", ""] + [f"- {o}" for o in reading] + [""]
    L += ["## Runs", "", "| size | seed | run folder | state | epochs | best epoch |", "| --- | --- | --- | --- | --- | --- |"]
    for r in summary["runs"]:
        L.append(f"| {r['size']} px | {r['seed']} | `{r['run_dir']}` | {r['state']} | {r['epochs_done']}/{r['epochs']} "
                 f"| {r['best_epoch']} |")
    L += [""]
    if summary["failed_runs"] or summary["notes"]:
        L += ["## Notes", ""]
        L += [f"- FAILED, not in the tables: `{p}` (see its status.json)" for p in summary["failed_runs"]]
        L += [f"- {n}" for n in summary["notes"]]
        L += [""]
    L += ["Every number above is in summary.json; tables as CSV: runs.csv (one row per run), table1_val.csv, test.csv, "
          "cost.csv, per_class_test_auc.csv.", ""]
    return "\n".join(L)


# --------------------------------------------------------------------------- reading a report

@dataclass
class StudyReport:
    """A built report: `summary` is summary.json (every number); helpers give tables and figure paths."""

    report_dir: Path
    summary: dict

    @property
    def name(self) -> str:
        return self.summary["name"]

    @property
    def official_data(self) -> bool:
        return bool(self.summary["data"]["official"])

    @property
    def data_warning(self) -> str | None:
        """A sentence to show prominently when the data is not the official ChestMNIST, else None."""
        if self.official_data:
            return None
        d = self.summary["data"]
        return f"Data: {d['label']}; do not quote these numbers as ChestMNIST results. {d['verdict']}"

    @property
    def observations(self) -> list[str]:
        """Plain statements the numbers support (chance level, overlapping CIs, best size vs cost)."""
        return list(self.summary.get("observations") or observations(self.summary))

    def tables(self) -> dict[str, pd.DataFrame]:
        """Table 1 (validation), Test and Cost as display strings, exactly as in report.md."""
        return format_tables(self.summary)

    def runs_frame(self) -> pd.DataFrame:
        """One row per run with every per-run number (runs.csv)."""
        return pd.read_csv(self.report_dir / "runs.csv")

    def sizes_frame(self) -> pd.DataFrame:
        """One row per size: means (and _std over seeds, _ci_low/_ci_high for one seed), as numbers."""
        return pd.DataFrame([{k: v for k, v in r.items() if not isinstance(v, (dict, list))}
                             for r in self.summary["sizes"]])

    def per_class_frame(self) -> pd.DataFrame:
        """Test AUC, classes x sizes (NaN where undefined)."""
        return pd.DataFrame({f"{r['size']} px": r["test_auc_per_class"] for r in self.summary["sizes"]}).astype(float)

    @property
    def figures(self) -> dict[str, Path]:
        return {k: self.report_dir / v for k, v in self.summary.get("figures", {}).items()}

    @property
    def markdown(self) -> str:
        return (self.report_dir / "report.md").read_text()


def load_study(report_dir: str | Path) -> StudyReport:
    """Open a built report folder (summary.json); StudyError if it has none."""
    report_dir = Path(report_dir)
    path = report_dir / "summary.json"
    if not path.is_file():
        hint = " It has study.json: run `python -m core.study --report-only --out " + str(report_dir) + "`." \
            if _study_file(report_dir).is_file() else ""
        raise StudyError(f"{report_dir} holds no study report (no summary.json).{hint}")
    try:
        summary = runs.read_json(path)
    except runs.RunError as e:
        raise StudyError(str(e)) from None
    if summary.get("format_version", 0) > STUDY_VERSION:
        raise StudyError(f"{path} was written by a newer version of this tool; update to read it.")
    return StudyReport(report_dir, summary)


def list_studies(reports_dir: str | Path = DEFAULT_REPORTS_DIR) -> list[Path]:
    """Report folders (holding summary.json) under `reports_dir`, newest first."""
    reports_dir = Path(reports_dir)
    if not reports_dir.is_dir():
        return []
    found = [d for d in reports_dir.iterdir() if (d / "summary.json").is_file()]
    return sorted(found, key=lambda d: (d / "summary.json").stat().st_mtime, reverse=True)


def rebuild_report(out_dir: str | Path, device: str = "auto") -> StudyReport:
    """Rebuild a study's report from the finished runs its study.json lists (no training)."""
    study = read_study_file(out_dir)
    if study is None:
        raise StudyError(f"{out_dir} has no study.json; run the study first.")
    done = [Path(e["run_dir"]) for e in study["runs"] if (Path(e["run_dir"]) / "test_metrics.json").is_file()]
    missing = [e for e in study["runs"] if Path(e["run_dir"]) not in done]
    if missing:
        _log(f"{len(missing)} run(s) not finished, left out: " + ", ".join(f"{e['size']} px s{e['seed']}" for e in missing))
    if not done:
        raise StudyError(f"No finished runs in {_study_file(Path(out_dir))}; run the study to train them.")
    return build_report(done, out_dir, device=device, study_name=study["name"], command=study.get("command"))


# --------------------------------------------------------------------------- command line

def _parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="python -m core.study", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=list(D.SIZES), help=f"image sizes, from {D.SIZES}")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--seeds", type=int, default=1, help="number of seeds per size (seeds --seed, --seed+1, ...)")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--model", default=d.model)
    p.add_argument("--subset", type=int, default=None, help="seeded random subset of train (val/test stay whole)")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--patience", type=int, default=d.patience, help="0 = no early stopping")
    p.add_argument("--augment", action="store_true")
    p.add_argument("--device", default=d.device, help="auto, cpu, cuda, mps")
    p.add_argument("--amp", default=d.amp, help=AMP_HELP)
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    p.add_argument("--data-root", type=D.data_root_arg, default=None, help=D.DATA_ROOT_HELP)
    p.add_argument("--runs-dir", default=None, help="default: $CHESTMNIST_RUNS, else checkpoints/")
    p.add_argument("--name", default=None, help="study name (default: data folder, model, epochs and a recipe hash)")
    p.add_argument("--out", default=None, help="report folder (default: reports/<name>/)")
    p.add_argument("--skip-missing", action="store_true", help="leave out sizes whose npz is not in the data root")
    p.add_argument("--nproc-per-node", type=int, default=1,
                   help="train each run with torchrun on this many processes (DDP: one per GPU)")
    p.add_argument("--report-only", action="store_true", help="rebuild the report of --out from its study.json")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_train-one"]:
        return _train_one_main(argv[1:])
    args = _parser().parse_args(argv)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        print("error: run `python -m core.study` itself without torchrun; --nproc-per-node N launches each run "
              "under torchrun.", file=sys.stderr)
        return 2
    try:
        if args.report_only:
            if not args.out:
                raise StudyError("--report-only needs --out REPORT_DIR (the folder with study.json).")
            report = rebuild_report(args.out, args.device)
        else:
            base = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, model=args.model,
                               patience=args.patience, subset=args.subset, augment=args.augment, device=args.device,
                               amp=args.amp, channels_last=args.channels_last,
                               **({"data_root": args.data_root} if args.data_root else {}),
                               **({"runs_dir": args.runs_dir} if args.runs_dir else {}))
            t0 = time.time()
            report = run_study(base, args.sizes, range(args.seed, args.seed + args.seeds), args.name, args.out,
                               skip_missing=args.skip_missing, nproc_per_node=args.nproc_per_node,
                               command=["python", "-m", "core.study", *argv])
            _log(f"done in {format_seconds(time.time() - t0)}")
        if report.data_warning:
            _log(report.data_warning)
        for title, table in report.tables().items():
            print(f"\n{title}\n{table.to_string(index=False)}", file=sys.stderr)
        print((report.report_dir / "report.md").resolve())
        return 1 if report.summary["failed_runs"] else 0
    except StudyStopped as e:
        print(f"\nstopped: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to continue the study (finished runs are kept).",
              file=sys.stderr)
        return 130
    except (StudyError, ConfigError, D.DataError, runs.RunError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
