"""Grad-CAM saliency maps for the models in core.models, and overlays for display.

    cams = grad_cam(model, images, target=2)         # (N, H, W) float32 in [0, 1]
    all14 = grad_cam_all_classes(model, images[0])   # (14, H, W), one forward pass
    rgb = overlay(images[0], cams[0], alpha=0.45, cmap="jet")

Maps come from the model's `cam_layer` (its last convolution): captum's LayerGradCam with
ReLU, upsampled bilinearly to the input size and min-max normalised per image, so each map
says where *this* image's evidence for the class lies, not how strong it is (compare the
predicted probability for that). Inputs are uint8 (N, H, W) as stored in the npz and are
normalised with core.data.to_tensor exactly as in training and evaluation.

The model is borrowed, not changed: hooks are removed before returning, its train/eval mode
is restored, no parameter gradients are accumulated. Models loaded by the app are cached and
shared between sessions, so calls are serialised by a lock (captum attaches hooks to the
shared module while it runs).
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.data import N_CLASSES, to_tensor

__all__ = ["grad_cam", "grad_cam_all_classes", "overlay", "COLORMAPS"]

# Colour maps offered by the app; any matplotlib colormap name works in `overlay`.
COLORMAPS: tuple[str, ...] = ("jet", "inferno", "viridis", "magma", "turbo", "hot")

_LOCK = threading.RLock()
_BATCH = 256
# Up to this many input pixels per call, maps are computed with one intra-op thread (see _threads).
SINGLE_THREAD_MAX_PIXELS = 128 * 128


def _cam_layer(model: nn.Module) -> nn.Module:
    layer = getattr(model, "cam_layer", None)
    if not isinstance(layer, nn.Module):
        raise ValueError(f"{type(model).__name__} has no `cam_layer` (its last convolution); "
                         "every model in core.models exposes one.")
    return layer


def _placement(model: nn.Module) -> tuple[torch.device, bool]:
    """(device, channels_last) of the model, so inputs are laid out as its weights are."""
    device, channels_last = torch.device("cpu"), False
    for p in model.parameters():
        device = p.device
        break
    for p in model.parameters():
        if p.dim() == 4 and p.shape[2] * p.shape[3] > 1:
            channels_last = (p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous())
            break
    return device, channels_last


def _check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim == 2:
        raise ValueError("grad_cam takes a batch (N, H, W); wrap a single image as images[None].")
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (N, H, W) as stored in the npz, got {images.dtype} {images.shape}.")
    return images


@contextmanager
def _borrowed(model: nn.Module, pixels: int) -> Iterator[None]:
    """Eval mode and gradients on while computing; the caller's mode is restored afterwards.

    A single small image is computed with one intra-op thread. Its ops are so small that
    splitting them across threads costs more than it saves, and when the cores are busy (a
    training process beside the app) every parallel op waits for a time slice for each of its
    threads: one 28 px map measured 3-12 ms on one thread against 190-1,000 ms on two on a
    loaded 2-core machine. torch.set_num_threads is restored on exit (it sets this thread's
    OpenMP count and the default of threads that first use torch while it is in effect).
    """
    was_training = model.training
    threads = torch.get_num_threads()
    few = pixels <= SINGLE_THREAD_MAX_PIXELS and threads > 1
    with _LOCK, torch.enable_grad():
        model.eval()
        if few:
            torch.set_num_threads(1)
        try:
            yield
        finally:
            if few:
                torch.set_num_threads(threads)
            model.train(was_training)


def _upsample_normalise(cam: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """(N, 1, h, w) non-negative maps -> (N, H, W) float32, bilinear, min-max per image.

    A map with no range (all zero: no positive evidence) comes back all zero, never NaN.
    """
    up = F.interpolate(cam.detach().float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    flat = up.reshape(len(up), -1)
    lo = flat.min(dim=1, keepdim=True).values
    span = flat.max(dim=1, keepdim=True).values - lo
    out = torch.where(span > 0, (flat - lo) / span.clamp_min(torch.finfo(flat.dtype).tiny), torch.zeros_like(flat))
    return out.reshape(up.shape).clamp_(0.0, 1.0).cpu().numpy().astype(np.float32, copy=False)


def grad_cam(model: nn.Module, images: np.ndarray, target: int | Sequence[int] | np.ndarray) -> np.ndarray:
    """Grad-CAM of class `target` for each image, at the input resolution.

    Args:
        model: a core.models model (anything with `cam_layer` mapping (N,1,H,W) to (N,C) logits).
        images: uint8 (N, H, W), as stored in the npz.
        target: one class index for all images, or one per image ((N,) ints).

    Returns:
        float32 (N, H, W) in [0, 1]: ReLU'd Grad-CAM on `cam_layer`, bilinearly upsampled and
        min-max normalised per image (all zero where the class has no positive evidence).
    """
    from captum.attr import LayerGradCam

    images = _check_images(images)
    n, h, w = images.shape
    targets = np.broadcast_to(np.asarray(target, dtype=np.int64), (n,))
    if n and not ((targets >= 0) & (targets < N_CLASSES)).all():
        raise ValueError(f"target classes must be in 0..{N_CLASSES - 1}, got {np.unique(targets).tolist()}")
    out = np.empty((n, h, w), dtype=np.float32)
    device, channels_last = _placement(model)
    with _borrowed(model, n * h * w):
        gc = LayerGradCam(model, _cam_layer(model))
        for start in range(0, n, _BATCH):
            x = to_tensor(images[start:start + _BATCH], device, channels_last)
            t = torch.tensor(targets[start:start + _BATCH], device=device)
            cam = gc.attribute(x, target=t, relu_attributions=True)
            out[start:start + len(x)] = _upsample_normalise(cam, (h, w))
    return out


def grad_cam_all_classes(model: nn.Module, image: np.ndarray) -> np.ndarray:
    """Grad-CAM of every class for one uint8 (H, W) image: (C, H, W) float32 in [0, 1].

    One forward pass records the cam_layer activations A; the gradients of all C logits with
    respect to A come from one batched backward through the layers after cam_layer only (the
    cheap head), instead of C full forward+backward passes. Same maps as `grad_cam` per class.
    """
    image = np.asarray(image)
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (H, W), got {image.dtype} {image.shape}.")
    h, w = image.shape
    device, channels_last = _placement(model)
    captured: list[torch.Tensor] = []

    def keep(_module, _inputs, output):
        captured.append(output)

    with _borrowed(model, h * w):
        handle = _cam_layer(model).register_forward_hook(keep)
        try:
            logits = model(to_tensor(image[None], device, channels_last))
        finally:
            handle.remove()
        acts = captured[0]  # (1, K, h', w')
        n_classes = logits.shape[1]
        eye = torch.eye(n_classes, device=logits.device, dtype=logits.dtype)
        try:
            (grads,) = torch.autograd.grad(logits, acts, grad_outputs=eye[:, None, :], is_grads_batched=True)
        except RuntimeError:  # an op without a batching rule: one backward per class (still head-only)
            grads = torch.stack([torch.autograd.grad(logits[0, c], acts, retain_graph=c < n_classes - 1)[0]
                                 for c in range(n_classes)])
        grads = grads[:, 0]  # (C, K, h', w')
        weights = grads.mean(dim=(2, 3), keepdim=True)
        cam = F.relu((weights * acts.detach()).sum(dim=1, keepdim=True))  # (C, 1, h', w')
    return _upsample_normalise(cam, (h, w))


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.45, cmap: str = "jet") -> np.ndarray:
    """Blend a [0, 1] map over a grayscale uint8 (H, W) image: uint8 RGB (H, W, 3).

    `alpha` is the map's opacity (0 = image only, 1 = map only); `cmap` any matplotlib
    colormap name (see COLORMAPS).
    """
    import matplotlib

    image, cam = np.asarray(image), np.asarray(cam, dtype=np.float32)
    if image.ndim != 2 or image.shape != cam.shape:
        raise ValueError(f"image {image.shape} and cam {cam.shape} must both be (H, W) of the same size.")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    try:
        colormap = matplotlib.colormaps[cmap]
    except KeyError:
        raise ValueError(f"Unknown colour map {cmap!r}; try one of {', '.join(COLORMAPS)}.") from None
    colour = colormap(np.clip(np.nan_to_num(cam), 0.0, 1.0))[..., :3]  # (H, W, 3) floats in [0, 1]
    gray = (image.astype(np.float32) / 255.0)[..., None]
    rgb = (1.0 - alpha) * gray + alpha * colour
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
