"""A model as ONNX: exported with torch's exporter (dynamic batch, sigmoid included), its input spec and
normalisation in the file's metadata, and scored in onnxruntime exactly as core.data.batching feeds torch.

    probabilities = session.run(None, {"image": uint8_images[:, None] / 127.5 - 1})[0]   # float32 (N, 14)
"""
from __future__ import annotations

import contextlib
import io
import json
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from core.data.chestmnist import CLASS_NAMES

INPUT, OUTPUT = "image", "probabilities"
NORMALISATION = "x = pixel / 127.5 - 1 (uint8 grayscale 0..255 to float32 -1..1, medmnist's Normalize(mean=0.5, std=0.5))"
OPSET = 18


def input_spec(size: int) -> dict[str, str]:
    """The metadata written into model.onnx: what goes in, how it is made, what comes out."""
    return {"input": f"{INPUT}: float32 (batch, 1, {size}, {size}), batch dynamic",
            "normalisation": NORMALISATION,
            "preprocessing": f"8-bit grayscale, centre-cropped to a square, resized to {size} x {size} with PIL bicubic "
                             "(core.data.pixels, as medmnist made ChestMNIST)",
            "output": f"{OUTPUT}: float32 (batch, {len(CLASS_NAMES)}), sigmoid probability per finding",
            "classes": json.dumps(list(CLASS_NAMES))}


def export_onnx(model: torch.nn.Module, size: int, path: str | Path, metadata: dict[str, str] | None = None) -> float:
    """Write `model` (eval mode, a sigmoid after it) to `path` as ONNX with a dynamic batch dimension and
    `input_spec(size)` plus `metadata` as its metadata; the seconds the export took."""
    import onnx

    net = torch.nn.Sequential(model, torch.nn.Sigmoid()).eval()
    example = torch.zeros(2, 1, size, size, device=next(model.parameters()).device)
    t = time.perf_counter()
    # The exporter prints its progress and warns about its own internals; neither is the user's business.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(net, (example,), dynamo=True, input_names=[INPUT], output_names=[OUTPUT],
                                    dynamic_shapes=({0: torch.export.Dim("batch")},), opset_version=OPSET,
                                    verbose=False)
    proto = program.model_proto
    seconds = time.perf_counter() - t
    for key, value in {**input_spec(size), **(metadata or {})}.items():
        proto.metadata_props.add(key=key, value=str(value))
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return seconds


def session(path: str | Path, threads: int | None = None) -> Any:
    """An onnxruntime CPU session of `path` (`threads`: intra-op threads, None = onnxruntime's choice)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def metadata(path: str | Path) -> dict[str, str]:
    """The metadata key -> value pairs of an ONNX file."""
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def onnx_predict(sess: Any, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """(N, 14) float32 probabilities of uint8 images (N, H, W) through an onnxruntime session, normalised
    as core.data.batching.to_tensor does (the same float32 operations, so the same inputs bit for bit)."""
    out = np.empty((len(images), len(CLASS_NAMES)), dtype=np.float32)
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size, None].astype(np.float32) / np.float32(127.5) - np.float32(1.0)
        out[start:start + len(x)] = sess.run([OUTPUT], {INPUT: x})[0]
    return out


def ms_per_image(score: Callable[[np.ndarray], np.ndarray], images: np.ndarray, repeats: int = 3) -> float:
    """Median milliseconds per image of `score(images)` over `repeats` passes, after one warm-up pass."""
    score(images)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        score(images)
        times.append(time.perf_counter() - t)
    return float(np.median(times)) / len(images) * 1000
