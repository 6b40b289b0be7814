"""Model registry: the names of the study's `seed-cnn`, the default `res-cnn`, MedMNIST v2's reference
`resnet18` and `resnet50`, and the study variants of res-cnn; building one by name; its cost.

The registry imports no torch (the architectures are in core.models.nets, loaded when a model is built),
so a recipe can be checked and shown before torch is loaded: the app's Train page draws its form
while torch is still importing in the background.
"""
from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from core.data.chestmnist import check_size

if TYPE_CHECKING:
    from torch import nn

# name -> (class in core.models.nets, its keyword arguments besides the size)
MODELS: dict[str, tuple[str, dict]] = {"res-cnn": ("ResCNN", {}), "seed-cnn": ("SeedCNN", {}),
                                       "resnet18": ("ResNet", {"depth": 18}), "resnet50": ("ResNet", {"depth": 50})}
DEFAULT_MODEL = "res-cnn"
# res-cnn with one thing changed, for the selection study (docs/selection.md). They train, load and
# report by name like MODELS, but the app offers MODELS only: they are questions, not choices.
VARIANTS: dict[str, tuple[str, dict]] = {
    "res-cnn-narrow": ("ResCNN", {"widths": (12, 24, 48, 96)}),
    "res-cnn-wide": ("ResCNN", {"widths": (32, 64, 128, 256)}),
    "res-cnn-3stage": ("ResCNN", {"widths": (24, 48, 96)}),
    "res-cnn-fast-stem": ("ResCNN", {"extra_stem_steps": 1}),
    "res-cnn-drop0": ("ResCNN", {"dropout": 0.0}),
    "res-cnn-drop0.5": ("ResCNN", {"dropout": 0.5}),
}
BUILDABLE = MODELS | VARIANTS


def build_model(name: str, size: int) -> nn.Module:
    """A fresh model `name` (a key of MODELS or VARIANTS) for `size` px input."""
    check_size(size)
    if name not in BUILDABLE:
        raise ValueError(f"Unknown model {name!r}; choose one of {', '.join(BUILDABLE)}.")
    from core.models import nets

    cls, kwargs = BUILDABLE[name]
    return getattr(nets, cls)(size, **kwargs)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of `model` in which every BatchNorm2d that directly follows a Conv2d in an
    nn.Sequential is folded into that convolution's weights and bias.

    The outputs are the model's in eval mode up to float rounding (~1e-7), and CPU inference
    skips one pass over every activation: 1.06-1.12x / 1.11-1.23x / 1.31-1.35x faster at 28 / 64 /
    224 px for res-cnn (bench/compute.py, two runs). For inference only: the batch statistics are baked in. `model`
    itself is not changed.
    """
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    net = copy.deepcopy(model).eval()
    swap: dict[int, nn.Module] = {}
    for seq in [m for m in net.modules() if isinstance(m, nn.Sequential)]:
        for conv, bn in zip(seq[:-1], seq[1:]):
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and id(conv) not in swap:
                swap[id(conv)], swap[id(bn)] = fuse_conv_bn_eval(conv, bn), nn.Identity()
    # Swap in every parent, not only the Sequential, so any module held under two names follows the fold.
    for parent in list(net.modules()):
        for name, child in parent.named_children():
            if id(child) in swap:
                setattr(parent, name, swap[id(child)])
    return net


def flops_per_image(model: nn.Module, size: int) -> int:
    """Forward FLOPs of the convolutions and linear layers for one image (a multiply-add is 2).

    Counted with forward hooks rather than torch's FlopCounterMode, whose import of
    torch._dynamo costs seconds; the other layers (BN, ReLU, pooling) are a rounding error.
    """
    import torch
    from torch import nn

    total = 0

    def count(module: nn.Module, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            per_out = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            total += 2 * output.numel() * per_out
        else:
            total += 2 * output.numel() * module.in_features
    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 1, size, size, device=next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return total


def describe(name: str, size: int) -> dict[str, int]:
    """Parameters and forward FLOPs per image of model `name` at `size`."""
    model = build_model(name, size)
    return {"params": count_params(model), "flops": flops_per_image(model, size)}
