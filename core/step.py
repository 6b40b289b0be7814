"""One training step: forward under autocast, loss in fp32, backward, optimizer update.

The training loop (core.train), the speed measurement (core.estimate) and the benchmarks
(bench/) all call `train_step`, so what is timed is what trains.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn


def grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """A GradScaler that scales only under fp16 autocast (bf16 and fp32 need none)."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)


def train_step(net: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
               x: torch.Tensor, y: torch.Tensor, dtype: torch.dtype | None,
               scaler: torch.amp.GradScaler | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Update `net` on one batch; returns (loss, logits), both detached.

    x : float tensor of shape (B, 1, H, W), normalised (core.batching.batches)
    y : float tensor of shape (B, 14), 0/1 labels
    dtype : autocast dtype (core.device.amp_dtype) or None for fp32
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
