"""CodeTalker's vector quantiser: one shared codebook, nearest neighbour, straight-through estimator.

Written here rather than taken from a VQ library because the released quantiser is the plain
VQ-VAE one (no EMA, no dead-code reset, no l2 normalisation, uniform(-1/N, 1/N) init) and its loss
weights the commitment term by beta and the codebook term by 1.

CodeTalker-ND (the benchmark study's quantizer.py, specs/stochastic-metrics.md §5) draws each code
instead: index ~ softmax(-||z - e||^2 / temperature), one multinomial draw per token, while
``sampling`` is on (the method switches it; off, the quantiser is the nearest-code one, unchanged).
Draws use ``generator`` when set (a sample's own, on the CPU so a seed gives the same codes on any
device), else the global RNG (training, seeded by the engine).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Quantized:
    """Output of the quantiser. ``z_q`` carries straight-through gradients to the input."""

    z_q: torch.Tensor  # (B, N, C)
    loss: torch.Tensor  # scalar
    indices: torch.Tensor  # (B, N) long
    perplexity: torch.Tensor  # scalar, exp(entropy) of code usage over valid tokens


class VectorQuantizer(nn.Module):
    def __init__(self, n_codes: int = 256, dim: int = 64, beta: float = 0.25):
        super().__init__()
        self.n_codes = n_codes
        self.dim = dim
        self.beta = beta
        self.embedding = nn.Embedding(n_codes, dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / n_codes, 1.0 / n_codes)
        # CodeTalker-ND (module docstring): plain attributes, not state, so checkpoints are unchanged
        self.temperature = 2.0
        self.sampling = False
        self.generator: torch.Generator | None = None

    def distances(self, z: torch.Tensor) -> torch.Tensor:
        """Squared Euclidean distances of the tokens to every code: z (..., C) -> (M, N)."""
        codes = self.embedding.weight
        flat = z.reshape(-1, self.dim)
        return flat.pow(2).sum(1, keepdim=True) + codes.pow(2).sum(1)[None, :] - 2.0 * flat @ codes.t()

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code by squared Euclidean distance: z (..., C) -> (...)."""
        return self.distances(z).argmin(1).reshape(z.shape[:-1])

    def choose(self, z: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """The nearest code, or while ``sampling`` a draw from softmax(-distance / temperature).

        Only valid tokens are drawn (padded ones take the nearest code and no random number), so a
        clip's draws do not depend on how far its batch is padded."""
        distances = self.distances(z)
        if not self.sampling:
            return distances.argmin(1).reshape(z.shape[:-1])
        rows = slice(None) if valid is None else valid.flatten()
        probs = torch.softmax(-distances[rows].float() / self.temperature, dim=1)
        gen = self.generator
        if gen is not None and gen.device != probs.device:
            drawn = torch.multinomial(probs.cpu(), 1, generator=gen).to(probs.device)
        else:
            drawn = torch.multinomial(probs, 1, generator=gen)
        indices = distances.argmin(1)
        indices[rows] = drawn.squeeze(1)
        return indices.reshape(z.shape[:-1])

    def forward(self, z: torch.Tensor, valid: torch.Tensor | None = None) -> Quantized:
        """z (B, N, C) -> Quantized; ``valid`` (B, N) bool excludes padded tokens from loss and usage."""
        if z.shape[-1] != self.dim:
            raise ValueError(f"quantiser expects tokens of size {self.dim}, got {tuple(z.shape)}")
        indices = self.choose(z, valid)
        z_q = self.embedding(indices)
        if valid is None:
            valid = torch.ones(z.shape[:-1], dtype=torch.bool, device=z.device)
        w = valid.to(z.dtype)[..., None]
        denom = w.sum().clamp(min=1.0) * self.dim
        commitment = ((z_q.detach() - z).pow(2) * w).sum() / denom
        codebook = ((z_q - z.detach()).pow(2) * w).sum() / denom
        loss = self.beta * commitment + codebook
        z_st = z + (z_q - z).detach()
        with torch.no_grad():
            counts = torch.bincount(indices[valid], minlength=self.n_codes).to(z.dtype)
            probs = counts / counts.sum().clamp(min=1.0)
            perplexity = torch.exp(-(probs * torch.log(probs + 1e-10)).sum())
        return Quantized(z_st, loss, indices, perplexity)
