"""Which device and precision a run trains in: ``auto`` resolved, CUDA and bfloat16 checked."""

from __future__ import annotations

import torch

from talkbench.errors import ConfigError


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("device 'cuda' requested but no CUDA device is available; use --device cpu")
        return torch.device("cuda", local_rank) if device == "cuda" else torch.device(device)
    if device != "cpu":
        raise ConfigError(f"unknown device '{device}'; expected auto, cpu or cuda")
    return torch.device("cpu")


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision not in ("auto", "fp32", "bf16"):
        raise ConfigError(f"unknown precision '{precision}'; expected auto, fp32 or bf16")
    bf16_ok = device.type != "cuda" or not torch.cuda.is_available() or torch.cuda.is_bf16_supported()
    if precision == "auto":  # bf16 autocast on GPUs that have it (Ampere and later), else fp32
        return "bf16" if device.type == "cuda" and bf16_ok else "fp32"
    if precision == "bf16" and not bf16_ok:
        raise ConfigError("precision 'bf16' requested but this GPU has no bfloat16 support; use fp32")
    return precision


def autocast(device: torch.device, precision: str):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
