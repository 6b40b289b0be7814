"""The architectures behind core.models' registry: the study's `SeedCNN`, the default `ResCNN`, and
MedMNIST v2's `ResNet` (18 and 50), each built for an input size.

Every model maps (N, 1, S, S) normalised images to (N, 14) logits, records its input `size`, and
declares `cam_layer`, the module whose output core.explain.saliency's Grad-CAM reads. The layer is chosen
per model (and may depend on the size) by the pointing game on planted lesions, not by its name:
docs/saliency.md has the measurements. A property, so it follows fold_batchnorm's module swaps.
Build them by name with core.models.build_model; this module imports torch, the registry does not.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from core.data.chestmnist import N_CLASSES


def _conv_bn_relu(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SeedCNN(nn.Module):
    """The study's ChestMNIST_CNN: blocks of conv-BN-ReLU-maxpool-dropout, flatten, dense head.

    2 blocks at 28/64 px, 3 at 128, 4 at 224. The flattened feature map grows with the input
    (64 channels x (S/4)^2 at 64 px), which is why its AUC fell as resolution rose.
    """

    def __init__(self, size: int, n_classes: int = N_CLASSES, dropout: float = 0.25):
        super().__init__()
        widths = {28: [32, 64], 64: [32, 64], 128: [32, 64, 128], 224: [32, 64, 128, 128]}[size]
        layers: list[nn.Module] = []
        cin = 1
        for w in widths:
            layers += [*_conv_bn_relu(cin, w), nn.MaxPool2d(2), nn.Dropout(dropout)]
            cin = w
        self.features = nn.Sequential(*layers)
        self.size = size
        self.register_load_state_dict_pre_hook(_drop_cam_alias)
        side = size // 2 ** len(widths)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(cin * side * side, 128), nn.ReLU(inplace=True),
                                  nn.Dropout(0.5), nn.Linear(128, n_classes))

    @property
    def cam_layer(self) -> nn.Module:
        """The last block's ReLU (each block is conv, BN, ReLU, maxpool, dropout)."""
        return self.features[-3]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class _Residual(nn.Module):
    """relu(body(x) + skip(x)), the skip a strided 1x1 projection when the shape changes."""

    def __init__(self, body: nn.Module, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = body
        self.skip = (nn.Identity() if stride == 1 and cin == cout else
                     nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.skip(x))


class BasicBlock(_Residual):
    """ResNet basic block: two 3x3 convolutions, the first strided."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__(nn.Sequential(*_conv_bn_relu(cin, cout, stride), nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
                                       nn.BatchNorm2d(cout)), cin, cout, stride)


def stem_stride(size: int) -> int:
    """Largest power of two keeping the stem's output at least 32 px (28 px stays at 28).

    This is what makes cost grow slower than pixels: 64 and 128 px enter the residual stages at
    32 px, 224 at 56, so FLOPs at 224 are about 3x those at 64 instead of 12x.
    """
    s = 1
    while size // (s * 2) >= 32:
        s *= 2
    return s


class ResCNN(nn.Module):
    """Default model: learned strided stem, four residual stages, global average pooling.

    Global pooling keeps the head's size independent of the input, so more pixels add detail
    instead of parameters to overfit; the strided stem learns its own downsampling of the
    extra pixels rather than discarding them.
    """

    def __init__(self, size: int, n_classes: int = N_CLASSES, widths: tuple[int, ...] = (24, 48, 96, 192),
                 dropout: float = 0.2, extra_stem_steps: int = 0):
        super().__init__()
        # Each stem step is one strided conv, so the full-resolution layers stay cheap.
        n_steps = int(math.log2(stem_stride(size))) + extra_stem_steps
        stem_widths = [widths[0]] if n_steps == 0 else [widths[0] // 2] * (n_steps - 1) + [widths[0]]
        stem: list[nn.Module] = []
        cin = 1
        for w in stem_widths:
            stem += _conv_bn_relu(cin, w, 1 if n_steps == 0 else 2)
            cin = w
        self.stem = nn.Sequential(*stem)
        stages = []
        for i, w in enumerate(widths):
            stages.append(BasicBlock(cin, w, 1 if i == 0 else 2))
            cin = w
        self.stages = nn.Sequential(*stages)
        self.size = size
        self.register_load_state_dict_pre_hook(_drop_cam_alias)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(cin, n_classes))

    @property
    def cam_layer(self) -> nn.Module:
        """The first residual stage's output, at every size. Later stages' maps miss the lesion
        while the model finds it (the second stage's at 224 px, the last stage's everywhere)."""
        return self.stages[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


class Bottleneck(_Residual):
    """ResNet-50's block: 1x1 reduce, 3x3 (strided, as in torchvision), 1x1 expand to 4x width."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int):
        cout = width * self.expansion
        super().__init__(nn.Sequential(nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                                       *_conv_bn_relu(width, width, stride), nn.Conv2d(width, cout, 1, bias=False),
                                       nn.BatchNorm2d(cout)), cin, cout, stride)


class ResNet(nn.Module):
    """ResNet-18 / ResNet-50 as MedMNIST v2 trained them (Yang et al., Scientific Data 2023), without torchvision.

    At 28 px the stem is one 3x3 stride-1 convolution and no max-pool (MedMNIST's experiments
    repository, MedMNIST2D/models.py); at 64 px and up it is torchvision's 7x7 stride-2
    convolution and 3x3 stride-2 max-pool (the larger sizes were trained with torchvision's
    resnet18/50). Stages of 64-128-256-512 channels (x4 for ResNet-50's bottlenecks), global
    average pooling, one linear layer; one input channel and 14 outputs. The reference models of
    the published ChestMNIST test AUCs.
    """

    def __init__(self, size: int, depth: int = 18, n_classes: int = N_CLASSES):
        super().__init__()
        self.size = size
        block, blocks_per_stage = {18: (BasicBlock, (2, 2, 2, 2)), 50: (Bottleneck, (3, 4, 6, 3))}[depth]
        expansion = getattr(block, "expansion", 1)
        if size == 28:
            self.stem = nn.Sequential(*_conv_bn_relu(1, 64))
        else:
            self.stem = nn.Sequential(nn.Conv2d(1, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                                      nn.MaxPool2d(3, 2, 1))
        cin = 64
        for i, (width, n) in enumerate(zip((64, 128, 256, 512), blocks_per_stage)):
            stage = []
            for j in range(n):
                stage.append(block(cin, width, 2 if i > 0 and j == 0 else 1))
                cin = width * expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, n_classes))

    @property
    def cam_layer(self) -> nn.Module:
        """The first stage's output (a quarter of the input's side, the full side at 28 px), at every
        size. The last stage, which the pooled head reads, keeps too little of where a finding is."""
        return self.layer1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
        return self.head(x)


def _drop_cam_alias(_module: nn.Module, state_dict: dict, prefix: str, *_args) -> None:
    """Checkpoints saved while `cam_layer` was a registered submodule hold its weights twice,
    under `cam_layer.*` as well; the alias is gone, so those copies are dropped on load."""
    for key in [k for k in state_dict if k.startswith(prefix + "cam_layer.")]:
        del state_dict[key]
