"""Saliency maps for the models in core.models, from captum, and overlays for display.

    cams = grad_cam(model, images, target=2)                                 # (N, H, W) float32 in [0, 1]
    maps = attribute(model, images, 2, method="integrated-gradients")        # same shape, same range
    all14 = grad_cam_all_classes(model, images[0])                           # (14, H, W), one forward pass
    rgb = overlay(images[0], cams[0], alpha=0.45, cmap="jet")

Every method keeps only positive evidence for the class (what raised its logit), at the input
resolution, min-max normalised per image: a map says where *this* image's evidence lies, not how
strong it is (compare the predicted probability for that). An all-zero map means no part of the
image raised the class. Inputs are uint8 (N, H, W) as stored in the npz, normalised with
core.data.batching.to_tensor exactly as in training and evaluation.

Grad-CAM here reads the model's declared `cam_layer` and weights each activation by its own
gradient before summing over channels (element-wise weights, HiResCAM; Draelos & Carin 2020),
instead of by the channel's spatially averaged gradient: on planted lesions the averaged weights
put the peak outside the lesion in many images the model classifies right, the element-wise ones
do not (docs/saliency.md). The two agree at a layer followed only by global pooling.

The model is borrowed, not changed: hooks are removed before returning, its train/eval mode
is restored, no parameter gradients are accumulated. Models loaded by the app are cached and
shared between sessions, so calls are serialised by a lock (captum attaches hooks to the
shared module while it runs).
"""
from __future__ import annotations

import threading
import weakref
from contextlib import contextmanager, nullcontext
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.errors import UserError
from core.data.batching import to_tensor
from core.data.chestmnist import N_CLASSES

__all__ = ["SaliencyError", "METHODS", "METHOD_LABELS", "grad_cam", "grad_cam_all_classes", "attribute",
           "check_images", "check_targets", "overlay", "COLORMAPS"]

# Colour maps offered by the app; any matplotlib colormap name works in `overlay`.
COLORMAPS: tuple[str, ...] = ("jet", "inferno", "viridis", "magma", "turbo", "hot")
METHODS: tuple[str, ...] = ("grad-cam", "integrated-gradients", "occlusion", "guided-grad-cam")
# "grad-cam" is the element-wise (HiResCAM) weighting, not the classic channel-mean one: the label says so.
METHOD_LABELS: dict[str, str] = {"grad-cam": "Grad-CAM (HiResCAM weighting)",
                                 "integrated-gradients": "Integrated Gradients", "occlusion": "Occlusion",
                                 "guided-grad-cam": "Guided Grad-CAM"}
IG_STEPS = 50

# One lock per model, not per module: captum's hooks and the eval/train switch act on the model, so two
# sessions sharing a cached model take turns, while maps of different models (another run, another page)
# compute side by side.
_MODEL_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_GUARD = threading.Lock()  # over _MODEL_LOCKS
_BATCH = 256
# Up to this many input pixels per call, maps are computed with one intra-op thread (see _borrowed).
SINGLE_THREAD_MAX_PIXELS = 128 * 128

OnProgress = Callable[[int, int], None]  # (images done, images in all)


class SaliencyError(UserError):
    """A saliency request that cannot be answered; the message says what to change."""


def _cam_layer(model: nn.Module) -> nn.Module:
    layer = getattr(model, "cam_layer", None)
    if not isinstance(layer, nn.Module):
        raise SaliencyError(f"{type(model).__name__} declares no `cam_layer` (the module whose output Grad-CAM "
                            "reads); every model in core.models declares one.")
    return layer


def model_placement(model: nn.Module) -> tuple[torch.device, bool]:
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


def check_images(images: np.ndarray, model: nn.Module | None = None) -> np.ndarray:
    """`images` as a uint8 (N, H, W) array with N >= 1, square, of the model's input `size` if it records one."""
    images = np.asarray(images)
    if images.ndim == 2:
        raise SaliencyError("Saliency takes a batch (N, H, W); wrap a single image as images[None].")
    if images.ndim != 3 or images.dtype != np.uint8:
        raise SaliencyError(f"Images must be uint8 (N, H, W) as stored in the npz, got {images.dtype} {images.shape}.")
    if len(images) == 0:
        raise SaliencyError("The image set is empty: choose at least one image.")
    size = getattr(model, "size", None)
    if size is not None and images.shape[1:] != (size, size):
        raise SaliencyError(f"The model takes {size} x {size} px images, got {images.shape[1]} x {images.shape[2]}: "
                            f"use the images of the data file at {size} px.")
    return images


def check_targets(target: int | Sequence[int] | np.ndarray, n: int) -> np.ndarray:
    try:
        targets = np.broadcast_to(np.asarray(target, dtype=np.int64), (n,))
    except (TypeError, ValueError):
        raise SaliencyError(f"target must be one class index or one per image ({n}), got {target!r}.") from None
    if not ((targets >= 0) & (targets < N_CLASSES)).all():
        raise SaliencyError(f"target classes must be in 0..{N_CLASSES - 1}, got {np.unique(targets).tolist()}.")
    return targets


def _model_lock(model: nn.Module) -> threading.RLock:
    with _GUARD:
        return _MODEL_LOCKS.setdefault(model, threading.RLock())


@contextmanager
def one_intra_op_thread() -> Iterator[None]:
    """torch.set_num_threads(1) while inside, restored on exit, by and for the calling thread.

    Under OpenMP the count is per thread once a thread has used torch, so a thread already computing keeps
    its own. What leaks is torch's default: a thread whose *first* torch call falls inside this window
    starts with one thread (measured with torch 2.13), which is why the window is one small map long."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@contextmanager
def _borrowed(model: nn.Module, pixels: int) -> Iterator[None]:
    """Eval mode and gradients on while computing, the model held by this caller; its mode is restored after.

    A single small image is computed with one intra-op thread (one_intra_op_thread). Its ops are so small
    that splitting them across threads costs more than it saves, and when the cores are busy (a training
    process beside the app) every parallel op waits for a time slice for each of its threads.
    """
    was_training = model.training
    few = pixels <= SINGLE_THREAD_MAX_PIXELS
    with _model_lock(model), torch.enable_grad(), one_intra_op_thread() if few else nullcontext():
        model.eval()
        try:
            yield
        finally:
            model.train(was_training)


def _normalise(maps: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """(N, 1, h, w) maps -> (N, H, W) float32: positive part, bilinear to `size`, min-max per image.

    A map with no positive value (no evidence for the class) comes back all zero, never NaN.
    """
    maps = F.relu(maps.detach().float())
    up = maps if tuple(maps.shape[2:]) == size else F.interpolate(maps, size=size, mode="bilinear",
                                                                  align_corners=False)
    flat = up[:, 0].reshape(len(up), -1)
    lo = flat.min(dim=1, keepdim=True).values
    span = flat.max(dim=1, keepdim=True).values - lo
    out = torch.where(span > 0, (flat - lo) / span.clamp_min(torch.finfo(flat.dtype).tiny), torch.zeros_like(flat))
    return out.reshape(len(up), *size).clamp_(0.0, 1.0).cpu().numpy().astype(np.float32, copy=False)


def _layer_output_4d(out: object) -> torch.Tensor:
    if not isinstance(out, torch.Tensor) or out.dim() != 4:
        raise SaliencyError("The model's `cam_layer` must output a (N, C, h, w) feature map; it gave "
                            f"{getattr(out, 'shape', type(out).__name__)}. Declare a convolutional stage instead.")
    return out


def grad_cam(model: nn.Module, images: np.ndarray, target: int | Sequence[int] | np.ndarray) -> np.ndarray:
    """Grad-CAM of class `target` for each image, at the input resolution.

    Args:
        model: a core.models model (anything declaring `cam_layer` mapping (N,1,H,W) to (N,C) logits).
        images: uint8 (N, H, W), as stored in the npz.
        target: one class index for all images, or one per image ((N,) ints).

    Returns:
        float32 (N, H, W) in [0, 1]: ReLU of the sum over channels of activation x gradient at
        `cam_layer`, bilinearly upsampled and min-max normalised per image (all zero where the
        class has no positive evidence).

    Raises:
        SaliencyError: bad images, targets or model (a ValueError).
    """
    from captum.attr import LayerGradientXActivation

    images = check_images(images, model)
    n, h, w = images.shape
    targets = check_targets(target, n)
    out = np.empty((n, h, w), dtype=np.float32)
    device, channels_last = model_placement(model)
    with _borrowed(model, n * h * w):
        gxa = LayerGradientXActivation(model, _cam_layer(model))
        for start in range(0, n, _BATCH):
            x = to_tensor(images[start:start + _BATCH], device, channels_last)
            t = torch.tensor(targets[start:start + _BATCH], device=device)
            cam = _layer_output_4d(gxa.attribute(x, target=t)).sum(dim=1, keepdim=True)
            out[start:start + len(x)] = _normalise(cam, (h, w))
    return out


def grad_cam_all_classes(model: nn.Module, image: np.ndarray) -> np.ndarray:
    """Grad-CAM of every class for one uint8 (H, W) image: (C, H, W) float32 in [0, 1].

    One forward pass records the cam_layer activations A; the gradients of all C logits with
    respect to A come from one batched backward through the layers after cam_layer only,
    instead of C full forward+backward passes. Same maps as `grad_cam` per class.
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise SaliencyError(f"image must be one uint8 (H, W) image, got {image.dtype} {image.shape}.")
    check_images(image[None], model)
    h, w = image.shape
    device, channels_last = model_placement(model)
    captured: list[torch.Tensor] = []

    def keep(_module, _inputs, output):
        captured.append(output)

    with _borrowed(model, h * w):
        handle = _cam_layer(model).register_forward_hook(keep)
        try:
            logits = model(to_tensor(image[None], device, channels_last))
        finally:
            handle.remove()
        acts = _layer_output_4d(captured[0])  # (1, K, h', w')
        n_classes = logits.shape[1]
        eye = torch.eye(n_classes, device=logits.device, dtype=logits.dtype)
        try:
            (grads,) = torch.autograd.grad(logits, acts, grad_outputs=eye[:, None, :], is_grads_batched=True)
        except RuntimeError:  # an op without a batching rule: one backward per class (still head-only)
            grads = torch.stack([torch.autograd.grad(logits[0, c], acts, retain_graph=c < n_classes - 1)[0]
                                 for c in range(n_classes)])
        cam = (grads[:, 0] * acts.detach()).sum(dim=1, keepdim=True)  # (C, 1, h', w')
    return _normalise(cam, (h, w))


def _occlusion_window(size: int) -> int:
    """An occluding square about a seventh of the side: lesion-sized at every resolution."""
    return max(2, size // 7)


def _one_image(method: str, model: nn.Module, x: torch.Tensor, t: int) -> torch.Tensor:
    """(1, 1, H, W) raw attribution of one normalised image for class t."""
    from captum.attr import GuidedGradCam, IntegratedGradients, Occlusion

    if method == "integrated-gradients":
        # Baseline: a black image (uint8 0), the absence of any bright structure.
        return IntegratedGradients(model).attribute(x, baselines=-torch.ones_like(x), target=t, n_steps=IG_STEPS,
                                                    internal_batch_size=IG_STEPS)
    if method == "occlusion":
        win = _occlusion_window(x.shape[-1])
        # Occluded squares take the image's mean grey, so removing a lesion does not add an edge.
        return Occlusion(model).attribute(x, sliding_window_shapes=(1, win, win), strides=(1, max(1, win // 2),
                                          max(1, win // 2)), baselines=float(x.mean()), target=t,
                                          perturbations_per_eval=64)
    return GuidedGradCam(model, _cam_layer(model)).attribute(x, target=t, interpolate_mode="bilinear")


def attribute(model: nn.Module, images: np.ndarray, target: int | Sequence[int] | np.ndarray,
              method: str = "grad-cam", progress: OnProgress | None = None) -> np.ndarray:
    """Saliency of class `target` for each image by `method` (one of METHODS), as (N, H, W) float32 in [0, 1].

    Grad-CAM is `grad_cam`; Integrated Gradients (IG_STEPS steps from a black image), Occlusion
    (a square of about a seventh of the side, half-window stride, filled with the image's mean)
    and Guided Grad-CAM (captum's, at `cam_layer`) are captum's, computed one image at a time with
    `progress(done, total)` called after each. Positive part, min-max per image as in `grad_cam`.
    """
    if method not in METHODS:
        raise SaliencyError(f"Unknown saliency method {method!r}; choose one of {', '.join(METHODS)}.")
    if method == "grad-cam":
        out = grad_cam(model, images, target)
        if progress:
            progress(len(out), len(out))
        return out
    images = check_images(images, model)
    n, h, w = images.shape
    targets = check_targets(target, n)
    _cam_layer(model)
    out = np.empty((n, h, w), dtype=np.float32)
    device, channels_last = model_placement(model)
    with _borrowed(model, h * w):
        for i in range(n):
            x = to_tensor(images[i:i + 1], device, channels_last)
            out[i] = _normalise(_one_image(method, model, x, int(targets[i])), (h, w))[0]
            if progress:
                progress(i + 1, n)
    return out


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.45, cmap: str = "jet") -> np.ndarray:
    """Blend a [0, 1] map over a grayscale uint8 (H, W) image: uint8 RGB (H, W, 3).

    `alpha` is the map's opacity (0 = image only, 1 = map only); `cmap` any matplotlib
    colormap name (see COLORMAPS).
    """
    import matplotlib

    image, cam = np.asarray(image), np.asarray(cam, dtype=np.float32)
    if image.ndim != 2 or image.shape != cam.shape:
        raise SaliencyError(f"image {image.shape} and cam {cam.shape} must both be (H, W) of the same size.")
    if not 0.0 <= alpha <= 1.0:
        raise SaliencyError(f"alpha must be in [0, 1], got {alpha}")
    try:
        colormap = matplotlib.colormaps[cmap]
    except KeyError:
        raise SaliencyError(f"Unknown colour map {cmap!r}; try one of {', '.join(COLORMAPS)}.") from None
    colour = colormap(np.clip(np.nan_to_num(cam), 0.0, 1.0))[..., :3]  # (H, W, 3) floats in [0, 1]
    gray = (image.astype(np.float32) / 255.0)[..., None]
    rgb = (1.0 - alpha) * gray + alpha * colour
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
