"""Shared pieces of the benchmarks: modes, result rows, interleaved timing, generated data, runs.

Timing rules used everywhere: `time.perf_counter`, warm-up calls excluded, median of repeats.
Variants that are compared are timed *interleaved* (one call of each per round, order
alternating), so a neighbour process that steals the CPU for a while slows every variant of
the comparison alike and the ratio stays meaningful on a shared machine.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import platform
import statistics
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

NIH1000 = Path(__file__).resolve().parents[2] / "shared" / "data" / "nih1000"


@dataclass(frozen=True)
class Mode:
    """How much work each benchmark does. `full` is the reference run; `quick` < 2 min; `tiny` seconds (tests)."""

    name: str
    repeats: int  # timed rounds per comparison
    warmup: int
    pipeline_sizes: tuple[int, ...]
    pipeline_images: int  # generated images per size for the pipeline comparison
    pipeline_batch: int
    pipeline_shares: bool  # also time the example loader feeding core's step and core in the other precision
    compute_sizes: tuple[int, ...]
    compute_batch: int
    compile: bool  # time torch.compile (costs ~10-60 s of compilation per model)
    thread_env_sizes: tuple[int, ...]  # sizes of the OMP_WAIT_POLICY / thread-count subprocess comparison
    thread_env_seconds: float  # seconds each subprocess measures
    thread_env_rounds: int
    auc_sizes: tuple[int, ...]  # sizes at which fp32/bf16/... are trained and their AUCs compared
    auc_epochs: int
    auc_datasets: tuple[str, ...]  # planted and/or nih1000
    auc_all_variants: bool  # also NCHW and 1-thread training (else only fp32 default, its seed-1 twin, bf16)
    planted: tuple[int, int, int]  # train/val/test images of the planted-pattern task
    memory_split: tuple[int, int, int]  # generated 224 px split sizes
    memory_train_steps: int
    memory_batch: int
    memory_readers: tuple[str, ...]
    cam_sizes: tuple[int, ...]
    metric_rows: int  # rows of the threshold_metrics benchmark (22,433 = ChestMNIST test)
    app_runs: bool  # drive the Streamlit pages with AppTest
    efficiency_sizes: tuple[int, ...]
    efficiency_epochs: int
    autotune_sizes: tuple[int, ...] = (28, 64, 224)  # where `--amp auto`'s measured choice is checked
    onnx_images: int = 256  # images scored by onnxruntime and by torch in the export group


MODES: dict[str, Mode] = {
    "full": Mode("full", repeats=9, warmup=2, pipeline_sizes=(28, 64), pipeline_images=4096, pipeline_batch=128,
                 pipeline_shares=True, compute_sizes=(28, 64, 224), compute_batch=128, compile=True,
                 thread_env_sizes=(28, 64), thread_env_seconds=8.0, thread_env_rounds=2, auc_sizes=(28, 64),
                 auc_epochs=5, auc_datasets=("planted", "nih1000"), auc_all_variants=True, planted=(1000, 500, 500),
                 memory_split=(78_468, 11_219, 22_433), memory_train_steps=100, memory_batch=128,
                 memory_readers=("rows", "mmap"), cam_sizes=(28, 64, 224),
                 metric_rows=22_433, app_runs=True, efficiency_sizes=(28, 64), efficiency_epochs=5),
    "quick": Mode("quick", repeats=2, warmup=1, pipeline_sizes=(28, 64), pipeline_images=512, pipeline_batch=128,
                  pipeline_shares=False, compute_sizes=(28, 64), compute_batch=128, compile=False,
                  thread_env_sizes=(64,), thread_env_seconds=1.5, thread_env_rounds=1, auc_sizes=(28,), auc_epochs=2,
                  auc_datasets=("planted", "nih1000"), auc_all_variants=False, planted=(400, 200, 200),
                  memory_split=(2_000, 300, 600), memory_train_steps=3, memory_batch=64,
                  memory_readers=("rows", "mmap"), cam_sizes=(28, 64, 224), metric_rows=22_433, app_runs=True,
                  efficiency_sizes=(28, 64), efficiency_epochs=2),
    "tiny": Mode("tiny", repeats=2, warmup=1, pipeline_sizes=(28,), pipeline_images=64, pipeline_batch=32,
                 pipeline_shares=True, compute_sizes=(28,), compute_batch=16, compile=False, thread_env_sizes=(),
                 thread_env_seconds=0.5, thread_env_rounds=1, auc_sizes=(28,), auc_epochs=1, auc_datasets=("planted",),
                 auc_all_variants=False, planted=(64, 48, 48), memory_split=(48, 16, 16), memory_train_steps=1,
                 memory_batch=16, memory_readers=("rows",), cam_sizes=(28,),
                 metric_rows=2_000, app_runs=False, efficiency_sizes=(28,), efficiency_epochs=1, autotune_sizes=(28,),
                 onnx_images=16),
}


@dataclass
class Row:
    """One line of the table. `value` is in `unit`; `ratio` is value-vs-baseline as a speed-up
    (bigger is better) unless the note says otherwise; `target` is text like '>= 3x'.

    Values and `ratio` come from medians; `ratio_best` from the fastest repeat of each side. On
    a machine shared with other work the two disagree when a neighbour stole time unevenly; when
    they agree, the ratio is the hardware's."""

    name: str
    value: float | None
    unit: str
    baseline: float | None = None
    ratio: float | None = None
    target: str = ""
    passed: bool | None = None  # None: informational, no target
    note: str = ""
    ratio_best: float | None = None  # the same ratio from each variant's best (fastest) repeat

    def as_dict(self) -> dict[str, Any]:
        return {k: _clean(v) for k, v in dataclasses.asdict(self).items()}


def _clean(v: Any) -> Any:
    if isinstance(v, (np.floating, float)):
        v = float(v)
        return round(v, 6) if math.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def at_least(value: float | None, target: float) -> bool | None:
    return None if value is None or not math.isfinite(value) else bool(value >= target)


def at_most(value: float | None, target: float) -> bool | None:
    return None if value is None or not math.isfinite(value) else bool(value <= target)


def figures(rows: list[Row]) -> dict[str, float | None]:
    """name -> value: the flat dict each benchmark function hands back."""
    return {r.name: _clean(r.value) for r in rows}


# ---------------------------------------------------------------- timing


def interleaved(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each function, timed round-robin (order reversed every other round).

    `warmup` untimed rounds first. Returns name -> list of `repeats` durations.
    """
    for _ in range(warmup):
        for f in fns.values():
            f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(repeats):
        for k in (names if r % 2 == 0 else names[::-1]):
            t = time.perf_counter()
            fns[k]()
            times[k].append(time.perf_counter() - t)
    return times


@contextlib.contextmanager
def torch_threads(n: int | None):
    """torch.set_num_threads(n) inside the block (None: leave torch's setting), restored after."""
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n:
            torch.set_num_threads(before)


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def time_call(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    """Median seconds of `fn()` over `repeats` calls after `warmup` untimed ones."""
    return median(interleaved({"f": fn}, repeats, warmup)["f"])


# ---------------------------------------------------------------- machine


def machine() -> dict[str, Any]:
    """What the figures ran on: CPU model and the ISA flags that decide fp32/bf16 speed, threads, torch, GPU, load."""
    import torch

    from core.train.autotune import cpu_info

    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    cpu = cpu_info()
    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "cpu": cpu["model"],
            "cpu_flags": cpu["flags"], "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cuda": torch.cuda.is_available(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "loadavg": [round(x, 2) for x in load]}


# ---------------------------------------------------------------- generated data


def planted_split(n: int, size: int, seed: int, contrast: float = 80.0, prevalence: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """A hard-ish planted-pattern task: images uint8 (n, size, size), labels uint8 (n, 14).

    Class c adds a blurred blob (peak `contrast` grey levels, sigma 6% of the side) at its own
    cell of a 4x4 grid, jittered by up to an eighth of the image, on top of pixel noise (sd 22) and
    a random tilted background. res-cnn reaches val AUC ~0.9 after 5 epochs of 1,000 images and is
    still learning, so a numerical change that hurts learning (e.g. bf16) shows up as an AUC gap.
    """
    from core.data.chestmnist import N_CLASSES

    rng = np.random.default_rng(seed)
    labels = (rng.random((n, N_CLASSES)) < prevalence).astype(np.uint8)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    images = np.empty((n, size, size), dtype=np.uint8)
    sigma = 0.06
    jitter = 1 / 8
    for start in range(0, n, 512):
        stop = min(n, start + 512)
        m = stop - start
        img = rng.normal(100, 22, (m, size, size)).astype(np.float32)
        # smooth background: a random tilt per image
        img += (rng.normal(0, 15, (m, 1, 1)) * (yy - 0.5) + rng.normal(0, 15, (m, 1, 1)) * (xx - 0.5))
        for c in range(N_CLASSES):
            pos = np.flatnonzero(labels[start:stop, c])
            if not len(pos):
                continue
            cy = (c // 4 + 0.5) / 4 + rng.uniform(-jitter, jitter, len(pos))
            cx = (c % 4 + 0.5) / 4 + rng.uniform(-jitter, jitter, len(pos))
            blob = np.exp(-((yy[None] - cy[:, None, None]) ** 2 + (xx[None] - cx[:, None, None]) ** 2) / (2 * sigma ** 2))
            img[pos] += contrast * blob
        images[start:stop] = np.clip(img, 0, 255).astype(np.uint8)
    return images, labels


def write_planted(root: str | Path, size: int, counts: tuple[int, int, int], seed: int = 0) -> Path:
    """Write a planted-pattern npz in ChestMNIST layout into `root`; its path."""
    from core.data.chestmnist import SPLITS, write_npz

    return write_npz(root, size, {split: planted_split(n, size, seed * 10 + i)
                                  for i, (split, n) in enumerate(zip(SPLITS, counts))})


def random_split(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 images and ChestMNIST-like sparse labels (content does not matter for speed)."""
    from core.data.chestmnist import N_CLASSES

    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, size, size), dtype=np.uint8),
            (rng.random((n, N_CLASSES)) < 0.05).astype(np.uint8))


def write_large_npz(path: Path, size: int, counts: tuple[int, int, int], chunk: int = 2048, seed: int = 0) -> float:
    """Stream a ChestMNIST-layout npz of `counts` images at `size` px to `path` without holding it in RAM.

    Members are stored uncompressed (like np.savez); image content is a pool of 257 random
    images, each written with a per-image shift, so no two neighbouring rows are identical.
    Returns the file size in GB.
    """
    from core.data.chestmnist import N_CLASSES, SPLITS

    rng = np.random.default_rng(seed)
    pool = rng.integers(0, 256, (257, size, size), dtype=np.uint8)
    tmp = path.with_suffix(".npz.part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as z:
        for split, n in zip(SPLITS, counts):
            labels = (rng.random((n, N_CLASSES)) < 0.05).astype(np.uint8)
            with z.open(f"{split}_labels.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, labels, allow_pickle=False)
            header = {"descr": "|u1", "fortran_order": False, "shape": (n, size, size)}
            with z.open(f"{split}_images.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array_header_1_0(f, header)
                for start in range(0, n, chunk):
                    m = min(chunk, n - start)
                    idx = (np.arange(start, start + m) % len(pool))
                    block = np.roll(pool[idx], start // len(pool) % size, axis=2)
                    f.write(np.ascontiguousarray(block).tobytes())
    os.replace(tmp, path)
    return path.stat().st_size / 1e9


# ---------------------------------------------------------------- training runs (shared by groups)


def core_choice(size: int, batch_size: int = 128):
    """What core's `--amp auto` trains res-cnn in at `size` px on this CPU (core.train.autotune.Decision: .dtype,
    .channels_last), measured or read from core's cache exactly as core.train does."""
    import torch

    from core.train.recipe import TrainConfig
    from core.train.device import training_choice

    return training_choice(TrainConfig(size=size, batch_size=batch_size), torch.device("cpu"))


class RunCache:
    """Train core runs once per bench invocation: compute (AUC checks) and efficiency share them.

    Runs go through core.train.prepare_run/train exactly as the CLI would (in core's default
    precision unless `amp` says otherwise), into a temporary runs folder. Key: every TrainConfig
    field that changes the result, with `amp` as the precision and layout it resolves to, plus the thread count.
    """

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self._runs: dict[tuple, dict] = {}

    def train(self, data_root: Path, size: int, epochs: int, *, model: str = "res-cnn", seed: int = 0,
              amp: str = "auto", channels_last: bool = True, threads: int | None = None,
              batch_size: int = 128) -> dict:
        """Train and evaluate; returns {'val_auc' (last epoch), 'test_auc' (best ckpt), 'run_dir', 'seconds',
        'images_per_s' (mean train img/s over epochs)}."""
        import torch

        from core.runs import record as runs
        from core.train.recipe import TrainConfig
        from core.train.device import amp_dtype, train_layout
        from core.train import prepare_run, train

        cfg = TrainConfig(size=size, epochs=epochs, batch_size=batch_size, model=model, seed=seed, amp=amp,
                          channels_last=channels_last, patience=0, device="cpu", data_root=str(data_root),
                          runs_dir=str(self.workdir / "runs"), name="bench")
        cpu = torch.device("cpu")
        key = (str(data_root), size, epochs, model, seed, amp_dtype(cfg, cpu), train_layout(cfg, cpu), threads, batch_size)
        if key in self._runs:
            return self._runs[key]
        before = torch.get_num_threads()
        t = time.perf_counter()
        try:
            if threads:
                torch.set_num_threads(threads)
            run_dir = prepare_run(cfg)
            state = train(run_dir)
        finally:
            torch.set_num_threads(before)
        if state != "finished":
            raise RuntimeError(f"bench training run {run_dir} ended as {state}")
        rows = runs.read_metrics(run_dir)
        test = runs.read_test_metrics(run_dir)
        out = {"val_auc": rows[-1]["val_auc"], "max_val_auc": max(r["val_auc"] for r in rows),
               "test_auc": test["auc"], "run_dir": run_dir, "seconds": time.perf_counter() - t,
               "images_per_s": float(np.mean([r["images_per_s"] for r in rows]))}
        self._runs[key] = out
        return out


def workdir(base: str | None = None) -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="chestmnist-bench-", dir=base)


def nih_available() -> bool:
    return (NIH1000 / "chestmnist.npz").is_file() and (NIH1000 / "chestmnist_64.npz").is_file()


@dataclass
class Context:
    """What every group gets: the mode, a scratch folder, shared training runs, and a log function."""

    mode: Mode
    workdir: Path
    runs: RunCache
    log: Callable[[str], None] = print
    nih: Path | None = field(default=None)

    def planted_root(self, size: int) -> Path:
        root = self.workdir / "planted"
        from core.data.chestmnist import npz_path
        if not npz_path(root, size).is_file():
            write_planted(root, size, self.mode.planted, seed=size)
        return root
