"""One training step: forward under autocast, loss in fp32, backward, optimizer update; the parts it
updates (model in its layout, optimizer, loss, scaler) and the learning rate.

The training loop (core.train.loop), the speed measurement (core.train.cost), autotune's timing and
the benchmarks (bench/) all build their parts with `build_parts` and call `train_step`, so what is
timed is what trains.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from torch import nn


def build_optimizer(params: Iterable[nn.Parameter], lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """The study's Adam; AdamW (decoupled decay) when `weight_decay` > 0, since Adam's L2 penalty is
    rescaled per weight by the gradient statistics and decays rarely-updated weights least."""
    if weight_decay > 0:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.Adam(params, lr=lr)


@dataclass
class Parts:
    """Everything `train_step` takes besides the batch."""
    model: nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: nn.Module
    dtype: torch.dtype | None
    scaler: torch.amp.GradScaler


def build_parts(model: nn.Module, device: torch.device, *, lr: float, weight_decay: float, channels_last: bool,
                dtype: torch.dtype | None, pos_weight: torch.Tensor | None = None) -> Parts:
    """`model` moved to `device` in the layout it trains in, with its optimizer (build_optimizer), the BCE loss
    (per-class `pos_weight`, shape (14,), or plain) and the scaler of the autocast `dtype`."""
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=None if pos_weight is None else pos_weight.to(device))
    return Parts(model, build_optimizer(model.parameters(), lr, weight_decay), loss_fn, dtype,
                 grad_scaler(device, dtype))


def epoch_lr(lr: float, schedule: str, epoch: int, epochs: int) -> float:
    """The learning rate of `epoch` (1-based) of `epochs`: `lr` throughout ("constant"), or a
    half-cosine from `lr` in the first epoch towards 0 after the last ("cosine").

    A function of the epoch alone, so a resumed run sets the same rate without a scheduler's state.
    """
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        return lr * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / epochs))
    raise ValueError(f"unknown learning-rate schedule {schedule!r}")


def grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """A GradScaler that scales only under fp16 autocast (bf16 and fp32 need none)."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)


def train_step(net: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
               x: torch.Tensor, y: torch.Tensor, dtype: torch.dtype | None,
               scaler: torch.amp.GradScaler | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Update `net` on one batch; returns (loss, logits), both detached.

    x : float tensor of shape (B, 1, H, W), normalised (core.data.batching.batches)
    y : float tensor of shape (B, 14), 0/1 labels
    dtype : autocast dtype (core.train.device.amp_dtype) or None for fp32
    """
    with torch.autocast(x.device.type, dtype=dtype, enabled=dtype is not None):
        logits = net(x)
    loss = loss_fn(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None and scaler.is_enabled():
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return loss.detach(), logits.detach()
