"""Precision and memory layout chosen by measuring them on this machine, once, then read from a cache.

A CPU flag does not say which precision is fastest: the same bf16 autocast that trains 1.3-2x faster
on one CPU with AVX512-BF16 trains slower than fp32 on another (see docs/machines.md). So `--amp auto`
(core.train.device, for core.train) and core.evaluate.predict's default layout ask here. The first time a (machine, model,
size, batch) combination is seen, a few training steps (or inference batches) of each candidate are
timed, interleaved, on random images, and the fastest is kept; the decision goes into `autotune.json`
in core's cache folder (core.data.npz.cache_root) and is reused from then on. An entry written for another
machine, thread count, torch version or file format is never used, and a damaged file is measured
again and rewritten.

Candidates. Training: fp32 and, where the hardware computes it natively (CPU AVX512-BF16/AMX, CUDA),
bf16 (CUDA also fp16, with a gradient scaler), each in NCHW and channels_last. A lower precision is
kept only when it beats the fastest fp32 candidate by LOW_PRECISION_MARGIN, and only after its first
step's loss matched fp32's on the same batch and weights (a kernel sanity check; bf16's effect on
what the model learns is the paired-seed comparison in docs/precision.md, not re-checked per machine).
Inference stays fp32 (the precision reported metrics are computed in); the layout and whether batch
norm is folded into the convolutions are measured.

Set CHESTMNIST_AUTOTUNE=off to measure nothing and use the fixed rule core had before (bf16 where
the hardware has it natively, fp16 on older CUDA, channels_last, folded batch norm); the test suite
does, so that only the tests of this module pay for measuring. Under torchrun (WORLD_SIZE > 1) the
fixed rule applies too: ranks measuring at once on shared cores would time each other, and could
each pick differently.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from core import env
from core.data import batching
from core.data import chestmnist as D
from core.files import atomic_write
from core.data.npz import cache_root
from core.models.registry import build_model, count_params, fold_batchnorm
from core.train.step import build_parts, train_step

FORMAT_VERSION = 1
FILE_NAME = "autotune.json"
LOW_PRECISION_MARGIN = 1.03  # bf16/fp16 must be this much faster than the best fp32 candidate
LOSS_TOLERANCE = 0.02  # |first-step loss - fp32's| above this disqualifies a low precision
# The timed batch: at most TIMED_IMAGES images and PIXELS_PER_STEP pixels (16 images at 224 px), so
# measuring costs seconds; the bench checks the choice against the four candidates at batch 128.
TIMED_IMAGES, PIXELS_PER_STEP = 32, 16 * 224 * 224
MIN_ROUNDS, MAX_ROUNDS, ROUND_BUDGET_S = 2, 5, 2.0  # timed rounds: at least 2, more while under the budget
DROP_ABOVE = 1.3  # after a timed round, candidates this much slower than the best so far stop being timed
AMPS = ("off", "bf16", "fp16")
_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}
INTERESTING_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16",
                     "amx_fp16", "asimd", "sve", "bf16")


@dataclass(frozen=True)
class Candidate:
    """One way to run the model: autocast precision (`off` = fp32), memory layout, batch norm folded."""

    amp: str
    channels_last: bool
    fold_bn: bool = False

    @property
    def name(self) -> str:
        precision = {"off": "fp32", "bf16": "bf16", "fp16": "fp16"}[self.amp]
        return f"{'folded_' if self.fold_bn else ''}{precision}_{'cl' if self.channels_last else 'nchw'}"


@dataclass(frozen=True)
class Decision:
    """What to run with, and why. `how`: 'measured' (now), 'cached' (measured earlier on this machine),
    'fixed rule' (nothing measured) or 'set' (the caller asked for a precision)."""

    task: str  # "train" or "infer"
    amp: str
    channels_last: bool
    fold_bn: bool
    how: str
    reason: str
    speeds: dict[str, float] = field(default_factory=dict)  # img/s per candidate name, when measured
    seconds: float = 0.0  # what measuring cost (0 when read from the cache)
    key: dict = field(default_factory=dict)

    @property
    def dtype(self) -> torch.dtype | None:
        return _DTYPES[self.amp]

    @property
    def name(self) -> str:
        return Candidate(self.amp, self.channels_last, self.fold_bn).name

    def describe(self) -> str:
        """One paragraph for `--device check` and logs: the choice, how it was made, the speeds."""
        speeds = ", ".join(f"{k} {v:,.0f}" for k, v in sorted(self.speeds.items(), key=lambda kv: -kv[1]))
        cost = f" (measuring took {self.seconds:.1f} s)" if self.how == "measured" else ""
        return (f"{self.task}: {self.name}, {self.how}{cost}; {self.reason}"
                + (f". img/s: {speeds}" if speeds else ""))


# ---------------------------------------------------------------- the machine


def cpu_info() -> dict:
    """{'model': CPU model string, 'flags': the ISA flags that matter for fp32/bf16/fp16 kernels}."""
    model, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() == "model name" and not model:
                model = value.strip()
            elif name.strip() in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {"model": model or platform.processor() or platform.machine(),
            "flags": [f for f in INTERESTING_FLAGS if f in flags]}


def machine_key(device: torch.device) -> dict:
    """What a measurement depends on besides the workload: a decision made under another key is not used."""
    key = {"format": FORMAT_VERSION, "torch": torch.__version__, "cpu": cpu_info()["model"], "cpus": os.cpu_count(),
           "threads": torch.get_num_threads(), "capability": torch.backends.cpu.get_cpu_capability(),
           "device": device.type}
    if device.type == "cuda":
        key["gpu"] = torch.cuda.get_device_name(device)
    return key


def measuring_enabled(device: torch.device) -> bool:
    """False where the fixed rule applies: CHESTMNIST_AUTOTUNE=off, several torchrun processes, or MPS."""
    return env.autotune_enabled() and env.world_size() == 1 and device.type in ("cpu", "cuda")


def native_low_precision(device: torch.device, cpu_bf16: bool) -> tuple[str, ...]:
    """Autocast precisions this device computes natively (emulated ones are never faster than fp32)."""
    if device.type == "cuda":
        return ("bf16", "fp16") if torch.cuda.is_bf16_supported() else ("fp16",)
    return ("bf16",) if device.type == "cpu" and cpu_bf16 else ()


def fixed_rule(task: str, device: torch.device, cpu_bf16: bool, reason: str) -> Decision:
    """The rule core used before measuring: the first native low precision for training, else fp32."""
    low = native_low_precision(device, cpu_bf16) if task == "train" else ()
    return Decision(task, low[0] if low else "off", True, task == "infer", "fixed rule", reason)


# ---------------------------------------------------------------- the cache (this module owns autotune.json)


def cache_path() -> Path:
    return cache_root() / FILE_NAME


def _entry_key(key: dict) -> str:
    return json.dumps(key, sort_keys=True, separators=(",", ":"))


def _read_cache(path: Path) -> dict:
    """The entries of a readable cache of this format; {} for a missing, damaged or older-format file."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(doc, dict) or doc.get("format_version") != FORMAT_VERSION or not isinstance(doc.get("entries"), dict):
        return {}
    return doc["entries"]


def _valid(entry: object, key: dict, candidates: list[Candidate]) -> bool:
    """An entry is trusted only if it names this key and one of today's candidates with positive speeds."""
    if not isinstance(entry, dict) or entry.get("key") != key:
        return False
    chosen = (entry.get("amp"), entry.get("channels_last"), entry.get("fold_bn"))
    speeds = entry.get("speeds")
    return (any(chosen == (c.amp, c.channels_last, c.fold_bn) for c in candidates) and isinstance(speeds, dict)
            and bool(speeds) and all(isinstance(v, (int, float)) and v > 0 for v in speeds.values()))


def _lookup(key: dict, candidates: list[Candidate]) -> Decision | None:
    entry = _read_cache(cache_path()).get(_entry_key(key))
    if not _valid(entry, key, candidates):
        return None
    return Decision(entry["task"], entry["amp"], entry["channels_last"], entry["fold_bn"], "cached",
                    str(entry.get("reason", "")), {k: float(v) for k, v in entry["speeds"].items()}, 0.0, key)


def _store(decision: Decision) -> None:
    """Add the decision to the cache file (rewritten whole and atomically; unreadable parts are dropped)."""
    path = cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        entries = _read_cache(path)
        entries[_entry_key(decision.key)] = dataclasses.asdict(decision) | {"how": "measured", "time": time.time()}
        doc = {"format_version": FORMAT_VERSION, "entries": entries}
        atomic_write(path, lambda f: f.write(json.dumps(doc, indent=1).encode()))
    except OSError:
        pass  # a read-only home only means measuring again next time


# ---------------------------------------------------------------- timing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(fns: dict[str, Callable[[], object]], device: torch.device) -> dict[str, float]:
    """Fastest seconds per call of each function: one untimed round (first calls build kernels), then
    rounds in alternating order, at least MIN_ROUNDS and more, up to MAX_ROUNDS, while the rounds so far
    took under ROUND_BUDGET_S. The fastest repeat, not the median: on a shared machine a neighbour only
    ever adds time, so the fastest repeat is the closest to what the candidate costs. From MIN_ROUNDS
    on, a candidate whose fastest repeat is DROP_ABOVE x the best one's is no longer timed (it cannot
    win); timing ends when one is left."""
    for f in fns.values():
        f()
    _sync(device)
    times: dict[str, list[float]] = {k: [] for k in fns}
    alive, start = list(fns), time.perf_counter()
    for r in range(MAX_ROUNDS):
        if len(alive) == 1 or (r >= MIN_ROUNDS and time.perf_counter() - start > ROUND_BUDGET_S):
            break
        for k in (alive if r % 2 == 0 else alive[::-1]):
            t = time.perf_counter()
            fns[k]()
            _sync(device)
            times[k].append(time.perf_counter() - t)
        if r + 1 >= MIN_ROUNDS:  # never on one sample: a neighbour's burst would drop the fastest for good
            best = min(min(times[k]) for k in alive)
            alive = [k for k in alive if min(times[k]) <= DROP_ABOVE * best]
    return {k: min(v) for k, v in times.items()}


def timed_batch(size: int, batch_size: int, images: int = TIMED_IMAGES) -> int:
    """The batch a measurement times: the real one, capped at `images` images and PIXELS_PER_STEP pixels."""
    return max(1, min(batch_size, images, PIXELS_PER_STEP // (size * size)))


def _images(size: int, n: int) -> tuple[np.ndarray, torch.Tensor]:
    rng = np.random.default_rng(size)
    return (rng.integers(0, 256, (n, size, size), dtype=np.uint8),
            torch.from_numpy((rng.random((n, D.N_CLASSES)) < 0.05).astype(np.float32)))


def measure_train(model_name: str, size: int, batch_size: int, device: torch.device,
                  candidates: list[Candidate], weight_decay: float = 0.0) -> tuple[dict[str, float], dict[str, float]]:
    """(img/s, first-step loss) per candidate name: core's training step (uint8 batch to tensor, then
    core.train.step.train_step: autocast forward, BCE, backward, and the run's optimizer: Adam, or AdamW
    with `weight_decay`) from the same initial weights on the same random batch, built by
    core.train.step.build_parts as the training loop builds its own."""
    torch.manual_seed(0)
    base = build_model(model_name, size).train()
    n = timed_batch(size, batch_size)
    images, labels = _images(size, n)
    y = labels.to(device)
    losses: dict[str, float] = {}
    fns = {}
    for c in candidates:
        parts = build_parts(copy.deepcopy(base), device, lr=1e-3, weight_decay=weight_decay,
                            channels_last=c.channels_last, dtype=_DTYPES[c.amp])

        def step(parts=parts, c=c) -> None:
            first = c.name not in losses
            if first:  # the same dropout masks for every candidate's first step, whose losses are compared
                torch.manual_seed(1)
            x = batching.to_tensor(images, device, c.channels_last)
            value = train_step(parts.model, parts.optimizer, parts.loss_fn, x, y, parts.dtype, parts.scaler)[0].item()
            if first:
                losses[c.name] = value
        fns[c.name] = step
    seconds = time_interleaved(fns, device)
    return {k: n / s for k, s in seconds.items()}, losses


@torch.no_grad()
def measure_infer(model: nn.Module, size: int, batch_size: int, device: torch.device,
                  candidates: list[Candidate]) -> dict[str, float]:
    """img/s per candidate name of an fp32 eval forward pass of `model` (copied; not changed)."""
    n = timed_batch(size, batch_size, 2 * TIMED_IMAGES)  # inference batches are larger (256 in core)
    images = _images(size, n)[0]
    fns = {}
    for c in candidates:
        net = fold_batchnorm(model) if c.fold_bn else copy.deepcopy(model).eval()
        net = net.to(device, memory_format=torch.channels_last) if c.channels_last else net.to(device)
        fns[c.name] = lambda net=net, c=c: net(batching.to_tensor(images, device, c.channels_last)).float().sum().item()
    return {k: n / s for k, s in time_interleaved(fns, device).items()}


# ---------------------------------------------------------------- choosing


def _pick_train(speeds: dict[str, float], losses: dict[str, float], candidates: list[Candidate]) -> tuple[Candidate, str]:
    """The fastest fp32 candidate, unless a low precision that passed the loss check beats it by the margin."""
    fp32 = max((c for c in candidates if c.amp == "off"), key=lambda c: speeds[c.name])
    best, why = fp32, f"{fp32.name} is the fastest fp32 candidate"
    for c in sorted((c for c in candidates if c.amp != "off"), key=lambda c: -speeds[c.name]):
        ref = losses[Candidate("off", c.channels_last).name]
        if not (np.isfinite(losses[c.name]) and abs(losses[c.name] - ref) <= LOSS_TOLERANCE):
            why += f"; {c.name} left out: its first loss {losses[c.name]:.4f} != fp32's {ref:.4f}"
            continue
        gain = speeds[c.name] / speeds[fp32.name]
        if gain >= LOW_PRECISION_MARGIN and speeds[c.name] > speeds[best.name]:
            best, why = c, (f"{c.name} trains {gain:.2f}x as fast as the fastest fp32 ({fp32.name}); first-step loss "
                            f"within {LOSS_TOLERANCE} of fp32's; its effect on AUC: docs/precision.md")
        elif best is fp32:
            why += f"; {c.name} is {gain:.2f}x of it (kept only from {LOW_PRECISION_MARGIN:.2f}x)"
    return best, why


def train_candidates(device: torch.device, cpu_bf16: bool) -> list[Candidate]:
    return [Candidate(a, cl) for a in ("off", *native_low_precision(device, cpu_bf16)) for cl in (False, True)]


def infer_candidates() -> list[Candidate]:
    return [Candidate("off", cl, fold) for fold in (False, True) for cl in (False, True)]


def choose_train(model_name: str, size: int, batch_size: int, device: torch.device | str,
                 cpu_bf16: bool, weight_decay: float = 0.0) -> Decision:
    """The training precision and layout for `model_name` at `size` px and `batch_size` on `device`, with the
    run's optimizer (AdamW when `weight_decay` > 0): from the cache, else measured now (and cached), else
    (measuring off) the fixed rule. `cpu_bf16`: whether this CPU has native bf16 instructions (bf16 is not
    tried without them)."""
    device = torch.device(device)
    if not measuring_enabled(device):
        return fixed_rule("train", device, cpu_bf16, _why_not_measured(device))
    candidates = train_candidates(device, cpu_bf16)
    key = machine_key(device) | {"task": "train", "model": model_name, "size": size, "batch": batch_size,
                                 "candidates": [c.name for c in candidates]}
    if weight_decay > 0:  # only AdamW's decisions are keyed by it, so Adam's cached ones stay valid
        key["optimizer"] = "adamw"
    cached = _lookup(key, candidates)
    if cached:
        return cached
    t0 = time.perf_counter()
    speeds, losses = measure_train(model_name, size, batch_size, device, candidates, weight_decay)
    best, why = _pick_train(speeds, losses, candidates)
    if not native_low_precision(device, cpu_bf16):
        why += "; no native bf16 on this CPU, so bf16 was not tried"
    decision = Decision("train", best.amp, best.channels_last, False, "measured", why + _load(), speeds,
                        time.perf_counter() - t0, key)
    _store(decision)
    return decision


def choose_infer(model: nn.Module, size: int, batch_size: int, device: torch.device | str) -> Decision:
    """The fp32 inference layout and batch-norm folding for `model` at `size` px, batch `batch_size`:
    cached, else measured now on a copy of `model` (and cached), else the fixed rule (folded, channels_last)."""
    device = torch.device(device)
    if not measuring_enabled(device):
        return fixed_rule("infer", device, False, _why_not_measured(device))
    candidates = infer_candidates()
    key = machine_key(device) | {"task": "infer", "model": type(model).__name__, "params": count_params(model),
                                 "size": size, "batch": batch_size}
    cached = _lookup(key, candidates)
    if cached:
        return cached
    t0 = time.perf_counter()
    speeds = measure_infer(model, size, batch_size, device, candidates)
    best = max(candidates, key=lambda c: speeds[c.name])
    why = f"fastest of {len(candidates)} fp32 candidates ({speeds[best.name] / min(speeds.values()):.2f}x the slowest)"
    decision = Decision("infer", "off", best.channels_last, best.fold_bn, "measured", why + _load(), speeds,
                        time.perf_counter() - t0, key)
    _store(decision)
    return decision


def _load() -> str:
    """How busy the machine was: a choice measured while other jobs held the cores is noisier (delete
    autotune.json on a quiet machine to measure again)."""
    try:
        return f"; measured at load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    except OSError:
        return ""


def _why_not_measured(device: torch.device) -> str:
    if device.type not in ("cpu", "cuda"):
        return f"not measured on {device.type}"
    if env.world_size() > 1:
        return "not measured under torchrun (ranks would time each other)"
    return f"not measured ({env.AUTOTUNE}=off)"
