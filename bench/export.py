"""ONNX export: onnxruntime against core's torch inference, ms per image at each size.

res-cnn (fresh weights: speed does not depend on training) is exported with core.export.onnx_model (torch's
dynamo exporter, dynamic batch) and scored on the same generated uint8 images by onnxruntime
(core.export.onnx_model.onnx_predict) and by core.evaluate.predict as evaluation runs it (fp32, the layout
and batch-norm folding core.train.autotune picks, folded once). Ratio = torch time / onnxruntime time (speed-up).
"""
from __future__ import annotations

import numpy as np
import torch

from bench.common import Context, Row, interleaved, median
from core.evaluate.scoring import predict
from core.export.onnx_model import export_onnx, onnx_predict, session
from core.models.registry import build_model, fold_batchnorm
from core.train import autotune


def bench_export(ctx: Context, size: int) -> dict:
    """Export seconds, ms per image of each side (median and best of the repeats), and their max |difference|."""
    mode = ctx.mode
    torch.manual_seed(0)
    model = build_model("res-cnn", size).eval()
    path = ctx.workdir / f"res-cnn-{size}.onnx"
    export_s = export_onnx(model, size, path)
    sess = session(path)
    n = mode.onnx_images
    images = np.random.default_rng(size).integers(0, 256, (n, size, size), dtype=np.uint8)
    choice = autotune.choose_infer(model, size, n, "cpu")
    net = fold_batchnorm(model) if choice.fold_bn else model
    kw = dict(batch_size=n, channels_last=choice.channels_last, fold_bn=False)
    times = interleaved({"onnx": lambda: onnx_predict(sess, images, n), "torch": lambda: predict(net, images, **kw)},
                        mode.repeats, mode.warmup)
    diff = float(np.abs(onnx_predict(sess, images, n) - predict(net, images, **kw)).max())
    p = f"export.{size}."
    return {p + "export_s": export_s, p + "onnx_ms": median(times["onnx"]) / n * 1000,
            p + "torch_ms": median(times["torch"]) / n * 1000, p + "onnx_best_ms": min(times["onnx"]) / n * 1000,
            p + "torch_best_ms": min(times["torch"]) / n * 1000, p + "max_abs_diff": diff}


def run(ctx: Context) -> list[Row]:
    rows = []
    for size in ctx.mode.compute_sizes:
        ctx.log(f"export: res-cnn at {size} px to ONNX; onnxruntime vs core's predict on {ctx.mode.onnx_images} images")
        f = bench_export(ctx, size)
        p = f"export.{size}."
        rows.append(Row(p + "onnx_ms_per_image", f[p + "onnx_ms"], "ms/img", f[p + "torch_ms"],
                        f[p + "torch_ms"] / f[p + "onnx_ms"], "", None,
                        f"onnxruntime vs core.evaluate.predict (baseline), one batch of {ctx.mode.onnx_images}, "
                        f"{torch.get_num_threads()} torch threads; export took {f[p + 'export_s']:.1f} s; "
                        f"max |difference| {f[p + 'max_abs_diff']:.1e}",
                        f[p + "torch_best_ms"] / f[p + "onnx_best_ms"]))
    return rows
