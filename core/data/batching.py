"""Training batches: uint8 image rows in, normalised float tensors out, on the device.

Images stay uint8 (N, H, W) as medmnist stores them; batches are built by tensor indexing and
normalised on the fly, so no per-sample PIL work happens in the training loop. The one place
batches are made: the training loop, evaluation, the benchmarks and the tests all call `batches`.
"""
from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

def pos_weight(labels: np.ndarray, clip: float) -> torch.Tensor | None:
    """BCE pos_weight = negatives / positives per class, clipped at `clip`; None when clip is 0.

    A class with no positives gets the clip value (its loss term is all-negative anyway).
    """
    if clip <= 0:
        return None
    pos = labels.sum(axis=0).astype(np.float64)
    neg = len(labels) - pos
    w = np.where(pos > 0, neg / np.maximum(pos, 1), clip)
    return torch.tensor(np.minimum(w, clip), dtype=torch.float32)


def to_tensor(images: np.ndarray, device: torch.device | str = "cpu", channels_last: bool = False) -> torch.Tensor:
    """uint8 (N, H, W) -> float (N, 1, H, W) in [-1, 1] (medmnist's Normalize(0.5, 0.5)).

    The uint8 -> float conversion happens on the device so only a quarter of the bytes move.
    """
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device, non_blocking=True).unsqueeze(1)
    x = x.float().div_(127.5).sub_(1.0)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def augment(x: torch.Tensor, generator: torch.Generator, max_shift: float = 0.06,
            max_degrees: float = 5.0) -> torch.Tensor:
    """Small random shifts and rotations of a normalised batch, one affine grid-sample for all.

    No horizontal flip: the heart sits on the left of a chest X-ray, a flip makes anatomy wrong.
    """
    n = x.shape[0]
    r = torch.rand(n, 3, generator=generator) * 2 - 1
    angle = r[:, 0] * math.radians(max_degrees)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos, -sin, r[:, 1] * max_shift * 2], 1),
                         torch.stack([sin, cos, r[:, 2] * max_shift * 2], 1)], 1).to(x.device, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # Padding with the border keeps the black film edge instead of inventing -1 bands.
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def batches(images: np.ndarray, labels: np.ndarray, indices: np.ndarray, batch_size: int, *,
            device: torch.device | str = "cpu", shuffle: bool = False, generator: torch.Generator | None = None,
            do_augment: bool = False, channels_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (x float (B,1,H,W) normalised, y float (B,14)) over `indices` of the arrays.

    Shuffling permutes `indices` with `generator` (seeded per epoch by the trainer, so a resumed
    run sees the same order). Indices within a batch are sorted so reads from disk are local.
    """
    order = indices
    if shuffle:
        order = indices[torch.randperm(len(indices), generator=generator).numpy()]
    for start in range(0, len(order), batch_size):
        idx = np.sort(order[start:start + batch_size])
        x = to_tensor(images[idx], device, channels_last)
        if do_augment:
            x = augment(x, generator)
        yield x, torch.from_numpy(labels[idx].astype(np.float32)).to(device, non_blocking=True)
