"""Input pipeline: core's batches + training step against medmnist's getting-started pipeline.

Variants, all on the same model (core's default res-cnn, same initial weights, Adam as core uses),
timed interleaved one training step (data + forward + backward + update) at a time:

* `medmnist`: medmnist's getting-started example. medmnist's own `ChestMNIST.__getitem__`
  (PIL `Image.fromarray` + transform) over our arrays, transform = ToTensor() + Normalize(.5, .5)
  re-implemented line for line from torchvision (which cannot be imported beside this torch),
  `DataLoader(batch_size=128, shuffle=True)`, model in PyTorch's default (NCHW) layout, fp32.
* `core`: core's default path: `core.data.batching.batches` (tensor-indexed uint8 batches, normalised on
  the fly) and core's training step (core.train.step.train_step: pos_weight BCE, GradScaler,
  loss.item(), sigmoid scores kept for the epoch's train AUC), in the precision and layout
  `--amp auto` chooses on this machine at this size (measured by core.train.autotune, or its cache).
* `compute`: the `core` step on pre-made float tensors: the ceiling any pipeline can reach.
* `medmnist_loader` (full mode): the example's loader feeding core's step: the loader's share.
* `core_fp32` / `core_bf16` (full mode): `core` in the other precision (`--amp off` where auto
  chose bf16), separating the precision's gain from the layout's and the loader's.
* `compute_compiled` (full mode, default threads): `compute` with the model under torch.compile,
  the one compute lever core does not use for training; its row says what it would add.

The loaders alone are timed too (no model), with a candidate `core_numpy` normalisation.
"""
from __future__ import annotations

import copy
import itertools
import time
from typing import Iterator

import numpy as np
import torch
from PIL import Image
from torch import nn

from bench.common import Context, Mode, Row, at_least, core_choice, interleaved, median, random_split, torch_threads
from core.data import batching
from core.models.registry import DEFAULT_MODEL, build_model
from core.train.step import grad_scaler, train_step


def other_precision(core_amp: torch.dtype | None) -> tuple[torch.dtype | None, str]:
    """(dtype, variant name) of the precision core did not choose, for comparison."""
    return (None, "core_fp32") if core_amp else (torch.bfloat16, "core_bf16")


# ------------------------------------------------------------ medmnist's example, torchvision-free


class ToTensor:
    """torchvision.transforms.ToTensor for PIL images (torchvision.transforms.functional.to_tensor)."""

    _NPTYPE = {"I": np.int32, "I;16": np.int16, "F": np.float32}

    def __call__(self, pic: Image.Image) -> torch.Tensor:
        img = torch.from_numpy(np.array(pic, self._NPTYPE.get(pic.mode, np.uint8), copy=True))
        if pic.mode == "1":
            img = 255 * img
        img = img.view(pic.size[1], pic.size[0], len(pic.getbands()))
        img = img.permute((2, 0, 1)).contiguous()
        if isinstance(img, torch.ByteTensor):
            return img.to(dtype=torch.get_default_dtype()).div(255)
        return img


class Normalize:
    """torchvision.transforms.Normalize(mean, std) (functional.normalize, inplace=False)."""

    def __init__(self, mean, std):
        self.mean, self.std = mean, std

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.clone()
        mean = torch.as_tensor(self.mean, dtype=tensor.dtype, device=tensor.device)
        std = torch.as_tensor(self.std, dtype=tensor.dtype, device=tensor.device)
        if (std == 0).any():
            raise ValueError("std evaluated to zero")
        if mean.ndim == 1:
            mean = mean.view(-1, 1, 1)
        if std.ndim == 1:
            std = std.view(-1, 1, 1)
        return tensor.sub_(mean).div_(std)


class Compose:
    def __init__(self, transforms):
        self.transforms = transforms

    def __call__(self, img):
        for t in self.transforms:
            img = t(img)
        return img


def medmnist_transform() -> Compose:
    """The getting-started example's `data_transform`."""
    return Compose([ToTensor(), Normalize(mean=[.5], std=[.5])])


def medmnist_dataset(images: np.ndarray, labels: np.ndarray, transform=None) -> torch.utils.data.Dataset:
    """medmnist's ChestMNIST over given arrays: its own __getitem__, without the official-count assert.

    `medmnist.dataset` imports no torchvision; only its constructor (which reads a file from a
    root) and `__len__` (which asserts the official sample count) are replaced.
    """
    from medmnist.dataset import ChestMNIST

    class ArrayChestMNIST(ChestMNIST):
        def __init__(self):  # noqa: D401 - no file, no download: the arrays are given
            self.imgs, self.labels = images, labels
            self.transform, self.target_transform, self.as_rgb = transform, None, False
            self.split, self.size, self.size_flag = "train", images.shape[1], ""

        def __len__(self):
            return self.imgs.shape[0]

    return ArrayChestMNIST()


def medmnist_loader(images: np.ndarray, labels: np.ndarray, batch_size: int = 128) -> torch.utils.data.DataLoader:
    """The example's `DataLoader(dataset=train_dataset, batch_size=BATCH_SIZE, shuffle=True)`."""
    return torch.utils.data.DataLoader(medmnist_dataset(images, labels, medmnist_transform()),
                                       batch_size=batch_size, shuffle=True)


# ------------------------------------------------------------ training steps


def medmnist_step(model: nn.Module, optimizer, criterion, inputs: torch.Tensor, targets: torch.Tensor) -> None:
    """The example's training loop body for a multi-label task."""
    optimizer.zero_grad()
    outputs = model(inputs)
    targets = targets.to(torch.float32)
    loss = criterion(outputs, targets)
    loss.backward()
    optimizer.step()


class CoreStep:
    """core.train's per-batch work (core.train.step.train_step plus the loop's bookkeeping), in core's default
    precision unless `amp` says otherwise."""

    def __init__(self, model: nn.Module, labels: np.ndarray, amp: torch.dtype | None):
        self.model = model
        self.optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        pw = batching.pos_weight(labels, 10.0)
        self.loss_fn = nn.BCEWithLogitsLoss(pos_weight=pw)
        self.dtype = amp
        self.scaler = grad_scaler(torch.device("cpu"), amp)
        self.loss_sum, self.seen, self.scores = 0.0, 0, []

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        loss, logits = train_step(self.model, self.optimizer, self.loss_fn, x, y, self.dtype, self.scaler)
        self.loss_sum += loss.item() * len(x)
        self.seen += len(x)
        self.scores.append(torch.sigmoid(logits.float()).cpu().numpy())
        if len(self.scores) > 64:  # bounded: an epoch's worth would be kept by core
            self.scores.clear()


def _cycle(make_iter):
    """Endless iterator that starts a new epoch (reshuffle) whenever one ends."""
    while True:
        yield from make_iter()


def bench_pipeline(size: int, mode: Mode, model_name: str = DEFAULT_MODEL, batch_size: int = 128,
                   threads: int | None = None) -> dict:
    """Training img/s of the variants at `size`, plus the loaders alone, with torch.set_num_threads(threads)
    (None: torch's default). Figures dict."""
    with torch_threads(threads):
        return _bench_pipeline(size, mode, model_name, batch_size, compile_=mode.compile and threads is None)


def _bench_pipeline(size: int, mode: Mode, model_name: str, batch_size: int, compile_: bool) -> dict:
    n = max(mode.pipeline_images, batch_size)
    images, labels = random_split(n, size, seed=size)
    choice = core_choice(size, batch_size)
    core_amp, cl = choice.dtype, choice.channels_last
    torch.manual_seed(0)
    base = build_model(model_name, size).train()

    def step(amp: torch.dtype | None = core_amp) -> CoreStep:
        """core's step on a fresh copy of the same initial weights, in core's layout."""
        model = copy.deepcopy(base)
        return CoreStep(model.to(memory_format=torch.channels_last) if cl else model, labels, amp)

    idx = np.arange(n)

    def core_batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """core.data.batching.batches over every epoch, shuffled by its own generator."""
        gen = torch.Generator().manual_seed(0)
        return _cycle(lambda: batching.batches(images, labels, idx, batch_size, shuffle=True, generator=gen,
                                        channels_last=cl))

    def example_loader() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return _cycle(lambda: iter(medmnist_loader(images, labels, batch_size)))

    # medmnist example: NCHW model
    m_model = copy.deepcopy(base)
    m_opt = torch.optim.Adam(m_model.parameters(), lr=1e-3)
    m_crit = nn.BCEWithLogitsLoss()
    m_iter = example_loader()
    c_step, c_iter = step(), core_batches()
    # pure compute: pre-made float tensors in the model's layout
    p_step = step()
    pre = [(batching.to_tensor(images[i:i + batch_size], "cpu", cl),
            torch.from_numpy(labels[i:i + batch_size].astype(np.float32)))
           for i in range(0, n - batch_size + 1, batch_size)][:8]
    p_iter = itertools.cycle(pre)

    fns = {
        "medmnist": lambda: medmnist_step(m_model, m_opt, m_crit, *next(m_iter)),
        "core": lambda: c_step(*next(c_iter)),
        "compute": lambda: p_step(*next(p_iter)),
    }
    if mode.pipeline_shares:
        ml_step, ml_iter = step(), example_loader()
        layout = torch.channels_last if cl else torch.contiguous_format
        fns["medmnist_loader"] = lambda: ml_step(*(t.contiguous(memory_format=layout) if t.ndim == 4
                                                   else t.float() for t in next(ml_iter)))
        other_amp, other = other_precision(core_amp)
        o_step, o_iter = step(other_amp), core_batches()
        fns[other] = lambda: o_step(*next(o_iter))
    compile_s = {}
    if compile_:
        k_step = step()
        k_step.model = torch.compile(k_step.model, dynamic=False)
        k_iter = itertools.cycle(pre)  # the loader's cost is the same as core's; compile changes only compute
        t0 = time.perf_counter()
        k_step(*next(k_iter))  # compiles forward and backward
        compile_s[f"pipeline.{size}.compute_compiled_compile_s"] = time.perf_counter() - t0
        fns["compute_compiled"] = lambda: k_step(*next(k_iter))
    t = interleaved(fns, mode.repeats, mode.warmup)
    out = {f"pipeline.{size}.{k}_img_s": batch_size / median(v) for k, v in t.items()}
    out.update(compile_s)
    out.update({f"pipeline.{size}.{k}_best_img_s": batch_size / min(v) for k, v in t.items()})

    # the loaders alone (no model): ms per batch; `core_numpy` is the candidate normalisation
    gen_np = torch.Generator().manual_seed(0)
    l_m, l_c = example_loader(), core_batches()
    l_n = _cycle(lambda: numpy_batches(images, labels, idx, batch_size, gen_np))
    lt = interleaved({"medmnist": lambda: next(l_m), "core": lambda: next(l_c), "core_numpy": lambda: next(l_n)},
                     max(7, mode.repeats * 3), 2)
    out.update({f"pipeline.{size}.loader_{k}_ms": median(v) * 1e3 for k, v in lt.items()})
    out.update({f"pipeline.{size}.loader_{k}_best_ms": min(v) * 1e3 for k, v in lt.items()})
    return out


def numpy_to_tensor(images: np.ndarray, channels_last: bool = False) -> torch.Tensor:
    """Candidate for core.data.batching.to_tensor on CPU: the same [-1, 1] floats, bit for bit, computed by
    numpy (single-threaded, no OpenMP parallel region to wait for when the cores are busy)."""
    x = np.empty(images.shape, np.float32)
    np.divide(images, np.float32(127.5), out=x, dtype=np.float32)
    x -= np.float32(1.0)
    t = torch.from_numpy(x).unsqueeze(1)
    return t.contiguous(memory_format=torch.channels_last) if channels_last else t


def numpy_batches(images, labels, indices, batch_size, generator):
    """core.data.batching.batches (shuffled, channels_last) with numpy_to_tensor."""
    order = indices[torch.randperm(len(indices), generator=generator).numpy()]
    for start in range(0, len(order), batch_size):
        idx = np.sort(order[start:start + batch_size])
        yield numpy_to_tensor(images[idx], True), torch.from_numpy(labels[idx].astype(np.float32))


def run(ctx: Context) -> list[Row]:
    """Each size twice: with torch's default thread count (core as it runs; the targets) and on one
    thread, where a busy neighbour cannot stall OpenMP barriers, so ratios there are the hardware's."""
    rows: list[Row] = []
    for size in ctx.mode.pipeline_sizes:
        for threads in (None, 1):
            tag = "" if threads is None else "1t."
            ctx.log(f"pipeline: {size} px, {'default threads' if threads is None else '1 thread'}")
            f = bench_pipeline(size, ctx.mode, batch_size=ctx.mode.pipeline_batch, threads=threads)
            rows += _rows(ctx, size, f, tag)
    return rows


def _rows(ctx: Context, size: int, f: dict, tag: str) -> list[Row]:
    p = f"pipeline.{size}."
    name = f"pipeline.{size}.{tag}"
    gate = not tag  # targets apply to core as it runs (default threads); 1-thread rows are information
    where = "" if not tag else " [1 thread]"

    def speed(v: str, base: str, target: str = "", limit: float | None = None, note: str = "") -> Row:
        val, b = f[p + v + "_img_s"], f[p + base + "_img_s"]
        best = f[p + v + "_best_img_s"] / f[p + base + "_best_img_s"]
        return Row(name + v + "_vs_" + base, val, "train img/s", b, val / b, target if gate else "",
                   None if (limit is None or not gate) else at_least(val / b, limit), note + where, best)

    def loader(v: str, base: str, note: str) -> Row:
        val, b = f[p + f"loader_{v}_ms"], f[p + f"loader_{base}_ms"]
        best = f[p + f"loader_{base}_best_ms"] / f[p + f"loader_{v}_best_ms"]
        return Row(name + f"loader_{v}_vs_{base}", val, "ms/batch", b, b / val, "", None, note + where, best)

    chosen = core_choice(size, ctx.mode.pipeline_batch).name  # what bench_pipeline ran (cached by now)
    rows = [
        speed("core", "medmnist", ">= 3x", 3.0, f"core default (batches + --amp auto's choice here: {chosen}) vs "
              f"getting-started (PIL + ToTensor + Normalize, DataLoader {ctx.mode.pipeline_batch} shuffled, NCHW, fp32); "
              "same res-cnn"),
        speed("core", "compute", ">= 0.95x", 0.95, f"vs the same step ({chosen}) on pre-made float tensors"),
    ]
    other = next((k.removeprefix(p).removesuffix("_img_s") for k in f if k in (p + "core_fp32_img_s", p + "core_bf16_img_s")),
                 None)
    if p + "medmnist_loader_img_s" in f and other:
        what = "fp32 (--amp off)" if other == "core_fp32" else "bf16 (--amp bf16)"
        rows += [speed("core", "medmnist_loader", note="loader's share: the example's loader feeding core's step"),
                 speed(other, "medmnist", note=f"core's pipeline in {what}"),
                 speed("core", other, note=f"precision's share: core's default vs core in {what}")]
    if p + "compute_compiled_img_s" in f:
        rows.append(speed("compute_compiled", "compute", note="core's training step with the model under torch.compile vs eager, both on "
                          "pre-made tensors: what compiling would add to core's ratio (core does not compile for "
                          f"training); compiling took {f[p + 'compute_compiled_compile_s']:.0f} s"))
    rows += [
        loader("core", "medmnist", f"core.data.batching.batches vs the example's DataLoader, batch of {ctx.mode.pipeline_batch}, "
               "no model; ratio = speed-up"),
        loader("core_numpy", "core", "candidate: to_tensor normalising in numpy (bit-identical) vs core.data.batching.to_tensor"),
    ]
    return rows
