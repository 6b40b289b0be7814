"""Generated ChestMNIST-layout data for tests: each class plants a bright square at its own spot.

A model that learns the task reaches val AUC near 1; one that doesn't stays near 0.5.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from core.data.chestmnist import N_CLASSES, SPLITS, write_npz


def planted_split(n: int, size: int, seed: int, prevalence: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (n,size,size), labels uint8 (n,14)): class c lights cell c of a 4x4 grid."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, N_CLASSES)) < prevalence).astype(np.uint8)
    images = rng.normal(90, 20, (n, size, size))
    cell, side = size // 4, max(2, size // 8)
    for c in range(N_CLASSES):
        r0, c0 = (c // 4) * cell + (cell - side) // 2, (c % 4) * cell + (cell - side) // 2
        images[labels[:, c] == 1, r0:r0 + side, c0:c0 + side] += 110
    return np.clip(images, 0, 255).astype(np.uint8), labels


def write_planted(root: str | Path, size: int, n: tuple[int, int, int] = (256, 96, 96), seed: int = 0) -> Path:
    """Write a planted-pattern npz for `size` into `root` (medmnist naming and keys); its path."""
    return write_npz(root, size, {split: planted_split(count, size, seed * 10 + i)
                                  for i, (split, count) in enumerate(zip(SPLITS, n))})
