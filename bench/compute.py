"""Compute: memory layout, bf16 autocast, torch.compile and thread count, each with its speed and
its effect on AUC.

Speed: one training step (forward + backward + Adam, batch 128) and one inference batch of core's
default model on pre-made tensors, variants timed interleaved against the fp32 NCHW baseline:

* `fp32_nchw` PyTorch's default layout (baseline), `fp32_cl` channels_last, `bf16_nchw`,
  `bf16_cl` CPU autocast to bfloat16 (core trains in whichever of these four `--amp auto` measured
  fastest here: core_train_variant; bench/autotune.py checks that choice),
  inference only: `folded_cl` / `folded_bf16_cl` batch norm folded into the convolutions
  (core.models.fold_batchnorm; `folded_cl` is what core.evaluate.predict runs), `fp32_cl_1t` channels_last on 1 thread,
  inference only: `compiled_cl` / `compiled_bf16_cl` torch.compile(dynamic=False) of the eval model.

AUC: the same seed trained through core.train with each setting (fp32 channels_last = reference,
fp32 NCHW, bf16, 1 thread) on a planted-pattern task and on NIH-1000; the tolerance is the
seed-to-seed difference of the reference (seed 0 vs seed 1), floored at 0.01. Inference-only
variants score the reference run's validation split and report the AUC and the largest score
difference against fp32 eager.
"""
from __future__ import annotations

import copy
import time
from typing import Callable

import numpy as np
import torch
from torch import nn

from bench.common import Context, Mode, Row, at_least, at_most, core_choice, interleaved, median, torch_threads
from core.data import batching
from core.data import chestmnist as D
from core import metrics
from core.models.registry import DEFAULT_MODEL, build_model, fold_batchnorm
from core.train.step import train_step


def core_train_variant(size: int, batch_size: int = 128) -> str:
    """The TRAIN_VARIANTS name of core's training step at `size` on this CPU (`--amp auto`'s measured choice)."""
    return core_choice(size, batch_size).name


TRAIN_VARIANTS = ("fp32_nchw", "fp32_cl", "bf16_nchw", "bf16_cl", "fp32_cl_1t")
INFER_VARIANTS = ("fp32_nchw", "fp32_cl", "bf16_cl", "folded_cl", "folded_bf16_cl", "fp32_cl_1t")
COMPILED_VARIANTS = ("compiled_cl", "compiled_bf16_cl")


def _one_thread(fn: Callable[[], None]) -> Callable[[], None]:
    def call() -> None:
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            fn()
        finally:
            torch.set_num_threads(before)
    return call


def _variant(name: str) -> tuple[bool, torch.dtype | None, bool]:
    """(channels_last, autocast dtype, one thread) of a variant name."""
    return ("_cl" in name, torch.bfloat16 if "bf16" in name else None, name.endswith("_1t"))


def _inputs(size: int, batch: int, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(size)
    x = batching.to_tensor(rng.integers(0, 256, (batch, size, size), dtype=np.uint8), "cpu", channels_last)
    y = torch.from_numpy((rng.random((batch, D.N_CLASSES)) < 0.05).astype(np.float32))
    return x, y


MIN_EPOCHS_FOR_INFER_CHECK = 5
LOSS = nn.BCEWithLogitsLoss()  # the compute rows time the model and optimizer; the loss weighting is not varied
HW_VARIANTS = ("fp32_nchw", "fp32_cl", "bf16_nchw", "bf16_cl")  # timed again on one thread


def bench_train(size: int, mode: Mode, model_name: str = DEFAULT_MODEL, variants=TRAIN_VARIANTS,
                threads: int | None = None) -> dict:
    """Training img/s of each variant at `size` (batch mode.compute_batch), under
    torch.set_num_threads(threads) (None: torch's default). Keys carry `train_1t` on one thread. Figures dict."""
    with torch_threads(threads):
        out = _bench_train(size, mode, model_name, variants)
    return {k.replace(".train.", ".train_1t.") if threads == 1 else k: v for k, v in out.items()}


def _bench_train(size: int, mode: Mode, model_name: str, variants) -> dict:
    torch.manual_seed(0)
    base = build_model(model_name, size).train()
    batch = mode.compute_batch
    fns = {}
    for v in variants:
        cl, dtype, one = _variant(v)
        model = copy.deepcopy(base)
        if cl:
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        x, y = _inputs(size, batch, cl)

        def step(model=model, opt=opt, x=x, y=y, dtype=dtype) -> None:
            train_step(model, opt, LOSS, x, y, dtype)[0].item()
        fns[v] = _one_thread(step) if one else step
    repeats = mode.repeats if size < 224 else max(2, mode.repeats // 2)
    t = interleaved(fns, repeats, mode.warmup)
    return {**{f"compute.{size}.train.{v}_img_s": batch / median(t[v]) for v in variants},
            **{f"compute.{size}.train.{v}_best_img_s": batch / min(t[v]) for v in variants}}


class Infer:
    """One inference variant: its (possibly compiled) eval module, autocast dtype and a fixed input batch."""

    def __init__(self, name: str, model: nn.Module, size: int, batch: int):
        self.name = name
        self.channels_last, self.dtype, self.one_thread = _variant(name)
        self.module = self._prepare(model)
        self.fn = torch.compile(self.module, dynamic=False) if name.startswith("compiled") else self.module
        self.x = _inputs(size, batch, self.channels_last)[0]

    def _prepare(self, model: nn.Module) -> nn.Module:
        module = fold_batchnorm(model) if self.name.startswith("folded") else copy.deepcopy(model).eval()
        return module.to(memory_format=torch.channels_last) if self.channels_last else module

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=self.dtype, enabled=self.dtype is not None):
            return self.fn(x)

    def timed(self) -> Callable[[], None]:
        call = lambda: self(self.x)  # noqa: E731
        return _one_thread(call) if self.one_thread else call

    def load(self, trained: nn.Module) -> None:
        """Copy trained weights in place (a compiled module keeps its compiled code); a folded
        variant folds the trained model again."""
        if self.name.startswith("folded"):
            self.module = self.fn = self._prepare(trained)
            return
        with torch.no_grad():
            for a, b in zip(self.module.state_dict().values(), trained.state_dict().values()):
                a.copy_(b)


def infer_variants(size: int, mode: Mode, model: nn.Module | None = None, compile_: bool | None = None
                   ) -> tuple[dict[str, Infer], dict]:
    """The inference variants at `size` (batch 2x mode.compute_batch) and the compile seconds
    of the compiled ones (their first call). Compiled only up to 64 px unless asked."""
    compile_ = (mode.compile and size <= 64) if compile_ is None else compile_
    if model is None:
        torch.manual_seed(0)
        model = build_model(DEFAULT_MODEL, size)
    variants, extra = {}, {}
    for v in INFER_VARIANTS + (COMPILED_VARIANTS if compile_ else ()):
        variants[v] = inf = Infer(v, model, size, 2 * mode.compute_batch)
        if v.startswith("compiled"):
            t0 = time.perf_counter()
            inf(inf.x)
            extra[f"compute.{size}.infer.{v}_compile_s"] = time.perf_counter() - t0
    return variants, extra


def bench_infer(size: int, mode: Mode, model: nn.Module | None = None, compile_: bool | None = None,
                made: tuple[dict[str, Infer], dict] | None = None, threads: int | None = None) -> dict:
    """Inference img/s of each variant at `size` (plus compile seconds of compiled ones). With
    threads=1, every variant but the `_1t` ones on one thread, keys under `infer_1t`. Figures dict."""
    variants, extra = made or infer_variants(size, mode, model, compile_)
    if threads == 1:
        variants = {v: inf for v, inf in variants.items() if not inf.one_thread}
        extra = {}
    with torch_threads(threads):
        t = interleaved({v: inf.timed() for v, inf in variants.items()}, mode.repeats, mode.warmup)
    batch = 2 * mode.compute_batch
    key = "infer_1t" if threads == 1 else "infer"
    return {**extra, **{f"compute.{size}.{key}.{v}_img_s": batch / median(t[v]) for v in variants},
            **{f"compute.{size}.{key}.{v}_best_img_s": batch / min(t[v]) for v in variants}}


def score_with(call: Callable[[torch.Tensor], torch.Tensor], images: np.ndarray, batch: int,
               channels_last: bool) -> np.ndarray:
    """Sigmoid scores of uint8 images through `call`, in fixed-size batches (the last one padded,
    so a compiled dynamic=False module is never recompiled)."""
    out = np.empty((len(images), D.N_CLASSES), dtype=np.float32)
    for start in range(0, len(images), batch):
        chunk = images[start:start + batch]
        n = len(chunk)
        if n < batch:
            chunk = np.concatenate([chunk, np.zeros((batch - n, *chunk.shape[1:]), chunk.dtype)])
        x = batching.to_tensor(chunk, "cpu", channels_last)
        out[start:start + n] = torch.sigmoid(call(x).float())[:n].numpy()
    return out


# ---------------------------------------------------------------- threads in fresh processes

THREAD_ENVS = {  # name -> (extra environment, torch threads or None for torch's default)
    "default": ({}, None),
    "omp_passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, None),
    "1thread": ({}, 1),
}


def thread_child(size: int, seconds: float, batch: int, threads: int | None) -> dict:
    """(In a fresh process) training img/s of core's training step (fp32 channels_last) at `size` for about `seconds`."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(DEFAULT_MODEL, size).to(memory_format=torch.channels_last).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = _inputs(size, batch, True)
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 3:
        t = time.perf_counter()
        train_step(model, opt, LOSS, x, y, None)[0].item()
        times.append(time.perf_counter() - t)
    return {"img_s": batch / median(times[1:]), "best_img_s": batch / min(times[1:]), "steps": len(times),
            "threads": torch.get_num_threads()}


def bench_thread_env(size: int, mode: Mode) -> dict:
    """Training img/s at `size` in fresh processes: torch's default threads, the same with
    OMP_WAIT_POLICY=PASSIVE (OpenMP workers sleep instead of spinning; must be set before torch
    loads), and 1 thread. Rounds alternate the order. Figures dict."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    speeds: dict[str, list[float]] = {k: [] for k in THREAD_ENVS}
    names = list(THREAD_ENVS)
    for r in range(mode.thread_env_rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            env, threads = THREAD_ENVS[name]
            cmd = [sys.executable, "-m", "bench.compute", "thread-child", "--size", str(size), "--seconds",
                   str(mode.thread_env_seconds), "--batch", str(mode.compute_batch)]
            if threads:
                cmd += ["--threads", str(threads)]
            p = subprocess.run(cmd, cwd=repo, env={**os.environ, **env}, capture_output=True, text=True)
            if p.returncode != 0:
                raise RuntimeError(f"thread child failed: {p.stderr[-1500:]}")
            speeds[name].append(json.loads(p.stdout.strip().splitlines()[-1])["img_s"])
    return {**{f"compute.{size}.threads.{k}_img_s": median(v) for k, v in speeds.items()},
            **{f"compute.{size}.threads.{k}_best_img_s": max(v) for k, v in speeds.items()}}


# ---------------------------------------------------------------- effect on AUC


TRAINED_VARIANTS = {  # name -> core.train settings
    "fp32_cl": {"amp": "off"},  # the fp32 reference (core's default on CPUs without native bf16)
    "fp32_cl_seed1": {"amp": "off", "seed": 1},
    "fp32_nchw": {"amp": "off", "channels_last": False},
    "bf16_cl": {"amp": "bf16"},
    "bf16_cl_seed1": {"amp": "bf16", "seed": 1},
    "fp32_cl_1t": {"amp": "off", "threads": 1},
}


def auc_effects(ctx: Context, size: int, datasets: dict, variants=tuple(TRAINED_VARIANTS)) -> dict:
    """Val AUC after ctx.mode.auc_epochs epochs of each trained variant on each dataset (same seed). Figures dict."""
    out = {}
    for ds, root in datasets.items():
        p = f"compute.{size}.auc.{ds}."
        for v in variants:
            r = ctx.runs.train(root, size, ctx.mode.auc_epochs, **TRAINED_VARIANTS[v])
            out[p + f"{v}_val_auc"] = r["val_auc"]
            out[p + f"{v}_train_img_s"] = r["images_per_s"]
    return out


def infer_auc_effects(ctx: Context, size: int, datasets: dict, variants: dict[str, Infer]) -> dict:
    """Val AUC of the default run's model scored through each inference variant (loaded with its
    weights) and the largest score difference to fp32 NCHW eager. Figures dict."""
    from core.runs import checkpoints

    out = {}
    for ds, root in datasets.items():
        p = f"compute.{size}.auc.{ds}."
        trained = checkpoints.load_model(ctx.runs.train(root, size, ctx.mode.auc_epochs)["run_dir"], "best")
        val = D.load(root, size).val
        scores = {}
        for v, inf in variants.items():
            if inf.one_thread:
                continue
            inf.load(trained)
            scores[v] = score_with(inf, val.images, len(inf.x), inf.channels_last)
        for v, s in scores.items():
            out[p + f"infer_{v}_val_auc"] = metrics.mean_auc(val.labels, s)
            out[p + f"infer_{v}_max_abs_diff"] = float(np.abs(s - scores["fp32_nchw"]).max())
    return out


# ---------------------------------------------------------------- rows


def _vs(f: dict, p: str, v: str, base: str, name: str, note: str, target: str = "", limit: float | None = None,
        unit: str = "img/s") -> Row:
    """Row of variant `v` against `base`, both read from figures `f` under prefix `p`."""
    val, b = f[p + v + "_img_s"], f[p + base + "_img_s"]
    best = f[p + v + "_best_img_s"] / f[p + base + "_best_img_s"]
    return Row(p + name, val, unit, b, val / b, target, None if limit is None else at_least(val / b, limit), note, best)


def _train_rows(ctx: Context, size: int) -> list[Row]:
    mode, rows = ctx.mode, []
    ctx.log(f"compute: train variants at {size} px")
    tr = bench_train(size, mode)
    p = f"compute.{size}.train."
    core_v = core_train_variant(size, mode.compute_batch)
    for v in TRAIN_VARIANTS[1:]:
        target, limit = (">= 1.5x", 1.5) if (size == 64 and v == core_v) else ("", None)
        note = f"vs fp32 NCHW, batch {mode.compute_batch}" + ("; core's training step" if v == core_v else "")
        rows.append(_vs(tr, p, v, "fp32_nchw", v, note, target, limit))
    rows.append(_vs(tr, p, "bf16_cl", "fp32_cl", "bf16_cl_vs_fp32_cl", "bf16 autocast on top of channels_last"))
    rows.append(_vs(tr, p, "fp32_cl", "fp32_cl_1t", "threads_default_vs_1",
                    f"{torch.get_num_threads()} threads (torch default) vs torch.set_num_threads(1), in this process"))
    ctx.log(f"compute: train variants at {size} px on 1 thread")
    tr1 = bench_train(size, mode, variants=HW_VARIANTS, threads=1)
    p1 = f"compute.{size}.train_1t."
    for v in HW_VARIANTS[1:]:
        rows.append(_vs(tr1, p1, v, "fp32_nchw", v, "vs fp32 NCHW, all on 1 thread (no OpenMP waits: the hardware ratio)"))
    rows.append(_vs(tr1, p1, "bf16_cl", "fp32_cl", "bf16_cl_vs_fp32_cl", "bf16 autocast on top of channels_last, 1 thread"))
    return rows


def _auc_datasets(ctx: Context, size: int) -> dict:
    """{dataset name: data root} the AUC effect of precision is checked on at `size` ({} if none)."""
    mode, datasets = ctx.mode, {}
    if size in mode.auc_sizes:
        if "planted" in mode.auc_datasets:
            datasets["planted"] = ctx.planted_root(size)
        if "nih1000" in mode.auc_datasets and ctx.nih is not None:
            datasets["nih1000"] = ctx.nih
    return datasets


def _infer_rows(ctx: Context, size: int, made: tuple) -> list[Row]:
    mode, rows = ctx.mode, []
    inf = bench_infer(size, mode, made=made)
    p = f"compute.{size}.infer."
    for v in made[0]:
        if v == "fp32_nchw":
            continue
        target, limit = (">= 2x", 2.0) if (size == 64 and v == "folded_cl") else ("", None)
        note = f"vs fp32 NCHW eager, batch {2 * mode.compute_batch}"
        if v == "folded_cl":
            note += "; core's inference path (core.evaluate.predict)"
        if v.startswith("compiled"):
            note += f"; compiling took {inf[p + v + '_compile_s']:.0f} s"
        rows.append(_vs(inf, p, v, "fp32_nchw", v, note, target, limit))
    rows.append(_vs(inf, p, "folded_cl", "fp32_cl", "folded_vs_cl",
                    "batch norm folded into the convolutions vs not, both channels_last fp32"))
    if "compiled_cl" in made[0]:
        rows.append(_vs(inf, p, "compiled_cl", "fp32_cl", "compiled_vs_eager_cl",
                        "torch.compile vs eager, both channels_last fp32"))
    ctx.log(f"compute: inference variants at {size} px on 1 thread")
    inf1 = bench_infer(size, mode, made=made, threads=1)
    p1 = f"compute.{size}.infer_1t."
    for v in made[0]:
        if v not in ("fp32_nchw", "fp32_cl_1t"):
            rows.append(_vs(inf1, p1, v, "fp32_nchw", v, "vs fp32 NCHW eager, all on 1 thread"))
    return rows


def _infer_auc_rows(ctx: Context, size: int, datasets: dict, variants) -> list[Row]:
    mode, rows = ctx.mode, []
    gate = mode.auc_epochs >= MIN_EPOCHS_FOR_INFER_CHECK  # inference-precision AUC checks hold only for trained models
    f = infer_auc_effects(ctx, size, datasets, variants)
    for ds in datasets:
        p = f"compute.{size}.auc.{ds}."
        ref = f[p + "infer_fp32_nchw_val_auc"]
        for v in variants:
            if p + f"infer_{v}_val_auc" not in f or v == "fp32_nchw":
                continue
            val = f[p + f"infer_{v}_val_auc"]
            # After a couple of epochs the scores are nearly tied, and bf16 rounding alone
            # reorders them: the check needs a model that has learned something.
            rows.append(Row(p + f"infer_{v}_val_auc", val, "val AUC", ref, None, "|diff| <= 0.005" if gate else "",
                            at_most(abs(val - ref), 0.005) if gate else None,
                            f"same trained model as fp32 NCHW; max |score diff| {f[p + f'infer_{v}_max_abs_diff']:.2g}"
                            + ("" if gate else f"; {mode.auc_epochs}-epoch model, not held to the target")))
    return rows


def _thread_rows(ctx: Context, size: int) -> list[Row]:
    mode = ctx.mode
    ctx.log(f"compute: thread settings in fresh processes at {size} px")
    f = bench_thread_env(size, mode)
    p = f"compute.{size}.threads."
    b = f[p + "default_img_s"]
    return [Row(p + name, f[p + name + "_img_s"], "train img/s", b, f[p + name + "_img_s"] / b, "", None,
                f"{note}; vs torch's default ({torch.get_num_threads()} threads, OpenMP spin-wait); "
                f"fresh process each, {mode.thread_env_rounds} round(s) of {mode.thread_env_seconds:g} s",
                f[p + name + "_best_img_s"] / f[p + "default_best_img_s"])
            for name, note in (("omp_passive", "OMP_WAIT_POLICY=PASSIVE set before torch loads"),
                               ("1thread", "torch.set_num_threads(1)"))]


def run(ctx: Context) -> list[Row]:
    mode, rows = ctx.mode, []
    for size in mode.compute_sizes:
        rows += _train_rows(ctx, size)
        datasets = _auc_datasets(ctx, size)
        if datasets:
            variants = (tuple(TRAINED_VARIANTS) if size == min(mode.auc_sizes) and mode.auc_all_variants
                        else ("fp32_cl", "fp32_cl_seed1", "bf16_cl", "bf16_cl_seed1") if mode.auc_all_variants
                        else ("fp32_cl", "fp32_cl_seed1", "bf16_cl"))
            ctx.log(f"compute: training for the AUC effect at {size} px ({', '.join(datasets)}; {', '.join(variants)})")
            rows += _auc_rows(size, mode, auc_effects(ctx, size, datasets, variants), datasets, variants)
        ctx.log(f"compute: inference variants at {size} px")
        made = infer_variants(size, mode)
        rows += _infer_rows(ctx, size, made)
        if datasets:
            rows += _infer_auc_rows(ctx, size, datasets, made[0])
    for size in mode.thread_env_sizes:
        rows += _thread_rows(ctx, size)
    return rows


def _auc_rows(size: int, mode: Mode, f: dict, datasets: dict, variants) -> list[Row]:
    """Trained variants against the reference (fp32 channels_last, seed 0). Tolerance: the seed-to-seed
    spread (seed 0 vs 1) of fp32, and of bf16 when it has a second seed too, floored at 0.01. With two
    seeds of bf16 the comparison is of the two-seed means."""
    rows = []
    for ds in datasets:
        p = f"compute.{size}.auc.{ds}."
        auc = {v: f[p + f"{v}_val_auc"] for v in variants}
        ref = auc["fp32_cl"]
        spreads = [abs(auc["fp32_cl_seed1"] - ref)]
        if "bf16_cl_seed1" in auc:
            spreads.append(abs(auc["bf16_cl_seed1"] - auc["bf16_cl"]))
        tol = max(*spreads, 0.01)
        speed = lambda v: f"{f[p + v + '_train_img_s']:.0f} img/s in core.train"  # noqa: E731
        rows.append(Row(p + "fp32_cl_val_auc", ref, "val AUC", None, None, "", None,
                        f"fp32 channels_last reference, seed 0, {mode.auc_epochs} epochs; {speed('fp32_cl')}"))
        rows.append(Row(p + "fp32_cl_seed1_val_auc", auc["fp32_cl_seed1"], "val AUC", ref, None, "", None,
                        f"seed 1: seed-to-seed spread {spreads[0]:.4f}"))
        if "bf16_cl_seed1" in auc:
            fp_mean = (ref + auc["fp32_cl_seed1"]) / 2
            bf_mean = (auc["bf16_cl"] + auc["bf16_cl_seed1"]) / 2
            rows.append(Row(p + "bf16_cl_val_auc", auc["bf16_cl"], "val AUC", ref, None, "", None,
                            f"bf16 seed 0; diff {auc['bf16_cl'] - ref:+.4f} vs fp32 seed 0; {speed('bf16_cl')}"))
            rows.append(Row(p + "bf16_cl_seed1_val_auc", auc["bf16_cl_seed1"], "val AUC", auc["fp32_cl_seed1"], None,
                            "", None, f"bf16 seed 1 (baseline: fp32 seed 1); bf16 seed spread {spreads[1]:.4f}"))
            rows.append(Row(p + "bf16_mean_val_auc", bf_mean, "val AUC", fp_mean, None, f"|diff| <= {tol:.3f}",
                            at_most(abs(bf_mean - fp_mean), tol),
                            f"mean of seeds 0 and 1, bf16 vs fp32: diff {bf_mean - fp_mean:+.4f}; tolerance = "
                            "largest seed-to-seed spread"))
        for v in variants:
            if v in ("fp32_cl", "fp32_cl_seed1", "bf16_cl_seed1") or (v == "bf16_cl" and "bf16_cl_seed1" in auc):
                continue
            rows.append(Row(p + v + "_val_auc", auc[v], "val AUC", ref, None, f"|diff| <= {tol:.3f}",
                            at_most(abs(auc[v] - ref), tol), f"diff {auc[v] - ref:+.4f} vs fp32 reference; {speed(v)}"))
    return rows


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    p = argparse.ArgumentParser(prog="python -m bench.compute")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("thread-child", help="(internal) training img/s in this fresh process; one JSON line")
    c.add_argument("--size", type=int, default=64)
    c.add_argument("--seconds", type=float, default=5.0)
    c.add_argument("--batch", type=int, default=128)
    c.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    print(json.dumps(thread_child(args.size, args.seconds, args.batch, args.threads)))
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(main())
