"""`--amp auto`'s measured choice (core.train.autotune) against the candidates it chose from.

At each size of mode.autotune_sizes, with measuring on and an empty cache of its own:

* the choice is made as core makes it the first time (timed: training + inference choice), and
  again from the cache (timed: should cost nothing);
* then, independently of the choice's own short measurement, the four training candidates
  (fp32 / bf16 x NCHW / channels_last, bf16 only where the CPU has it natively) are timed at the real
  batch (mode.compute_batch) with bench/compute.py's step, and the four inference candidates
  (NCHW / channels_last x batch norm folded or not, fp32) at twice that batch;
* the rows compare the chosen candidate's speed with the fastest of them (target: within 5%).
"""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import torch

from bench.common import Context, Mode, Row, at_least, at_most, interleaved, median
from bench.compute import HW_VARIANTS, Infer, bench_train
from core import env
from core.train import autotune
from core.models.registry import DEFAULT_MODEL, build_model
from core.train.device import cpu_has_bf16

INFER_CANDIDATES = ("fp32_nchw", "fp32_cl", "folded_nchw", "folded_cl")  # bench/compute.py's Infer names


@contextlib.contextmanager
def fresh_measuring(cache: Path):
    """Measuring on, into an empty cache folder, whatever the environment says; restored after."""
    saved = {k: os.environ.get(k) for k in (env.AUTOTUNE, env.CACHE)}
    os.environ[env.AUTOTUNE], os.environ[env.CACHE] = "on", str(cache)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def infer_name(d: autotune.Decision) -> str:
    """An inference decision as bench/compute.py's Infer name (fp32_cl, folded_nchw, ...)."""
    return f"{'folded' if d.fold_bn else 'fp32'}_{'cl' if d.channels_last else 'nchw'}"


def choose(size: int, batch: int, cache: Path) -> dict:
    """Make the training and inference choice at `size` from an empty cache, then again from the cache."""
    cpu = torch.device("cpu")
    torch.manual_seed(0)
    model = build_model(DEFAULT_MODEL, size)
    with fresh_measuring(cache):
        t0 = time.perf_counter()
        tr = autotune.choose_train(DEFAULT_MODEL, size, batch, cpu, cpu_has_bf16())
        t1 = time.perf_counter()
        inf = autotune.choose_infer(model, size, 2 * batch, cpu)
        t2 = time.perf_counter()
        again = (autotune.choose_train(DEFAULT_MODEL, size, batch, cpu, cpu_has_bf16()),
                 autotune.choose_infer(model, size, 2 * batch, cpu))
        t3 = time.perf_counter()
    assert all(d.how == "cached" for d in again), [d.how for d in again]
    return {"train": tr, "infer": inf, "first_train_s": t1 - t0, "first_infer_s": t2 - t1, "cached_s": t3 - t2}


def bench_candidates(size: int, mode: Mode) -> dict:
    """img/s (median and best) of the training candidates at mode.compute_batch and of the inference
    candidates at twice that, timed interleaved. Figures dict."""
    variants = HW_VARIANTS if cpu_has_bf16() else tuple(v for v in HW_VARIANTS if "bf16" not in v)
    out = {k.replace(".train.", ".autotune.train."): v for k, v in bench_train(size, mode, variants=variants).items()}
    torch.manual_seed(0)
    model = build_model(DEFAULT_MODEL, size)
    infs = {v: Infer(v, model, size, 2 * mode.compute_batch) for v in INFER_CANDIDATES}
    t = interleaved({v: inf.timed() for v, inf in infs.items()}, mode.repeats, mode.warmup)
    batch = 2 * mode.compute_batch
    out.update({f"compute.{size}.autotune.infer.{v}_img_s": batch / median(t[v]) for v in infs})
    out.update({f"compute.{size}.autotune.infer.{v}_best_img_s": batch / min(t[v]) for v in infs})
    return out


def run(ctx: Context) -> list[Row]:
    mode, rows = ctx.mode, []
    for size in mode.autotune_sizes:
        ctx.log(f"autotune: choosing at {size} px from an empty cache")
        c = choose(size, mode.compute_batch, ctx.workdir / f"autotune-cache-{size}")
        ctx.log(f"autotune: timing the candidates at {size} px")
        f = bench_candidates(size, mode)
        p = f"compute.{size}.autotune."
        for task, name in (("train", c["train"].name), ("infer", infer_name(c["infer"]))):
            names = [k.removeprefix(p + task + ".").removesuffix("_img_s") for k in f
                     if k.startswith(p + task + ".") and k.endswith("_img_s") and not k.endswith("_best_img_s")]
            fastest = max(names, key=lambda v: f[p + f"{task}.{v}_img_s"])
            best_fastest = max(names, key=lambda v: f[p + f"{task}.{v}_best_img_s"])
            val, base = f[p + f"{task}.{name}_img_s"], f[p + f"{task}.{fastest}_img_s"]
            speeds = ", ".join(f"{v} {f[p + f'{task}.{v}_img_s']:.0f}" for v in names)
            rows.append(Row(p + f"{task}_choice_vs_fastest", val, "img/s", base, val / base, ">= 0.95x",
                            at_least(val / base, 0.95),
                            f"--amp auto chose {name} ({c[task].reason}); fastest here {fastest}; "
                            f"candidates at batch {mode.compute_batch * (1 if task == 'train' else 2)}: {speeds}",
                            f[p + f"{task}.{name}_best_img_s"] / f[p + f"{task}.{best_fastest}_best_img_s"]))
        first = c["first_train_s"] + c["first_infer_s"]
        rows.append(Row(p + "choice_first_s", first, "s", None, None, "<= 10 s", at_most(first, 10.0),
                        f"training choice {c['first_train_s']:.1f} s + inference choice {c['first_infer_s']:.1f} s, "
                        "measured from an empty cache"))
        rows.append(Row(p + "choice_cached_s", c["cached_s"] * 1e3, "ms", None, None, "<= 50 ms",
                        at_most(c["cached_s"] * 1e3, 50.0), "both choices again, read from the cache"))
    return rows
