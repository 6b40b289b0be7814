"""Planted-lesion data with known answers for saliency: where each finding *is* in each image.

Class c owns cell c of a 4x4 grid (cells 14 and 15 stay empty). A positive image carries one
lesion per true class: a soft-edged bright ellipse whose centre is drawn uniformly inside the
class's cell, kept far enough from the cell's edges that the whole lesion stays inside it. The
background is what makes the task less than trivial: a smooth random field (a few random
low-frequency waves, like soft tissue), horizontal stripes of random phase (like ribs), and
pixel noise. A Grad-CAM peak inside the true class's cell is a hit in the pointing game; with
16 cells, chance is about 1 in 16.

    images, labels = lesion_split(600, 28, seed=0)
    model = train_quick("res-cnn", images, labels)
    rate = pointing_rate(maps, labels_of_single_finding_images)
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from core.data.batching import to_tensor
from core.data.chestmnist import N_CLASSES
from core.models.registry import build_model

GRID = 4


def region_mask(c: int, size: int) -> np.ndarray:
    """bool (size, size): the cell that class `c`'s lesions lie in."""
    cell = size // GRID
    mask = np.zeros((size, size), bool)
    r, k = divmod(c, GRID)
    mask[r * cell:(r + 1) * cell, k * cell:(k + 1) * cell] = True
    return mask


def _background(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = np.full((n, size, size), 95.0, np.float32)
    for _ in range(3):  # smooth "tissue": random waves of 1-3 cycles across the image
        fy, fx = rng.uniform(0.5, 3.0, (2, n, 1, 1))
        phase = rng.uniform(0, 2 * np.pi, (n, 1, 1))
        img += rng.uniform(5, 15, (n, 1, 1)) * np.sin(2 * np.pi * (fy * yy + fx * xx) + phase)
    ribs = rng.uniform(5, 7, (n, 1, 1))  # cycles over the height
    img += 12 * np.sin(2 * np.pi * ribs * yy + rng.uniform(0, 2 * np.pi, (n, 1, 1)))
    return img + rng.normal(0, 10, (n, size, size))


def lesion_split(n: int, size: int, seed: int, prevalence: float = 0.1,
                 contrast: float = 70.0) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (n, size, size), labels uint8 (n, 14)) with one lesion per true class.

    Lesion radii are 9-15% of a cell's side in each axis (so 3-4 px wide at 28 px); the centre
    is uniform over the part of the cell that keeps the lesion inside it.
    """
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, N_CLASSES)) < prevalence).astype(np.uint8)
    img = _background(rng, n, size)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    cell = size / GRID
    for c in range(N_CLASSES):
        pos = np.flatnonzero(labels[:, c])
        if not len(pos):
            continue
        r, k = divmod(c, GRID)
        ry, rx = (rng.uniform(0.09, 0.15, (2, len(pos))) * cell).clip(1.0)
        margin_y, margin_x = ry + 1, rx + 1
        cy = r * cell + margin_y + rng.random(len(pos)) * (cell - 2 * margin_y)
        cx = k * cell + margin_x + rng.random(len(pos)) * (cell - 2 * margin_x)
        dy = (yy[None] - cy[:, None, None]) / ry[:, None, None]
        dx = (xx[None] - cx[:, None, None]) / rx[:, None, None]
        d = dy ** 2 + dx ** 2
        img[pos] += contrast * np.clip(1.5 - d, 0.0, 1.0)  # flat top, soft edge, zero beyond 1.5 radii
    return np.clip(img, 0, 255).astype(np.uint8), labels


def single_finding(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row indices, their one class) of the images with exactly one finding."""
    rows = np.flatnonzero(labels.sum(axis=1) == 1)
    return rows, labels[rows].argmax(axis=1)


def pointing_hits(maps: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """bool (N,): whether each map's peak lies in its class's cell. An empty (all-zero) map never hits."""
    n, size, _ = maps.shape
    peaks = maps.reshape(n, -1).argmax(axis=1)
    hit = np.array([region_mask(int(c), size).flat[p] for c, p in zip(classes, peaks)], bool)
    return hit & (maps.reshape(n, -1).max(axis=1) > 0)


# Training per size that reached test AUC > 0.95, (train images, epochs, batch); larger images need
# more. The ResNets learn them in fewer steps (at 64 px; resnet18 also at 28 px, where with no stem
# stride it costs about 8x res-cnn's CPU time per image), so they get less. docs/saliency.md has the figures.
SETUP = {28: (800, 6, 64), 64: (1600, 8, 64), 128: (1600, 10, 64), 224: (1600, 10, 64)}
LESS = {("resnet18", 28): (400, 4, 32), ("resnet18", 64): (800, 6, 32), ("resnet18", 128): (800, 6, 32),
        ("resnet18", 224): (800, 6, 32), ("resnet50", 64): (800, 6, 32), ("resnet50", 128): (800, 6, 32),
        ("resnet50", 224): (800, 6, 32)}


def setup(name: str, size: int) -> tuple[int, int, int]:
    """(train images, epochs, batch) for model `name` at `size`: what the test and the bench train with."""
    return LESS.get((name, size), SETUP[size])


def train_quick(name: str, images: np.ndarray, labels: np.ndarray, epochs: int = 6, batch: int = 64,
                lr: float = 2e-3, seed: int = 0) -> nn.Module:
    """core.models model `name` trained with Adam on (images, labels), in eval mode.

    Plain fp32 loop with channels_last, like core.train's layout; small enough for a test. One
    intra-op thread: on a busy machine each parallel op of a small model waits for a time slice per
    thread, and with two threads the training stalled.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(name, images, labels, epochs, batch, lr, seed)
    finally:
        torch.set_num_threads(threads)


def _train(name: str, images: np.ndarray, labels: np.ndarray, epochs: int, batch: int, lr: float,
           seed: int) -> nn.Module:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_model(name, images.shape[1]).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * max(1, len(images) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)
    loss_fn = nn.BCEWithLogitsLoss()
    model.train()
    for _ in range(epochs):
        order = rng.permutation(len(images))
        for s in range(max(1, len(images) // batch)):
            idx = order[s * batch:(s + 1) * batch]
            loss = loss_fn(model(to_tensor(images[idx], channels_last=True)),
                           torch.from_numpy(labels[idx].astype(np.float32)))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def predict(model: nn.Module, images: np.ndarray) -> np.ndarray:
    """Sigmoid probabilities (N, 14)."""
    with torch.no_grad():
        return torch.cat([torch.sigmoid(model(to_tensor(images[i:i + 256], channels_last=True)))
                          for i in range(0, len(images), 256)]).numpy()
