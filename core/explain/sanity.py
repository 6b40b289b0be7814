"""Checks that a saliency map explains the model: parameter randomisation and deletion/insertion.

    r = randomisation(model, images, target, method="grad-cam")   # r.layers, r.rho (steps, N)
    f = faithfulness(model, images, target, maps)                 # f.deletion, f.insertion (N, steps+1)
    f.auc("deletion"), f.auc("random_deletion")

* Model-parameter randomisation (Adebayo et al., 2018, "Sanity checks for saliency maps"): the
  model's layers are re-initialised cumulatively from the head down, and after each step the maps
  are compared with the trained model's by Spearman rank correlation. A method whose maps stay
  close to the trained ones while the weights are random shows the image, not the model.
* Deletion and insertion (Petsiuk et al., 2018, RISE): pixels are removed from the image (set to
  its mean grey), or revealed on a mean-grey canvas, most salient first, in equal steps, and the
  class probability is tracked. A faithful map's deletion curve falls faster, and its insertion
  curve rises faster, than the same curves for a random pixel order (given as the baseline).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from core.data.batching import to_tensor
from core.explain.saliency import OnProgress, SaliencyError, check_targets, model_placement, attribute, check_images

__all__ = ["Randomisation", "randomisation", "cascade_groups", "Faithfulness", "faithfulness", "spearman"]


@dataclass(frozen=True)
class Randomisation:
    """layers[k]: the groups of layers re-initialised at step k (cumulative, head first);
    rho (steps, N): Spearman correlation of each image's map with the trained model's (NaN where
    either map is constant, e.g. empty)."""

    layers: list[str]
    rho: np.ndarray

    def mean(self) -> np.ndarray:
        """(steps,) mean correlation over the images with a defined one."""
        with np.errstate(all="ignore"):
            return np.array([np.nanmean(r) if np.isfinite(r).any() else np.nan for r in self.rho])


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Spearman rank correlation of (N, ...) arrays a and b: (N,), NaN for a constant row."""
    from scipy.stats import rankdata

    ra = rankdata(a.reshape(len(a), -1), axis=1)
    rb = rankdata(b.reshape(len(b), -1), axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    den = np.sqrt((ra ** 2).sum(axis=1) * (rb ** 2).sum(axis=1))
    with np.errstate(all="ignore"):
        return np.where(den > 0, (ra * rb).sum(axis=1) / den, np.nan)


def cascade_groups(model: nn.Module, max_steps: int = 6) -> list[tuple[str, list[str]]]:
    """[(label, module names)]: the model's parameterised layers in groups, head first.

    Each convolution or linear layer starts a group and takes the normalisation layers that
    follow it; with more than `max_steps` groups, neighbours are merged so a cascade has at most
    that many steps. Labels name the group's first and last layer in forward order.
    """
    groups: list[list[str]] = []
    for name, m in model.named_modules():
        if not name or not hasattr(m, "reset_parameters") or not any(True for _ in m.parameters(recurse=False)):
            continue
        if isinstance(m, (nn.Conv2d, nn.Linear)) or not groups:
            groups.append([])
        groups[-1].append(name)
    if not groups:
        raise SaliencyError(f"{type(model).__name__} has no parameterised layers to randomise.")
    groups = groups[::-1]
    per = int(np.ceil(len(groups) / max_steps))
    merged = []
    for i in range(0, len(groups), per):
        chunk = groups[i:i + per]
        first, last = chunk[-1][0], chunk[0][0]
        merged.append((first if first == last else f"{first} … {last}", [n for g in chunk for n in g]))
    return merged


def randomisation(model: nn.Module, images: np.ndarray, target: int | Sequence[int] | np.ndarray,
                  method: str = "grad-cam", max_steps: int = 6, seed: int = 0,
                  progress: OnProgress | None = None) -> Randomisation:
    """Cascading model-parameter randomisation of `method`'s maps (see the module docstring).

    The model is not changed: a copy is re-initialised (each layer's own `reset_parameters`,
    seeded). `progress(done, total)` counts map computations (1 trained + one per step).
    """
    images = check_images(images, model)
    groups = cascade_groups(model, max_steps)
    total = len(groups) + 1
    trained = attribute(model, images, target, method)
    if progress:
        progress(1, total)
    work = copy.deepcopy(model)
    modules = dict(work.named_modules())
    rho, labels = [], []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for k, (label, names) in enumerate(groups):
            with torch.no_grad():
                for name in names:
                    modules[name].reset_parameters()
            rho.append(spearman(trained, attribute(work, images, target, method)))
            labels.append(label)
            if progress:
                progress(k + 2, total)
    return Randomisation(labels, np.array(rho))


@dataclass(frozen=True)
class Faithfulness:
    """Class probability as pixels are removed (deletion) or revealed (insertion), most salient
    first and in random order: each (N, steps+1), column k after fractions[k] of the pixels."""

    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray
    random_deletion: np.ndarray
    random_insertion: np.ndarray

    def auc(self, curve: str) -> np.ndarray:
        """(N,) area under one of the four curves over the fraction of pixels (0..1); trapezoid rule."""
        y = getattr(self, curve)
        return ((y[:, 1:] + y[:, :-1]) / 2 * np.diff(self.fractions)).sum(axis=1)


def _probabilities(model: nn.Module, images: np.ndarray, targets: np.ndarray, order: np.ndarray,
                   steps: int, insert: bool) -> np.ndarray:
    """(N, steps+1) probability of each image's class as `order`'s pixels are removed or revealed."""
    n, h, w = images.shape
    device, channels_last = model_placement(model)
    flat = images.reshape(n, -1).astype(np.float32)
    fill = flat.mean(axis=1, keepdims=True)
    counts = np.rint(np.linspace(0, h * w, steps + 1)).astype(int)
    out = np.empty((n, steps + 1), np.float32)
    for i in range(n):
        rank = np.empty(h * w, np.int64)
        rank[order[i]] = np.arange(h * w)  # position of each pixel in the order
        chosen = rank[None, :] < counts[:, None]  # (steps+1, pixels): pixels already taken at each step
        keep = chosen if insert else ~chosen
        batch = np.where(keep, flat[i], fill[i]).reshape(steps + 1, h, w)
        x = to_tensor(np.rint(batch).astype(np.uint8), device, channels_last)
        with torch.no_grad():
            out[i] = torch.sigmoid(model(x)[:, targets[i]]).float().cpu().numpy()
    return out


def faithfulness(model: nn.Module, images: np.ndarray, target: int | Sequence[int] | np.ndarray,
                 maps: np.ndarray, steps: int = 20, seed: int = 0) -> Faithfulness:
    """Deletion and insertion curves of `maps` ((N, H, W), e.g. from core.explain.saliency.attribute) for
    class `target`, with the random-order curves as the baseline. Ties in a map (an empty map is
    all ties) are broken at random, so an empty map scores like the random order.
    """
    images = check_images(images, model)
    maps = np.asarray(maps, dtype=np.float32)
    if maps.shape != images.shape:
        raise SaliencyError(f"maps {maps.shape} must match images {images.shape}.")
    if steps < 1:
        raise SaliencyError(f"steps must be at least 1, got {steps}.")
    targets = check_targets(target, len(images))
    rng = np.random.default_rng(seed)
    n = len(images)
    noise = rng.random(maps.reshape(n, -1).shape)
    salient = np.lexsort((noise, -maps.reshape(n, -1)), axis=1)  # most salient first, ties random
    random = np.argsort(rng.random(noise.shape), axis=1)
    was_training = model.training
    model.eval()
    try:
        curves = {name: _probabilities(model, images, targets, order, steps, insert)
                  for name, order, insert in (("deletion", salient, False), ("insertion", salient, True),
                                              ("random_deletion", random, False), ("random_insertion", random, True))}
    finally:
        model.train(was_training)
    return Faithfulness(np.linspace(0.0, 1.0, steps + 1), **curves)
