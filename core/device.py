"""Where and in which precision a run computes: device choice, autocast dtype, what this machine has."""
from __future__ import annotations

import torch

from core.config import ConfigError, TrainConfig


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA, then MPS, then CPU; naming an absent device is a ConfigError."""
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if (name == "cuda" and not cuda) or (name == "mps" and not mps):
        raise ConfigError(f"--device {name} was asked for but is not available here "
                          f"(found: cpu{', cuda' if cuda else ''}{', mps' if mps else ''}). Use --device auto.")
    return torch.device(name)


def describe_devices() -> str:
    """What accelerators torch sees, for `--device check`."""
    lines = [f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            lines.append(f"cuda:{i} {p.name}, {p.total_memory / 2**30:.0f} GiB, bf16 {torch.cuda.is_bf16_supported()}")
    else:
        lines.append("CUDA: not available")
    lines.append(f"MPS: {'available' if torch.backends.mps.is_available() else 'not available'}")
    auto = resolve_device("auto")
    lines.append(f"CPU bf16 instructions: {'yes' if cpu_has_bf16() else 'no'}")
    lines.append(f"--device auto would use: {auto}, with --amp auto: {precision_name(amp_dtype(TrainConfig(), auto))}")
    return "\n".join(lines)


def cpu_has_bf16() -> bool:
    """Whether this CPU has native bf16 instructions (AVX512-BF16 or AMX) for oneDNN to use.

    Without them bf16 autocast on CPU is emulated and slower than fp32.
    """
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """Autocast dtype or None.

    `auto` is bf16 on CUDA that has it and on CPUs with native bf16 (faster there, with val AUC
    within seed-to-seed noise of fp32: docs/precision.md), fp16 on older CUDA, off elsewhere.
    """
    choice = config.amp
    if choice == "auto":
        if device.type == "cuda":
            choice = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        elif device.type == "cpu" and cpu_has_bf16():
            choice = "bf16"
        else:
            return None
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[choice]


def precision_name(dtype: torch.dtype | None) -> str:
    """'bfloat16' / 'float16' for an autocast dtype, 'fp32' for None (no autocast)."""
    return str(dtype).removeprefix("torch.") if dtype is not None else "fp32"


