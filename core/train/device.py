"""Where and in which precision and layout a run computes: device choice, autocast dtype and memory
layout (with `--amp auto`, measured by core.train.autotune), what this machine has."""
from __future__ import annotations

import torch

from core.train import autotune
from core.train.recipe import ConfigError, TrainConfig
from core.models.registry import build_model


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA, then MPS, then CPU; naming an absent device is a ConfigError."""
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if (name == "cuda" and not cuda) or (name == "mps" and not mps):
        raise ConfigError(f"--device {name} was asked for but is not available here "
                          f"(found: cpu{', cuda' if cuda else ''}{', mps' if mps else ''}). Use --device auto.")
    return torch.device(name)


def describe_devices(config: TrainConfig | None = None) -> str:
    """What accelerators torch sees and what `--amp auto` chooses for `config`'s model, size and batch,
    for `--device check`."""
    config = config or TrainConfig()
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
    lines.append(f"--device auto would use: {auto}; --amp auto for {config.model} at {config.size} px, batch "
                 f"{config.batch_size}: {precision_name(amp_dtype(config, auto))}, "
                 f"{'channels_last' if train_layout(config, auto) else 'NCHW'}")
    lines.append("  " + training_choice(config, auto).describe())
    lines.append("  " + autotune.choose_infer(build_model(config.model, config.size), config.size, 256, auto).describe())
    lines.append(f"  cache: {autotune.cache_path()}")
    return "\n".join(lines)


def cpu_has_bf16() -> bool:
    """Whether this CPU has native bf16 instructions (AVX512-BF16 or AMX) for oneDNN to use.

    Without them bf16 autocast on CPU is emulated and slower than fp32.
    """
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def training_choice(config: TrainConfig, device: torch.device) -> autotune.Decision:
    """What `--amp auto` trains `config` in on `device`: measured once per machine and cached (core.train.autotune;
    where nothing is measured, the fixed rule: bf16 where the hardware has it natively, fp16 on older CUDA)."""
    return autotune.choose_train(config.model, config.size, config.batch_size, device, cpu_has_bf16(),
                                 config.weight_decay)


def amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """Autocast dtype or None: config.amp, or with `auto` the measured choice (training_choice).

    bf16's effect on val AUC (within seed-to-seed noise of fp32): docs/precision.md.
    """
    choice = training_choice(config, device).amp if config.amp == "auto" else config.amp
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[choice]


def train_layout(config: TrainConfig, device: torch.device) -> bool:
    """channels_last or not: `--no-channels-last` forces NCHW; with `--amp auto` the layout is measured with
    the precision."""
    return config.channels_last and (config.amp != "auto" or training_choice(config, device).channels_last)


def precision_name(dtype: torch.dtype | None) -> str:
    """'bfloat16' / 'float16' for an autocast dtype, 'fp32' for None (no autocast)."""
    return str(dtype).removeprefix("torch.") if dtype is not None else "fp32"


