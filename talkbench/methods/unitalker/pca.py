"""A fixed PCA basis of one dataset's motion offsets (models/pca.py of the release, in our words).

encode(offsets) = (offsets - data_bias) @ feat_to_data.T,  decode(coefficients) = coefficients @
feat_to_data + data_bias; ``feat_to_data`` (k, D) holds the components as rows. The release fits it
offline (IncrementalPCA) and ships ``pca.npz``; talkbench fits it on the training split's offsets
(motion - template) in :meth:`PCABasis.fit` and keeps it as buffers, so it travels with the run.
"""

from __future__ import annotations

import torch
from torch import nn

_EXACT = 5e7  # elements up to which the SVD is exact; beyond, a randomised one (torch.svd_lowrank)


class PCABasis(nn.Module):
    """k components of D-dimensional offsets; components past the data's rank stay zero rows."""

    def __init__(self, dim: int, k: int):
        super().__init__()
        self.register_buffer("feat_to_data", torch.zeros(k, dim))
        self.register_buffer("data_bias", torch.zeros(dim))

    @property
    def size(self) -> int:
        return int(self.feat_to_data.shape[0])

    def encode(self, offsets: torch.Tensor) -> torch.Tensor:
        return (offsets - self.data_bias) @ self.feat_to_data.T

    def decode(self, coefficients: torch.Tensor) -> torch.Tensor:
        return coefficients @ self.feat_to_data + self.data_bias

    @torch.no_grad()
    def fit(self, offsets: torch.Tensor) -> float:
        """Fit on (N, D) offsets; returns the basis's own error, the mean squared residual of the
        data's projection (the discarded singular values' energy / (N * D))."""
        x = offsets.to(torch.float64)
        mean = x.mean(0)
        centred = x - mean
        k = self.size
        if centred.numel() <= _EXACT:
            _, _, vt = torch.linalg.svd(centred, full_matrices=False)
        else:
            _, _, v = torch.svd_lowrank(centred, q=min(k + 10, *centred.shape), niter=4)
            vt = v.T
        n = min(k, vt.shape[0])
        components = torch.zeros(k, x.shape[1], dtype=torch.float64, device=x.device)
        components[:n] = vt[:n]
        residual = centred - (centred @ components.T) @ components
        self.feat_to_data.copy_(components.to(self.feat_to_data))
        self.data_bias.copy_(mean.to(self.data_bias))
        return float(residual.pow(2).mean())
