"""Masked reconstruction losses: padded frames never count (at B = 1 they equal the plain MSEs)."""

from __future__ import annotations

import torch


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of squared errors over valid frames and all their elements; pred/target (B, T, ...)."""
    sq = ((pred - target) ** 2).flatten(2).sum(-1)  # (B, T)
    per_frame = pred[0, 0].numel()
    m = mask.to(sq.dtype)
    return (sq * m).sum() / (m.sum() * per_frame).clamp(min=1)


def velocity_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MSE of frame-to-frame differences x[:, 1:] - x[:, :-1], over pairs of valid frames."""
    dp = pred[:, 1:] - pred[:, :-1]
    dt = target[:, 1:] - target[:, :-1]
    return masked_mse(dp, dt, mask[:, 1:] & mask[:, :-1])
