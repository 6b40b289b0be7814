"""Memory: peak RSS of training and of test-split inference at 224 px on a full-size split.

A synthetic uint8 npz in ChestMNIST layout (full mode: 78,468 / 11,219 / 22,433 images at 224 px,
~5.6 GB, train images ~3.9 GB) is streamed to a temporary folder; core.data reads it by row from
its .npy cache (CHESTMNIST_CACHE points into the same temporary folder). Each measurement runs in
a fresh subprocess (`python -m bench.memory child ...`), which reports its own peak RSS (VmHWM
from /proc/self/status, the figure getrusage's ru_maxrss gives) and the anonymous / file-backed
split of its RSS, sampled after every batch.

* train: core's default model and training step at 224 px over one shuffled pass of the whole
  train split in batches of 128, reading every batch (core.data.batching.to_tensor on the indexed rows,
  as core.train does) and training on every k-th batch so that `steps` training steps spread
  over the pass: the page footprint of a whole epoch with the activations of training.
* infer: core.evaluate.predict over the test split.

`reader=rows` is core as it is (core.data.npz.NpyRows: plain file reads, so no file page is ever
mapped into the process; the kernel's page cache still caches them, outside the process's RSS).
`reader=mmap` is the baseline core used before: np.memmap over the same .npy file, whose pages
count toward RSS once a shuffled epoch has touched them.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import Context, Mode, Row, at_most, write_large_npz

LIMIT_GB = 3.0


# ---------------------------------------------------------------- inside the child


def proc_status() -> dict[str, float]:
    """VmHWM (peak RSS), VmRSS, RssAnon, RssFile of this process in GB, from /proc/self/status."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem"):
            out[key] = int(rest.split()[0]) * 1024 / 1e9
    return out


def child(args: argparse.Namespace) -> dict:
    import torch
    from torch import nn

    from core.data import batching
    from core.data import chestmnist as D
    from core.evaluate.scoring import predict
    from core.models.registry import build_model

    t_start = time.perf_counter()
    data = D.load(args.root, args.size)  # NpyRows over the .npy cache at >= 128 px
    split = data.train if args.what == "train" else data.test
    images = split.images if args.reader == "rows" else np.load(split.images.path, mmap_mode="r")
    samples = [proc_status()]
    peak_anon = peak_file = 0.0

    def sample() -> None:
        nonlocal peak_anon, peak_file
        s = proc_status()
        peak_anon, peak_file = max(peak_anon, s.get("RssAnon", 0)), max(peak_file, s.get("RssFile", 0))

    torch.manual_seed(0)
    model = build_model("res-cnn", args.size).to(memory_format=torch.channels_last)
    steps = reads = 0
    t0 = time.perf_counter()
    if args.what == "train":
        n = len(split)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss_fn = nn.BCEWithLogitsLoss(pos_weight=batching.pos_weight(split.labels, 10.0))
        order = torch.randperm(n, generator=torch.Generator().manual_seed(0)).numpy()
        n_batches = -(-n // args.batch)
        every = max(1, n_batches // max(1, args.steps))
        scores = []
        model.train()
        for b, start in enumerate(range(0, n, args.batch)):
            idx = np.sort(order[start:start + args.batch])
            x = batching.to_tensor(images[idx], "cpu", True)
            y = torch.from_numpy(split.labels[idx].astype(np.float32))
            reads += len(idx)
            if b % every == 0 and steps < args.steps:
                logits = model(x)
                loss = loss_fn(logits.float(), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss.item()
                scores.append(torch.sigmoid(logits.detach().float()).numpy())
                steps += 1
            del x
            sample()
    else:
        out = predict(model, images, batch_size=256, channels_last=True)
        reads = len(out)
        sample()
    seconds = time.perf_counter() - t0
    end = proc_status()
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
    return {"what": args.what, "reader": args.reader, "peak_rss_gb": end["VmHWM"], "ru_maxrss_gb": usage,
            "peak_anon_gb": max(peak_anon, end.get("RssAnon", 0)), "peak_file_gb": max(peak_file, end.get("RssFile", 0)),
            "start_rss_gb": samples[0]["VmRSS"], "steps": steps, "images_read": reads, "seconds": seconds,
            "total_seconds": time.perf_counter() - t_start, "n_split": len(split)}


# ---------------------------------------------------------------- in the parent


def _run_child(root: Path, cache: Path, what: str, reader: str, steps: int, batch: int, size: int) -> dict:
    cmd = [sys.executable, "-m", "bench.memory", "child", "--root", str(root), "--what", what, "--reader", reader,
           "--steps", str(steps), "--batch", str(batch), "--size", str(size)]
    env = {**os.environ, "CHESTMNIST_CACHE": str(cache)}
    repo = Path(__file__).resolve().parents[1]
    p = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"memory child failed ({p.returncode}): {p.stderr[-2000:]}")
    result = json.loads(p.stdout.strip().splitlines()[-1])
    # cross-check with the parent's view: max RSS over terminated children so far
    result["parent_children_maxrss_gb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 1e9
    return result


def prepare(base: Path, counts: tuple[int, int, int], size: int = 224) -> tuple[Path, Path, dict]:
    """Write (or reuse) the synthetic npz and build core's .npy cache; (root, cache, timings)."""
    root = base / f"data-{size}-{'-'.join(map(str, counts))}"
    cache = base / "cache"
    from core.data.chestmnist import npz_path
    info = {}
    path = npz_path(root, size)
    if not path.is_file():
        root.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        info["npz_gb"] = write_large_npz(path, size, counts)
        info["write_s"] = time.perf_counter() - t
    else:
        info["npz_gb"] = path.stat().st_size / 1e9
    # build core's .npy cache (streamed member by member; never holds a split in RAM)
    t = time.perf_counter()
    before = os.environ.get("CHESTMNIST_CACHE")
    os.environ["CHESTMNIST_CACHE"] = str(cache)
    try:
        from core.data import chestmnist as D
        data = D.load(root, size)
    finally:
        if before is None:
            os.environ.pop("CHESTMNIST_CACHE", None)
        else:
            os.environ["CHESTMNIST_CACHE"] = before
    info["cache_s"] = time.perf_counter() - t
    info["train_npy"] = data.train.images.path
    for s in D.SPLITS:
        data.split(s).images.close()
    return root, cache, info


def bench_memory(mode: Mode, base: Path, readers: tuple[str, ...] | None = None, size: int = 224) -> dict:
    """Peak RSS (GB) of training and test inference per reader. Figures dict."""
    readers = readers or mode.memory_readers
    root, cache, info = prepare(base, mode.memory_split, size)
    out = {f"memory.{size}.npz_gb": info["npz_gb"], f"memory.{size}.cache_build_s": info["cache_s"],
           f"memory.{size}.n_train": mode.memory_split[0], f"memory.{size}.n_test": mode.memory_split[2]}
    for reader in readers:
        # the memmap baseline's peak is the pages a full pass touches, so a few training steps
        # suffice; inference (whose split, 1.1 GB at full size, fits under the limit even fully
        # mapped) is measured with core's reader only
        steps = mode.memory_train_steps if reader == "rows" else max(2, mode.memory_train_steps // 10)
        results = {"train": _run_child(root, cache, "train", reader, steps, mode.memory_batch, size)}
        if reader == "rows":
            results["infer"] = _run_child(root, cache, "infer", reader, 0, mode.memory_batch, size)
        for what, r in results.items():
            p = f"memory.{size}.{what}.{reader}."
            out.update({p + "peak_rss_gb": r["peak_rss_gb"], p + "peak_anon_gb": r["peak_anon_gb"],
                        p + "peak_file_gb": r["peak_file_gb"], p + "images_read": r["images_read"],
                        p + "steps": r["steps"], p + "seconds": r["seconds"],
                        p + "img_s": r["images_read"] / r["seconds"]})
    out.update(read_speed(info["train_npy"], size, mode.memory_batch, max(9, mode.repeats * 3)))
    return out


def read_speed(train_npy: Path, size: int, batch: int, repeats: int) -> dict:
    """ms per shuffled batch read from the train split's .npy cache (prepare's `train_npy`): core's
    NpyRows vs np.memmap fancy indexing, interleaved, same sorted random indices for both (page
    cache warm after the children)."""
    from bench.common import interleaved, median
    from core.data import npz

    rows = npz.NpyRows(train_npy)
    images = np.load(rows.path, mmap_mode="r")
    rng = np.random.default_rng(0)
    batches = [np.sort(rng.choice(len(images), min(batch, len(images)), replace=False)) for _ in range(repeats + 2)]
    k = {"mmap": 0, "rows": 0}

    def read(name, source):
        def call():
            source[batches[k[name] % len(batches)]]
            k[name] += 1
        return call
    try:
        t = interleaved({"mmap": read("mmap", images), "rows": read("rows", rows)}, repeats, 2)
    finally:
        rows.close()
    return {f"memory.{size}.read_{k}_ms": median(v) * 1e3 for k, v in t.items()} | \
        {f"memory.{size}.read_{k}_best_ms": min(v) * 1e3 for k, v in t.items()}


def run(ctx: Context) -> list[Row]:
    mode = ctx.mode
    keep = os.environ.get("BENCH_KEEP_DATA")
    base = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="chestmnist-bench-mem-"))
    base.mkdir(parents=True, exist_ok=True)
    ctx.log(f"memory: {mode.memory_split[0]:,}/{mode.memory_split[1]:,}/{mode.memory_split[2]:,} images at 224 px in {base}")
    try:
        f = bench_memory(mode, base)
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
    rows = []
    n_train, n_test = mode.memory_split[0], mode.memory_split[2]
    for reader, label in (("rows", "core (NpyRows row reader)"), ("mmap", "np.memmap over the same .npy (core before)")):
        for what, n in (("train", n_train), ("infer", n_test)):
            p = f"memory.224.{what}.{reader}."
            if p + "peak_rss_gb" not in f:
                continue
            detail = (f"{f[p + 'steps']:.0f} train steps of {mode.memory_batch} + {f[p + 'images_read']:,.0f} "
                      f"shuffled reads of {n:,}" if what == "train" else f"predict over {f[p + 'images_read']:,.0f} of {n:,}")
            core = reader == "rows"  # the target is core's; the memmap row is the before-figure
            rows.append(Row(p + "peak_rss_gb", f[p + "peak_rss_gb"], "GB", None, None, f"< {LIMIT_GB:g} GB" if core else "",
                            at_most(f[p + "peak_rss_gb"], LIMIT_GB - 1e-9) if core else None,
                            f"{label}: {detail}; anon {f[p + 'peak_anon_gb']:.2f} + file-backed {f[p + 'peak_file_gb']:.2f} GB"))
    rows.append(Row("memory.224.read_rows_vs_mmap", f["memory.224.read_rows_ms"], "ms/batch", f["memory.224.read_mmap_ms"],
                    f["memory.224.read_mmap_ms"] / f["memory.224.read_rows_ms"], "", None,
                    f"reading one shuffled batch of {mode.memory_batch} train images: core's NpyRows vs np.memmap "
                    "indexing (page cache warm); ratio = speed-up",
                    f["memory.224.read_mmap_best_ms"] / f["memory.224.read_rows_best_ms"]))
    rows.append(Row("memory.224.cache_build_s", f["memory.224.cache_build_s"], "s", None, None, "", None,
                    f"core.data .npy cache extraction of a {f['memory.224.npz_gb']:.2f} GB npz"))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.memory")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("child", help="(internal) one measurement in a fresh process; prints one JSON line")
    c.add_argument("--root", required=True)
    c.add_argument("--what", choices=("train", "infer"), required=True)
    c.add_argument("--reader", choices=("rows", "mmap"), default="rows")
    c.add_argument("--steps", type=int, default=200)
    c.add_argument("--batch", type=int, default=128)
    c.add_argument("--size", type=int, default=224)
    args = p.parse_args(argv)
    print(json.dumps(child(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
