"""Seeded simulations of recipes, seeds and test images for the tests of core.metrics' verdicts.

A run's score for image i and class c is a logit ``d * y + 0.8 * z[i, c] + e[i, c]``: z is the
image's difficulty, shared by every run scored on it (what pairing cancels), e the run's own
per-image noise, and d its separation, the recipe's plus a seed effect of sd ``seed_sd`` shared by
the run's classes (what makes a recipe's seeds differ in mean AUC by more than image noise alone).
"""
from __future__ import annotations

import numpy as np

CHEST_PREVALENCE = (0.10, 0.03, 0.12, 0.18, 0.05, 0.06, 0.02, 0.05, 0.04, 0.02, 0.02, 0.015, 0.03, 0.002)


def test_set(rng: np.random.Generator, n: int, prevalence) -> tuple[np.ndarray, np.ndarray]:
    """(labels (n, C), image difficulty (n, C)) for one draw of test images."""
    prevalence = np.asarray(prevalence, dtype=float)
    return (rng.random((n, prevalence.size)) < prevalence).astype(int), rng.normal(size=(n, prevalence.size))


def runs(rng: np.random.Generator, labels: np.ndarray, difficulty: np.ndarray, k: int, separation: float,
         seed_sd: float) -> list[np.ndarray]:
    """k runs (seeds) of one recipe: (n, C) probabilities each."""
    out = []
    for _ in range(k):
        d = separation + rng.normal(0, seed_sd)
        logit = d * labels + 0.8 * difficulty + rng.normal(size=labels.shape)
        out.append(1 / (1 + np.exp(-logit)))
    return out
