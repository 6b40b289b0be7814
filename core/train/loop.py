"""Train a multi-label CNN on ChestMNIST at one resolution, one run folder per run.

    python -m core.train --size 28 --epochs 30
    python -m core.train --size 64 --subset 300 --epochs 5 --data-root demo
    python -m core.train --resume checkpoints/<run-id>
    torchrun --nproc_per_node=2 -m core.train --size 28 --epochs 2     # DDP: gloo on CPU, NCCL on GPU

Every knob is a field of TrainConfig. `train(run_dir)` is the loop (flat, in this process,
with progress callbacks and a cooperative stop); `main` is the command line around it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import platform
import sys
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from core.errors import UserError
from core import env
from core.data import batching
from core.data import chestmnist as D
from core.runs import checkpoints
from core import metrics
from core.runs import record as runs
from core.files import to_jsonable
from core.train.recipe import SELECT_BY, TrainConfig, check_selectable, check_subset
from core.runs.datafile import config_of, data_md5, run_data
from core.train.device import amp_dtype, precision_name, resolve_device, train_layout, training_choice
from core.train.cost import format_seconds
from core.evaluate.scoring import evaluate_run, predict
from core.models.registry import build_model, count_params, flops_per_image
from core.runs.record import Progress
from core.train.step import build_parts, epoch_lr, train_step


def prepare_run(config: TrainConfig) -> Path:
    """Validate `config`, create its run folder with its config and status 'queued'.

    Checks the data (and that validation can choose a checkpoint by --select-by) before anything is
    written, so a bad setting never leaves a run behind; nor does an interruption (SIGTERM) mid-setup.
    """
    config.validate()
    device = resolve_device(config.device)
    data = D.load(config.data_root, config.size)
    check_subset(config, len(data.train), data.path)
    check_selectable(config.select_by, data.val.labels, data.path)
    model = build_model(config.model, config.size)
    run_dir = runs.new_run_dir(config.runs_dir, config.size, config.model, config.name)
    try:
        _write_new_run(run_dir, config, data, device, model)
    except BaseException:
        runs.discard_new_run(run_dir)
        raise
    return run_dir


def _write_new_run(run_dir: Path, config: TrainConfig, data: D.ChestData, device: torch.device, model: nn.Module) -> None:
    runs.write_config(run_dir, {
        "train": dataclasses.asdict(config) | {"data_root": str(Path(config.data_root).expanduser().resolve())},
        "data": {"file": data.path.name, "md5": data_md5(data.path),
                 "n": {s: len(data.split(s)) for s in D.SPLITS}},
        "model": {"params": count_params(model), "flops_per_image": flops_per_image(model, config.size)},
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
                     "medmnist": version("medmnist"), "sklearn": version("scikit-learn")},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "device": str(device),
                    "amp": precision_name(amp_dtype(config, device)), "channels_last": train_layout(config, device),
                    **({"autotune": training_choice(config, device).describe()} if config.amp == "auto" else {})},
        "created": time.time(),
    })
    runs.set_status(run_dir, "queued")


def _with_progress_file(callback: Callable[[Progress], None] | None) -> Callable[[Progress], None]:
    """Also write the run's progress file (at most once a second) so other processes, e.g. the app, can follow."""
    last = [0.0]

    def report(p: Progress) -> None:
        if callback:
            callback(p)
        now = time.time()
        if now - last[0] >= 1.0 or p.phase != "train" or p.batch == p.n_batches:
            last[0] = now
            runs.write_progress(p)
    return report


def _epoch_seed(seed: int, epoch: int) -> int:
    # Shuffling, augmentation and dropout are seeded per epoch, so a resumed run replays exactly.
    return seed * 1_000_003 + epoch


def rank_and_world() -> tuple[int, int]:
    """(rank, world size); initialises the process group when launched by torchrun."""
    world = env.world_size()
    if world > 1 and not dist.is_initialized():
        # gloo always serves CPU tensors (the stop flag, the run folder broadcast): NCCL alone has no
        # CPU backend, so those collectives would fail on a GPU machine.
        dist.init_process_group("cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def _any(flag: bool, world: int) -> bool:
    """True on every rank if it is true on any, so all ranks stop at the same batch."""
    if world == 1:
        return flag
    t = torch.tensor([float(flag)])
    dist.all_reduce(t)
    return bool(t.item())


def _rank0s(flag: bool, world: int) -> bool:
    """Rank 0's value of `flag` on every rank (its checkpoint is the one that counts)."""
    if world == 1:
        return flag
    t = torch.tensor([float(flag)])
    dist.broadcast(t, 0)
    return bool(t.item())


def _gather_train(loss_sum: float, seen: int, scores: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Train loss, scores and labels over every rank's share of the epoch, not rank 0's alone."""
    totals = torch.tensor([loss_sum, float(seen)], dtype=torch.float64)
    dist.all_reduce(totals)
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, (scores, labels))
    return (totals[0].item() / max(totals[1].item(), 1.0), np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]))


def _epoch_metrics(prefix: str, labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    at = metrics.threshold_metrics(labels, scores, threshold)
    return {f"{prefix}_auc": metrics.mean_auc(labels, scores), f"{prefix}_acc": metrics.medmnist_acc(labels, scores),
            f"{prefix}_macro_f1": at["macro_f1"], f"{prefix}_micro_f1": at["micro_f1"]}


def train(run_dir: str | Path, on_progress: Callable[[Progress], None] | None = None,
          on_epoch: Callable[[dict], None] | None = None, should_stop: Callable[[], bool] | None = None,
          data_root: str | Path | None = None) -> str:
    """Train (or resume) the run in `run_dir` in this process; returns its final state.

    Finds the run's data first (config.run_data: MD5-checked, from `data_root` if it moved there): a
    missing or different file raises before anything is written, so a finished run stays finished.
    Resumes from the last checkpoint when present. Stops cooperatively after the current batch when
    `should_stop()` is true or a STOP file appears in the run folder (state 'stopped'; the
    unfinished epoch is discarded and repeated on resume). Evaluates the best checkpoint on
    val/test when training ends. Exceptions mark the run 'failed' and propagate.
    """
    run_dir = Path(run_dir)
    cfg = config_of(run_dir)
    rank, world = rank_and_world()
    main_rank = rank == 0
    data = _data_for(run_dir, data_root, cfg, main_rank)
    device = resolve_device(cfg.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", env.local_rank(rank))
        torch.cuda.set_device(device)
    stop = should_stop or (lambda: runs.stop_requested(run_dir))
    if main_rank:
        on_progress = _with_progress_file(on_progress)
    # Only rank 0 writes, so only it needs to keep other trainers off the folder.
    with runs.training_lock(run_dir) if main_rank else contextlib.nullcontext():
        try:
            if main_rank:
                runs.clear_stop(run_dir)
                runs.set_status(run_dir, "running", world_size=world)
            state = _train_loop(run_dir, cfg, data, device, rank, world, on_progress, on_epoch, stop)
            if world > 1:
                # Ranks leave together: one tearing down gloo while rank 0 still evaluates on test
                # aborted with "terminate called without an active exception" (SIGABRT) under load.
                dist.barrier()
            if main_rank:
                runs.set_status(run_dir, state, **({} if state == "finished" else
                                                  {"error": "Stopped by request; resume to continue."}))
            return state
        except BaseException as e:
            # SIGTERM (a KeyboardInterrupt) inside torch.save surfaces as the RuntimeError it caused: still a stop.
            if _caused_by(e, KeyboardInterrupt):
                if main_rank:
                    with contextlib.suppress(OSError, UserError):  # the folder may be gone: the stop is what counts
                        runs.set_status(run_dir, "stopped", error="Interrupted; resume to continue.")
                return "stopped"
            if main_rank:
                try:
                    runs.set_status(run_dir, "failed", error=f"{type(e).__name__}: {e}")
                except OSError:
                    pass  # disk full or folder gone: the original error is the one to report
            if isinstance(e, OSError) and e.errno in _FOLDER_GONE and not isinstance(e, UserError):
                raise runs.RunError(f"Could not write to the run folder {run_dir} ({e.strerror or e}): it was deleted, "
                                    "moved or made read-only while training. Restore it (and its permissions), then "
                                    "resume the run.") from None
            raise
        finally:
            if world > 1 and dist.is_initialized():
                dist.destroy_process_group()


# What a write into a run folder deleted, moved or made read-only under the trainer fails with.
_FOLDER_GONE = (errno.ENOENT, errno.ENOTDIR, errno.EACCES, errno.EPERM, errno.EROFS)


def _caused_by(e: BaseException | None, kind: type[BaseException]) -> bool:
    """Whether `e`, or an exception it was raised from or while handling, is a `kind`."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, kind):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


def _data_for(run_dir: Path, data_root: str | Path | None, cfg: TrainConfig, main_rank: bool) -> D.ChestData:
    """The run's data, checked; a run that is not finished records why it cannot start (state failed)."""
    try:
        data = run_data(run_dir, data_root)
        check_selectable(cfg.select_by, data.val.labels, data.path)
    except UserError as e:
        if main_rank and runs.read_status(run_dir).get("state") not in ("finished", "running"):
            runs.set_status(run_dir, "failed", error=str(e))
        raise
    if main_rank:
        runs.record_data_root(run_dir, data.root)
    return data


@dataclass
class _State:
    """What the loop carries from epoch to epoch (and the last checkpoint carries across a resume)."""

    start_epoch: int = 1
    best: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0
    done: bool = False


def _resume(run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device,
            main_rank: bool) -> _State:
    """Load the last checkpoint's weights and loop state into `model`/`optimizer`; a fresh _State when there is none.

    Rank 0 first makes the folder agree with that checkpoint (runs.clean_for_resume): whatever a kill
    left of a later epoch goes, and a best checkpoint the kill kept from being written is written.
    """
    ckpt = checkpoints.load_last(run_dir, map_location=device)
    if main_rank:
        runs.clean_for_resume(run_dir, ckpt["epoch"] if ckpt else 0)
    if ckpt is None:
        return _State()
    try:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
    except (KeyError, RuntimeError, ValueError) as e:
        raise runs.RunError(f"{runs.checkpoint_path(run_dir, 'last')} does not fit this run's model and optimizer "
                            f"(another architecture or size?): {str(e)[:200]}. Delete that file to start the run "
                            "again from scratch.") from None
    if main_rank:
        if ckpt.get("row") is not None and ckpt["epoch"] not in {r["epoch"] for r in runs.read_metrics(run_dir)}:
            runs.append_metrics(run_dir, ckpt["row"])
        if ckpt["best_epoch"] == ckpt["epoch"] and _best_epoch(run_dir) != ckpt["epoch"]:
            checkpoints.save_best(run_dir, {"model": ckpt["model"], "epoch": ckpt["epoch"]})
    return _State(ckpt["epoch"] + 1, ckpt["best"], ckpt["best_epoch"], ckpt["bad_epochs"], ckpt["done"])


def _best_epoch(run_dir: Path) -> int | None:
    """The epoch of the best checkpoint on disk, None without one (or an unreadable one)."""
    try:
        return checkpoints.load_checkpoint(runs.checkpoint_path(run_dir, "best")).get("epoch")
    except runs.RunError:
        return None


def _shard(train_idx: np.ndarray, seed: int, epoch: int, rank: int, world: int) -> np.ndarray:
    """This rank's rows of the epoch's shuffled order: rank r takes rows r, r+world, ..., so every
    global batch is the same images as with one process."""
    gen = torch.Generator().manual_seed(_epoch_seed(seed, epoch))
    order = train_idx[torch.randperm(len(train_idx), generator=gen).numpy()]
    if world == 1:
        return order
    order = order[: len(order) - len(order) % world]
    return order.reshape(-1, world)[:, rank]


def _val_loss(labels: np.ndarray, scores: np.ndarray, pw: torch.Tensor | None) -> float:
    """Weighted BCE of validation scores (sigmoid probabilities), in float64."""
    with torch.no_grad():
        logits = torch.logit(torch.from_numpy(scores).double().clamp(1e-7, 1 - 1e-7))
        return nn.functional.binary_cross_entropy_with_logits(
            logits, torch.from_numpy(labels).double(), pos_weight=None if pw is None else pw.double()).item()


def _train_loop(run_dir: Path, cfg: TrainConfig, data: D.ChestData, device: torch.device, rank: int, world: int,
                on_progress, on_epoch, stop) -> str:
    main_rank = rank == 0
    train_idx = D.subset_indices(len(data.train), cfg.subset, cfg.seed)
    pw = batching.pos_weight(data.train.labels[train_idx], cfg.pos_weight_clip)
    channels_last = train_layout(cfg, device)
    torch.manual_seed(cfg.seed)  # the initial weights
    parts = build_parts(build_model(cfg.model, cfg.size), device, lr=cfg.lr, weight_decay=cfg.weight_decay,
                        channels_last=channels_last, dtype=amp_dtype(cfg, device), pos_weight=pw)
    model, optimizer, loss_fn, dtype, scaler = parts.model, parts.optimizer, parts.loss_fn, parts.dtype, parts.scaler
    state = _resume(run_dir, model, optimizer, device, main_rank)
    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    # Each rank takes an equal share of every global batch, so world=N matches world=1 in expectation.
    per_rank = max(1, cfg.batch_size // world)
    n_batches = -(-len(train_idx) // (per_rank * world))
    epoch_times: list[float] = []

    for epoch in range(state.start_epoch, cfg.epochs + 1):
        if state.done:
            break
        # Durations from the monotonic clock: the wall clock can step back (NTP) or stand still (a frozen
        # container clock), which stored negative seconds and divided by zero.
        t0 = time.monotonic()
        for group in optimizer.param_groups:
            group["lr"] = epoch_lr(cfg.lr, cfg.schedule, epoch, cfg.epochs)
        torch.manual_seed(_epoch_seed(cfg.seed, epoch) + rank)
        aug_gen = torch.Generator().manual_seed(_epoch_seed(cfg.seed, epoch) * 31 + rank)
        net.train()
        loss_sum, seen, scores, labels = 0.0, 0, [], []
        batches = batching.batches(data.train.images, data.train.labels, _shard(train_idx, cfg.seed, epoch, rank, world),
                            per_rank, device=device, generator=aug_gen, do_augment=cfg.augment,
                            channels_last=channels_last)
        for b, (x, y) in enumerate(batches):
            if _any(stop(), world):
                return "stopped"
            loss, logits = train_step(net, optimizer, loss_fn, x, y, dtype, scaler)
            loss_sum += loss.item() * len(x)
            seen += len(x)
            scores.append(torch.sigmoid(logits.float()).cpu().numpy())
            labels.append(y.cpu().numpy().astype(np.uint8))
            if main_rank:
                speed = seen * world / max(time.monotonic() - t0, 1e-6)
                left = (n_batches - b - 1) * per_rank * world / speed + (cfg.epochs - epoch) * (
                    np.mean(epoch_times) if epoch_times else len(train_idx) / speed * 1.15)
                on_progress(Progress(run_dir, epoch, cfg.epochs, "train", b + 1, n_batches, speed, left))
        train_seconds = max(time.monotonic() - t0, 1e-6)
        if main_rank:
            on_progress(Progress(run_dir, epoch, cfg.epochs, "val", n_batches, n_batches, seen * world / train_seconds, 0.0))

        # Every rank scores the whole validation set with the same weights: identical metrics,
        # identical checkpoint choice, no gather needed. BatchNorm running statistics are per rank
        # (DDP copies rank 0's only at the next forward), so take rank 0's, the ones it saves.
        if world > 1:
            for buf in model.buffers():
                dist.broadcast(buf, 0)
        # Validation in full precision, as the test report: bf16 rounding reorders the nearly tied
        # scores of a weak model and moves its AUC (docs/precision.md). Layout and batch-norm folding
        # are predict's measured choice (core.train.autotune), not the training layout.
        val_scores = predict(model, data.val.images, device=device)
        tr_scores, tr_labels = np.concatenate(scores), np.concatenate(labels)
        tr_loss = loss_sum / max(seen, 1)
        if world > 1:
            tr_loss, tr_scores, tr_labels = _gather_train(loss_sum, seen, tr_scores, tr_labels)
        row = {"epoch": epoch, "train_loss": tr_loss, "val_loss": _val_loss(data.val.labels, val_scores, pw),
               **_epoch_metrics("train", tr_labels, tr_scores, cfg.threshold),
               **_epoch_metrics("val", data.val.labels, val_scores, cfg.threshold),
               "val_auc_per_class": dict(zip(D.CLASS_NAMES, metrics.auc_per_class(data.val.labels, val_scores))),
               "lr": optimizer.param_groups[0]["lr"], "images": seen * world,
               "seconds": time.monotonic() - t0, "images_per_s": seen * world / train_seconds}
        epoch_times.append(row["seconds"])
        _record_epoch(run_dir, cfg, state, row, model, optimizer, world, main_rank)
        if main_rank and on_epoch:
            on_epoch(row)

    if main_rank:
        on_progress(Progress(run_dir, cfg.epochs, cfg.epochs, "test", 0, 0, 0.0, 0.0))
        evaluate_run(run_dir, str(device), data=data, model=checkpoints.load_model(run_dir, "best", device))
    return "finished"


def _record_epoch(run_dir: Path, cfg: TrainConfig, state: _State, row: dict, model: nn.Module,
                  optimizer: torch.optim.Optimizer, world: int, main_rank: bool) -> None:
    """Update `state` with the epoch in `row` (best so far, early stopping); rank 0 saves row and checkpoints."""
    epoch, value = row["epoch"], row[cfg.select_by]
    improved = value is not None and not np.isnan(value) and (
        state.best is None or SELECT_BY[cfg.select_by] * (value - state.best) > 0)
    if improved:
        state.best, state.best_epoch, state.bad_epochs = value, epoch, 0
    else:
        state.bad_epochs += 1
    state.done = _rank0s(epoch == cfg.epochs or (cfg.patience > 0 and state.bad_epochs >= cfg.patience), world)
    row.update(best_epoch=state.best_epoch, is_best=improved)
    if epoch == state.start_epoch > 1:  # the first epoch after a stop: Compare marks where training resumed
        row["resumed"] = True
    if main_rank:
        # The last checkpoint first, with the epoch's row: it is what a resume trusts. A kill before the row or
        # the best checkpoint is written leaves them one epoch behind, and _resume writes them from it.
        checkpoints.save_last(run_dir, {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                                 "best": state.best, "best_epoch": state.best_epoch, "bad_epochs": state.bad_epochs,
                                 "done": state.done, "row": to_jsonable(row)})
        runs.append_metrics(run_dir, row)
        if improved:
            checkpoints.save_best(run_dir, {"model": model.state_dict(), "epoch": epoch})


def print_progress(p: Progress) -> None:
    if p.phase == "train":
        print(f"\repoch {p.epoch}/{p.epochs}  batch {p.batch}/{p.n_batches}  {p.images_per_s:,.0f} img/s  "
              f"ETA {format_seconds(p.eta_s)}   ", end="", file=sys.stderr, flush=True)


def print_epoch(row: dict) -> None:
    def f(v):
        return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.4f}"
    print(f"{chr(13) if sys.stderr.isatty() else ''}epoch {row['epoch']}: train loss {f(row['train_loss'])}  val loss {f(row['val_loss'])}  "
          f"val AUC {f(row['val_auc'])}  val ACC {f(row['val_acc'])}  val macro-F1 {f(row['val_macro_f1'])}  "
          f"{row['seconds']:.1f}s{'  *best' if row['is_best'] else ''}", file=sys.stderr, flush=True)
