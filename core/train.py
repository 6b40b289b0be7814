"""Train a multi-label CNN on ChestMNIST at one resolution, one run folder per run.

    python -m core.train --size 28 --epochs 30
    python -m core.train --size 64 --subset 300 --epochs 5 --data-root demo
    python -m core.train --resume checkpoints/<run-id>
    torchrun --nproc_per_node=2 -m core.train --size 28 --epochs 2     # DDP: gloo on CPU, NCCL on GPU

Every knob is a field of TrainConfig. `train(run_dir)` is the loop (flat, in this process,
with progress callbacks and a cooperative stop); `main` is the command line around it.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from core import data as D
from core import metrics, runs
from core.models import DEFAULT_MODEL, MODELS, build_model, count_params, flops_per_image

SELECT_BY = {"val_auc": 1, "val_loss": -1, "val_acc": 1}  # +1: higher is better
AMP_HELP = "auto (bf16 where the GPU or CPU has it natively, fp16 on older CUDA, else off), off, bf16, fp16"


class ConfigError(ValueError):
    """A training setting is out of range; the message says which and what is allowed."""


@dataclass
class TrainConfig:
    size: int = 28
    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    pos_weight_clip: float = 10.0  # 0 = plain BCE
    threshold: float = 0.3  # the study's global threshold, for per-epoch F1
    model: str = DEFAULT_MODEL
    select_by: str = "val_auc"
    patience: int = 10  # epochs without improvement before stopping; 0 = never stop early
    subset: int | None = None  # seeded random subset of train; val/test stay whole
    augment: bool = False
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"  # auto = bf16 where the hardware has it natively, fp16 on older CUDA; or off / bf16 / fp16
    channels_last: bool = True
    data_root: str = field(default_factory=lambda: str(D.default_root()))
    runs_dir: str = field(default_factory=lambda: str(runs.default_runs_dir()))
    name: str = ""

    def train_images(self, n_train: int) -> int:
        """Training images per epoch from a split of n_train: the subset, capped at the split."""
        return min(self.subset or n_train, n_train)

    def validate(self) -> None:
        """Raise ConfigError naming every bad setting (checks that need no data)."""
        problems = []
        if self.size not in D.SIZES:
            problems.append(f"--size {self.size} is not a ChestMNIST size ({', '.join(map(str, D.SIZES))})")
        if self.epochs < 1:
            problems.append(f"--epochs {self.epochs} must be at least 1")
        if self.batch_size < 1:
            problems.append(f"--batch-size {self.batch_size} must be at least 1")
        if not 0 < self.lr <= 1:
            problems.append(f"--lr {self.lr} must be in (0, 1]")
        if self.pos_weight_clip < 0:
            problems.append(f"--pos-weight-clip {self.pos_weight_clip} must be >= 0 (0 turns pos_weight off)")
        if not 0 < self.threshold < 1:
            problems.append(f"--threshold {self.threshold} must be between 0 and 1")
        if self.model not in MODELS:
            problems.append(f"--model {self.model!r} is unknown (choose {', '.join(MODELS)})")
        if self.select_by not in SELECT_BY:
            problems.append(f"--select-by {self.select_by!r} must be one of {', '.join(SELECT_BY)}")
        if self.patience < 0:
            problems.append(f"--patience {self.patience} must be >= 0 (0 = no early stopping)")
        if self.subset is not None and self.subset < 1:
            problems.append(f"--subset {self.subset} must be at least 1")
        if self.device not in ("auto", "cpu", "cuda", "mps"):
            problems.append(f"--device {self.device!r} must be auto, cpu, cuda or mps")
        if self.amp not in ("auto", "off", "bf16", "fp16"):
            problems.append(f"--amp {self.amp!r} must be auto, off, bf16 or fp16")
        if problems:
            raise ConfigError("Invalid training settings: " + "; ".join(problems) + ".")


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA, then MPS, then CPU; naming an absent device is a ConfigError."""
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if (name == "cuda" and not cuda) or (name == "mps" and not mps):
        raise ConfigError(f"--device {name} was asked for but is not available here "
                          f"(found: cpu{', cuda' if cuda else ''}{', mps' if mps else ''}). Use --device auto.")
    return torch.device(name)


def describe_devices() -> str:
    """What accelerators torch sees, for `--device check`."""
    lines = [f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            lines.append(f"cuda:{i} {p.name}, {p.total_memory / 2**30:.0f} GiB, bf16 {torch.cuda.is_bf16_supported()}")
    else:
        lines.append("CUDA: not available")
    lines.append(f"MPS: {'available' if torch.backends.mps.is_available() else 'not available'}")
    auto = resolve_device("auto")
    lines.append(f"CPU bf16 instructions: {'yes' if cpu_has_bf16() else 'no'}")
    lines.append(f"--device auto would use: {auto}, with --amp auto: {precision_name(amp_dtype(TrainConfig(), auto))}")
    return "\n".join(lines)


def cpu_has_bf16() -> bool:
    """Whether this CPU has native bf16 instructions (AVX512-BF16 or AMX) for oneDNN to use.

    Without them bf16 autocast on CPU is emulated and slower than fp32.
    """
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """Autocast dtype or None.

    `auto` is bf16 on CUDA that has it and on CPUs with native bf16 (training 1.3-2.1x faster
    at 28-224 px measured here, val AUC within seed-to-seed noise of fp32 on a planted-pattern
    task and on NIH-1000: bench/compute.py, README "Precision"), fp16 on older CUDA, off elsewhere.
    """
    choice = config.amp
    if choice == "auto":
        if device.type == "cuda":
            choice = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        elif device.type == "cpu" and cpu_has_bf16():
            choice = "bf16"
        else:
            return None
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[choice]


def precision_name(dtype: torch.dtype | None) -> str:
    """'bfloat16' / 'float16' for an autocast dtype, 'fp32' for None (no autocast)."""
    return str(dtype).removeprefix("torch.") if dtype is not None else "fp32"


@dataclass
class Progress:
    """Reported after every batch (phase 'train') and as validation runs (phase 'val')."""

    run_dir: Path
    epoch: int
    epochs: int
    phase: str
    batch: int
    n_batches: int
    images_per_s: float
    eta_s: float  # whole run, from the measured speed


def check_subset(config: TrainConfig, n_train: int, path: Path) -> None:
    """ConfigError when --subset asks for more than the n_train training images in the file at `path`."""
    if config.subset is not None and config.subset > n_train:
        raise ConfigError(f"--subset {config.subset} is larger than the training split ({n_train:,} images "
                          f"in {path}); use at most {n_train} or leave it out.")


def prepare_run(config: TrainConfig) -> Path:
    """Validate `config`, create its run folder with config.json and status 'queued'.

    Checks the data before anything is written, so a bad setting never leaves a run behind.
    """
    config.validate()
    device = resolve_device(config.device)
    data = D.load(config.data_root, config.size)
    check_subset(config, len(data.train), data.path)
    run_dir = runs.new_run_dir(config.runs_dir, config.size, config.model, config.name)
    model = build_model(config.model, config.size)
    import medmnist
    import sklearn
    runs.write_json(run_dir / "config.json", {
        "format_version": runs.FORMAT_VERSION,
        "train": dataclasses.asdict(config) | {"data_root": str(Path(config.data_root).expanduser().resolve())},
        "data": {"file": data.path.name, "md5": D.file_md5(data.path),
                 "n": {s: len(data.split(s)) for s in D.SPLITS}},
        "model": {"params": count_params(model), "flops_per_image": flops_per_image(model, config.size)},
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
                     "medmnist": medmnist.__version__, "sklearn": sklearn.__version__},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "device": str(device),
                    "amp": precision_name(amp_dtype(config, device))},
        "created": time.time(),
    })
    runs.set_status(run_dir, "queued")
    return run_dir


def _with_progress_file(callback: Callable[[Progress], None] | None) -> Callable[[Progress], None]:
    """Also write progress.json (at most once a second) so other processes, e.g. the app, can follow."""
    last = [0.0]

    def report(p: Progress) -> None:
        if callback:
            callback(p)
        now = time.time()
        if now - last[0] >= 1.0 or p.phase != "train" or p.batch == p.n_batches:
            last[0] = now
            runs.write_json(p.run_dir / "progress.json", dataclasses.asdict(p) | {"run_dir": str(p.run_dir), "time": now})
    return report


def _config_of(run_dir: Path) -> TrainConfig:
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in runs.read_config(run_dir)["train"].items() if k in known})


def _epoch_seed(seed: int, epoch: int) -> int:
    # Shuffling, augmentation and dropout are seeded per epoch, so a resumed run replays exactly.
    return seed * 1_000_003 + epoch


def _distributed() -> tuple[int, int]:
    """(rank, world size); initialises the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
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
          on_epoch: Callable[[dict], None] | None = None, should_stop: Callable[[], bool] | None = None) -> str:
    """Train (or resume) the run in `run_dir` in this process; returns its final state.

    Resumes from last.pt when present. Stops cooperatively after the current batch when
    `should_stop()` is true or a STOP file appears in the run folder (state 'stopped'; the
    unfinished epoch is discarded and repeated on resume). Evaluates the best checkpoint on
    val/test when training ends. Exceptions mark the run 'failed' and propagate.
    """
    run_dir = Path(run_dir)
    cfg = _config_of(run_dir)
    rank, world = _distributed()
    main_rank = rank == 0
    device = resolve_device(cfg.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
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
            state = _train_loop(run_dir, cfg, device, rank, world, on_progress, on_epoch, stop)
            if world > 1:
                # Ranks leave together: one tearing down gloo while rank 0 still evaluates on test
                # aborted with "terminate called without an active exception" (SIGABRT) under load.
                dist.barrier()
            if main_rank:
                runs.set_status(run_dir, state, **({} if state == "finished" else
                                                  {"error": "Stopped by request; resume to continue."}))
            return state
        except KeyboardInterrupt:
            if main_rank:
                runs.set_status(run_dir, "stopped", error="Interrupted; resume to continue.")
            return "stopped"
        except BaseException as e:
            if main_rank:
                try:
                    runs.set_status(run_dir, "failed", error=f"{type(e).__name__}: {e}")
                except OSError:
                    pass  # disk full or folder gone: the original error is the one to report
            raise
        finally:
            if world > 1 and dist.is_initialized():
                dist.destroy_process_group()


def _train_loop(run_dir: Path, cfg: TrainConfig, device: torch.device, rank: int, world: int,
                on_progress, on_epoch, stop) -> str:
    main_rank = rank == 0
    data = D.load(cfg.data_root, cfg.size)
    train_idx = D.subset_indices(len(data.train), cfg.subset, cfg.seed)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, cfg.size).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    pw = D.pos_weight(data.train.labels[train_idx], cfg.pos_weight_clip)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=None if pw is None else pw.to(device))
    dtype = amp_dtype(cfg, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    sign = SELECT_BY[cfg.select_by]

    start_epoch, best, best_epoch, bad_epochs, done = 1, None, 0, 0, False
    if (run_dir / "last.pt").exists():
        ckpt = runs.load_checkpoint(run_dir / "last.pt", map_location=device)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start_epoch, best, best_epoch = ckpt["epoch"] + 1, ckpt["best"], ckpt["best_epoch"]
        bad_epochs, done = ckpt["bad_epochs"], ckpt["done"]
        if main_rank:
            runs.truncate_metrics(run_dir, ckpt["epoch"])
    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    # Each rank takes an equal share of every global batch, so world=N matches world=1 in expectation.
    per_rank = max(1, cfg.batch_size // world)
    n_batches = -(-len(train_idx) // (per_rank * world))
    t_run, epoch_times = time.time(), []

    for epoch in range(start_epoch, cfg.epochs + 1):
        if done:
            break
        t0 = time.time()
        torch.manual_seed(_epoch_seed(cfg.seed, epoch) + rank)
        gen = torch.Generator().manual_seed(_epoch_seed(cfg.seed, epoch))
        order = train_idx[torch.randperm(len(train_idx), generator=gen).numpy()]
        order = order[: len(order) - len(order) % world] if world > 1 else order
        # Rank r takes rows r, r+world, ...: every global batch is the same images as with one process.
        shard = order.reshape(-1, world)[:, rank] if world > 1 else order
        aug_gen = torch.Generator().manual_seed(_epoch_seed(cfg.seed, epoch) * 31 + rank)
        net.train()
        loss_sum, seen, scores, labels = 0.0, 0, [], []
        for b, start in enumerate(range(0, len(shard), per_rank)):
            if _any(stop(), world):
                return "stopped"
            idx = np.sort(shard[start:start + per_rank])
            x = D.to_tensor(data.train.images[idx], device, cfg.channels_last)
            if cfg.augment:
                x = D.augment(x, aug_gen)
            y = torch.from_numpy(data.train.labels[idx].astype(np.float32)).to(device)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                logits = net(x)
            loss = loss_fn(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            loss_sum += loss.item() * len(idx)
            seen += len(idx)
            scores.append(torch.sigmoid(logits.detach().float()).cpu().numpy())
            labels.append(data.train.labels[idx])
            if main_rank:
                speed = seen * world / (time.time() - t0)
                left = (n_batches - b - 1) * per_rank * world / speed + (cfg.epochs - epoch) * (
                    np.mean(epoch_times) if epoch_times else len(train_idx) / speed * 1.15)
                on_progress(Progress(run_dir, epoch, cfg.epochs, "train", b + 1, n_batches, speed, left))
        train_seconds = time.time() - t0
        if main_rank:
            on_progress(Progress(run_dir, epoch, cfg.epochs, "val", n_batches, n_batches, seen * world / train_seconds, 0.0))

        # Every rank scores the whole validation set with the same weights: identical metrics,
        # identical checkpoint choice, no gather needed. BatchNorm running statistics are per rank
        # (DDP copies rank 0's only at the next forward), so take rank 0's, the ones it saves.
        if world > 1:
            for buf in model.buffers():
                dist.broadcast(buf, 0)
        from core.evaluate import predict
        # Validation in full precision, as the test report: bf16 rounding reorders the nearly tied
        # scores of a weak model and moves its AUC by up to 0.005 (bench/compute.py, --quick).
        val_scores = predict(model, data.val.images, device=device, channels_last=cfg.channels_last)
        with torch.no_grad():
            val_logits = torch.logit(torch.from_numpy(val_scores).double().clamp(1e-7, 1 - 1e-7))
            val_loss = nn.functional.binary_cross_entropy_with_logits(
                val_logits, torch.from_numpy(data.val.labels).double(),
                pos_weight=None if pw is None else pw.double()).item()
        tr_scores, tr_labels = np.concatenate(scores), np.concatenate(labels)
        tr_loss = loss_sum / max(seen, 1)
        if world > 1:
            tr_loss, tr_scores, tr_labels = _gather_train(loss_sum, seen, tr_scores, tr_labels)
        row = {"epoch": epoch, "train_loss": tr_loss, "val_loss": val_loss,
               **_epoch_metrics("train", tr_labels, tr_scores, cfg.threshold),
               **_epoch_metrics("val", data.val.labels, val_scores, cfg.threshold),
               "val_auc_per_class": dict(zip(D.CLASS_NAMES, metrics.auc_per_class(data.val.labels, val_scores))),
               "lr": optimizer.param_groups[0]["lr"], "images": seen * world,
               "seconds": time.time() - t0, "images_per_s": seen * world / train_seconds}
        epoch_times.append(row["seconds"])
        value = row[cfg.select_by]
        improved = value is not None and not np.isnan(value) and (best is None or sign * (value - best) > 0)
        if improved:
            best, best_epoch, bad_epochs = value, epoch, 0
        else:
            bad_epochs += 1
        done = _rank0s(epoch == cfg.epochs or (cfg.patience > 0 and bad_epochs >= cfg.patience), world)
        row.update(best_epoch=best_epoch, is_best=improved)
        if main_rank:
            runs.append_jsonl(run_dir / "metrics.jsonl", row)
            ckpt = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                    "best": best, "best_epoch": best_epoch, "bad_epochs": bad_epochs, "done": done}
            if improved:
                runs.save_checkpoint(run_dir / "best.pt", {"model": model.state_dict(), "epoch": epoch})
            runs.save_checkpoint(run_dir / "last.pt", ckpt)
            if on_epoch:
                on_epoch(row)

    if main_rank:
        on_progress(Progress(run_dir, cfg.epochs, cfg.epochs, "test", 0, 0, 0.0, 0.0))
        from core.evaluate import evaluate_run
        evaluate_run(run_dir, str(device), data=data, model=runs.load_model(run_dir, "best", device))
    return "finished"


# Validation (fp32, batch norm folded) scores an image in this fraction of a training step's time:
# 0.40-0.60 measured with bf16 training at 28-224 px, about 0.3 with fp32 training (bench/compute.py).
VAL_COST = 0.5


@dataclass(frozen=True)
class Estimate:
    """The cost of a run at a measured training speed: `epochs` epochs of n_train training and n_val
    validation images, then the final scoring of n_val + n_test images with the best checkpoint
    (core.evaluate.evaluate_run); validation and scoring cost VAL_COST of a training step per image."""

    images_per_s: float
    device: str
    n_train: int  # training images per epoch (the subset, if any)
    n_val: int
    n_test: int
    epochs: int

    @property
    def seconds_per_epoch(self) -> float:
        return (self.n_train + VAL_COST * self.n_val) / self.images_per_s

    @property
    def final_seconds(self) -> float:
        return VAL_COST * (self.n_val + self.n_test) / self.images_per_s

    @property
    def total_seconds(self) -> float:
        return self.seconds_per_epoch * self.epochs + self.final_seconds

    def within(self, budget_s: float) -> tuple[int, int]:
        """(training images per epoch for these epochs, epochs of these training images) that fit
        `budget_s` with the final scoring: the inverse of total_seconds (the first can be <= 0 when
        validation alone exceeds the budget)."""
        left = budget_s - self.final_seconds
        subset = round(left / self.epochs * self.images_per_s - VAL_COST * self.n_val)
        return subset, int(left / self.seconds_per_epoch + 1e-6)


def measure_speed(config: TrainConfig, n_batches: int = 3, max_batch: int | None = None) -> tuple[float, str]:
    """(training images/s, device) of `config` on this machine, from a few batches of random images.

    Counts one warm-up batch out, then times `n_batches` forward+backward+step at config.batch_size
    (at most `max_batch`, e.g. the number of training images).
    """
    config.validate()
    device = resolve_device(config.device)
    model = build_model(config.model, config.size).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    bs = min(config.batch_size, max_batch or config.batch_size)
    images = np.random.default_rng(0).integers(0, 256, (bs, config.size, config.size), dtype=np.uint8)
    y = torch.zeros(bs, D.N_CLASSES, device=device)
    dtype = amp_dtype(config, device)
    times = []
    for _ in range(n_batches + 1):
        t = time.perf_counter()
        x = D.to_tensor(images, device, config.channels_last)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = nn.functional.binary_cross_entropy_with_logits(model(x).float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return bs / float(np.median(times[1:])), str(device)


def estimate(config: TrainConfig, counts: dict[str, int] | None = None, n_batches: int = 3) -> Estimate:
    """The cost of training `config` on this machine, its speed measured now (measure_speed).

    `counts` ({split: images}) default to the split sizes of config's data file, or official
    ChestMNIST's where it has none (core.data.split_counts_or_official); `subset` applies to train.
    """
    config.validate()
    if counts is None:
        counts, from_file = D.split_counts_or_official(config.data_root, config.size)
        if from_file:
            check_subset(config, counts["train"], D.npz_path(config.data_root, config.size))
    n_train = config.train_images(counts["train"])
    images_per_s, device = measure_speed(config, n_batches, max_batch=n_train)
    return Estimate(images_per_s, device, n_train, counts["val"], counts["test"], config.epochs)


def launch(run_dirs: list[Path], log_name: str = "train.log") -> int:
    """Train prepared run folders one after another in a detached background process; its pid.

    The process has its own session, so it outlives the caller (a Streamlit rerun, a closed tab,
    the app's server); its output goes to the first run's train.log. Follow it with
    runs.read_status / progress.json / metrics.jsonl and stop it with runs.request_stop.
    Its OpenMP threads sleep instead of spin-waiting between parallel regions (unless the caller
    set OMP_WAIT_POLICY): a background run shares the cores with the app that launched it, and
    spinning threads on a shared 2-core machine made both several times slower (bench/compute.py).
    """
    import subprocess

    run_dirs = [Path(p).resolve() for p in run_dirs]
    for run_dir in run_dirs:
        runs.clear_stop(run_dir)
    log = open(run_dirs[0] / log_name, "ab")
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-m", "core.train", "--run-dirs", *map(str, run_dirs)], cwd=root,
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={"OMP_WAIT_POLICY": "PASSIVE", **os.environ, "PYTHONUNBUFFERED": "1"})
    log.close()
    return proc.pid


def format_seconds(s: float) -> str:
    """'<1s', '42s', '3m 05s' or '2h 07m': to the second below an hour."""
    if s < 0.5:  # e.g. the final scoring of a small split: "0s" would read as free
        return "<1s"
    s = int(round(s))
    return f"{s // 3600}h {s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m {s % 60:02d}s" if s >= 60 else f"{s}s"


def _parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="python -m core.train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--size", type=int, default=d.size, help=f"image size, one of {D.SIZES}")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--subset", type=int, default=None, help="seeded random subset of train (val/test stay whole)")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--pos-weight-clip", type=float, default=d.pos_weight_clip, help="0 = no pos_weight")
    p.add_argument("--threshold", type=float, default=d.threshold, help="global threshold for per-epoch F1")
    p.add_argument("--model", default=d.model, help=f"one of {', '.join(MODELS)}")
    p.add_argument("--select-by", default=d.select_by, help=f"one of {', '.join(SELECT_BY)}")
    p.add_argument("--patience", type=int, default=d.patience, help="0 = no early stopping")
    p.add_argument("--augment", action="store_true", help="small random shifts/rotations (no flips)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device, help="auto, cpu, cuda, mps; 'check' prints what is found")
    p.add_argument("--amp", default=d.amp, help=AMP_HELP)
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    p.add_argument("--data-root", type=D.data_root_arg, default=None, help=D.DATA_ROOT_HELP)
    p.add_argument("--runs-dir", default=None, help="default: $CHESTMNIST_RUNS, else checkpoints/")
    p.add_argument("--name", default="", help="optional label in the run id")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted or stopped run")
    p.add_argument("--run-dirs", nargs="+", metavar="RUN_DIR",
                   help="train prepared (queued) run folders one after another (used by the app's queue)")
    p.add_argument("--estimate", action="store_true", help="only print the measured time per epoch and in all (with the final scoring of val and test), "
                        "for the data file's split sizes (official ChestMNIST's without one), and exit")
    return p


def _print_progress(p: Progress) -> None:
    if p.phase == "train":
        print(f"\repoch {p.epoch}/{p.epochs}  batch {p.batch}/{p.n_batches}  {p.images_per_s:,.0f} img/s  "
              f"ETA {format_seconds(p.eta_s)}   ", end="", file=sys.stderr, flush=True)


def _print_epoch(row: dict) -> None:
    def f(v):
        return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.4f}"
    print(f"{chr(13) if sys.stderr.isatty() else ''}epoch {row['epoch']}: train loss {f(row['train_loss'])}  val loss {f(row['val_loss'])}  "
          f"val AUC {f(row['val_auc'])}  val ACC {f(row['val_acc'])}  val macro-F1 {f(row['val_macro_f1'])}  "
          f"{row['seconds']:.1f}s{'  *best' if row['is_best'] else ''}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.device == "check":
        print(describe_devices())
        return 0
    # SIGTERM (kill, the app's Stop fallback) stops like Ctrl-C: status 'stopped', resumable.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    # Under torchrun only rank 0 reports: it alone writes test_metrics.json (after the other ranks
    # are done), and every line would otherwise appear once per rank.
    lead = int(os.environ.get("RANK", "0")) == 0
    # Batch-level progress redraws one line, which only makes sense on a terminal; logs get epochs.
    live = lead and sys.stderr.isatty()
    try:
        if args.resume or args.run_dirs:
            targets = [Path(p) for p in (args.run_dirs or [args.resume])]
            for run_dir in targets:
                if not (run_dir / "config.json").is_file():
                    raise runs.RunError(f"{run_dir} is not a run folder (no config.json); pass a folder under the runs dir.")
                status = runs.read_status(run_dir)
                if status.get("state") == "running":
                    raise runs.RunError(f"{run_dir} is already being trained by process {status.get('pid')}.")
            if lead:
                # Runs waiting in this queue carry this process's pid, so a dead queue shows as interrupted.
                for run_dir in targets[1:]:
                    runs.set_status(run_dir, "queued")
        else:
            fields = {k: v for k, v in vars(args).items() if k in {f.name for f in dataclasses.fields(TrainConfig)}}
            fields = {k: v for k, v in fields.items() if v is not None}
            config = TrainConfig(**fields)
            if args.estimate:
                e = estimate(config)
                path = D.npz_path(config.data_root, config.size)
                where = path if path.is_file() else f"official ChestMNIST (no {path.name} in {config.data_root})"
                print(f"{e.images_per_s:,.0f} train img/s on {e.device}: about {format_seconds(e.seconds_per_epoch)} "
                      f"per epoch, {format_seconds(e.total_seconds)} for {config.epochs} epochs and the final scoring "
                      f"of val and test ({format_seconds(e.final_seconds)}); {e.n_train:,} train, {e.n_val:,} val and "
                      f"{e.n_test:,} test images: {where}")
                return 0
            rank, world = _distributed()
            # Under torchrun, rank 0 creates the folder and tells the others where it is.
            box = [str(prepare_run(config)) if rank == 0 else None]
            if world > 1:
                dist.broadcast_object_list(box, src=0)
            targets = [Path(box[0])]
        for run_dir in targets:
            if lead:
                print(f"run folder: {run_dir}", file=sys.stderr)
            state = train(run_dir, _print_progress if live else None, _print_epoch if lead else None)
            if state != "finished":
                if lead:
                    print(f"\nrun {state}: resume with `python -m core.train --resume {run_dir}`", file=sys.stderr)
                    print(run_dir.resolve())
                return 1
            if lead:
                m = json.loads((run_dir / "test_metrics.json").read_text())
                print(f"test AUC (medmnist) {m['auc']:.4f}   test ACC (medmnist, 0.5) {m['acc']:.4f}", file=sys.stderr)
        if lead:
            print(targets[-1].resolve())
        return 0
    except (ConfigError, D.DataError, runs.RunError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
