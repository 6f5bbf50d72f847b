"""Layers shared by the transformer methods: periodic positional encoding and attention masks.

Everything is computed for the length at hand (no 600-frame cap) and is correct for padded batches.
Masks follow nn.MultiheadAttention conventions: float masks are added to the logits; boolean masks
are True where attention is blocked; 3-D masks have shape (B * n_heads, T, S), element b using rows
b * n_heads ... b * n_heads + n_heads - 1.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from talkbench.sequence import lengths_to_mask, sinusoid_table  # noqa: F401 (re-exported)


class PeriodicPositionalEncoding(nn.Module):
    """FaceFormer's PPE: PPE(t) = PE(t mod period), added to the input, then dropout. Any length."""

    def __init__(self, d_model: int, period: int, dropout: float = 0.1):
        super().__init__()
        self.period = period
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("table", sinusoid_table(period, d_model), persistent=False)

    def encoding(self, length: int, offset: int = 0) -> torch.Tensor:
        idx = (torch.arange(length, device=self.table.device) + offset) % self.period
        return self.table[idx]

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """x: (B, T, d); ``offset`` is the absolute position of x[:, 0] (for incremental decoding)."""
        return self.dropout(x + self.encoding(x.shape[1], offset).to(x.dtype))


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """ALiBi's geometric slopes: 4 heads -> 1/4, 1/16, 1/64, 1/256; 8 heads -> 1/2 ... 1/256."""

    def power_of_two(n: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(n_heads).is_integer():
        return torch.tensor(power_of_two(n_heads))
    closest = 2 ** math.floor(math.log2(n_heads))
    extra = power_of_two(2 * closest)[0::2][: n_heads - closest]
    return torch.tensor(power_of_two(closest) + extra)


def biased_causal_mask(n_heads: int, length: int, period: int, device=None) -> torch.Tensor:
    """FaceFormer's self-attention bias (n_heads, T, T): -m_h * floor((i - j) / period) for j <= i,
    -inf above the diagonal."""
    i = torch.arange(length, device=device)[:, None]
    j = torch.arange(length, device=device)[None, :]
    steps = torch.div(i - j, period, rounding_mode="floor").clamp(min=0).float()
    bias = -alibi_slopes(n_heads).to(device)[:, None, None] * steps[None]
    return bias.masked_fill((j > i)[None], float("-inf"))


def alignment_mask(n_frames: int, n_audio: int, mode: str, device=None) -> torch.Tensor:
    """Cross-attention alignment (T, S), True = blocked.

    ``interpolate`` (audio resampled to the motion rate): frame i sees audio frame i.
    ``pairs`` (50 Hz audio, 25 fps motion): frame i sees audio frames 2i and 2i + 1.
    """
    i = torch.arange(n_frames, device=device)[:, None]
    k = torch.arange(n_audio, device=device)[None, :]
    if mode == "interpolate":
        allowed = k == i
    elif mode == "pairs":
        allowed = (k == 2 * i) | (k == 2 * i + 1)
    else:
        raise ValueError(f"unknown audio alignment '{mode}', expected 'interpolate' or 'pairs'")
    return ~allowed


def per_batch(mask: torch.Tensor, batch_size: int, n_heads: int) -> torch.Tensor:
    """Repeat a (T, S) or (n_heads, T, S) mask to nn.MultiheadAttention's (B * n_heads, T, S)."""
    if mask.dim() == 2:
        mask = mask.expand(n_heads, *mask.shape)
    return mask.repeat(batch_size, 1, 1)


def key_padding_to_attn(
    key_valid: torch.Tensor, n_heads: int, n_queries: int, dtype=torch.float32
) -> torch.Tensor:
    """Float mask (B * n_heads, T_q, S) that blocks padded keys; rows never become fully blocked
    (a padded query keeps key 0), so no NaN reaches padded outputs."""
    blocked = ~key_valid[:, None, :].expand(-1, n_queries, -1).clone()
    blocked[:, :, 0] = False
    mask = torch.zeros(blocked.shape, dtype=dtype, device=key_valid.device)
    mask = mask.masked_fill(blocked, float("-inf"))
    return mask.repeat_interleave(n_heads, dim=0)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """nn.MSELoss over the valid frames (mask (B, T)) of (B, T, ...) tensors: the mean over every
    element of the valid frames, which is the released codes' mean for a batch of one clip."""
    sq = ((pred - target) ** 2).flatten(2).sum(-1)
    m = mask.to(sq.dtype)
    return (sq * m).sum() / (m.sum() * pred[0, 0].numel()).clamp(min=1)
