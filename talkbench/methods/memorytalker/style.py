"""Speaking-style branch (spec §3.1): the AdaIN-VC speaker encoder on log-mel, plus the style heads.

E_s: conv bank (kernels 1..8) -> 1x1 conv -> 6 residual conv blocks (stride 1,2,1,2,1,2) -> global
average over time -> 6 residual dense blocks -> Linear(128 -> 256).

Padded batches (``lengths`` given) are exact per clip: every conv reads a per-clip reflect padding
gathered from the clip's own frames (an output frame t < L only sees padded positions < L + k - 1,
its own), the stride-2 average pool divides by the clip's valid frames in each window (the release
pools the last odd frame alone), and the global average is a masked mean. The encoder has no norm
layers, so nothing else mixes frames across the clip's end. Heads: f_s = to_style_emb (256 ->
n), scale = to_scale (n -> 1, no bias), w_s = sigmoid(f_s) * scale (Eq 15), triplet projection
style_mlp (n -> n -> n). About 1.737M parameters at the released sizes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _pad_for(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """AdaIN-VC's length-preserving padding: (k//2, k//2) for odd k, (k//2, k//2 - 1) for even k.

    Reflect padding as released; sequences too short to reflect (a few frames, far below any real
    utterance) fall back to replicate padding so inference works for any length.
    """
    left = kernel // 2
    right = left if kernel % 2 else left - 1
    if left == 0 and right == 0:
        return x
    mode = "reflect" if x.shape[-1] > max(left, right) else "replicate"
    return F.pad(x, (left, right), mode=mode)


def _edge_index(lengths: torch.Tensor, left: int, right: int, width: int) -> torch.Tensor:
    """(B, width + left + right) source frames of ``_pad_for`` applied to each clip alone: reflect,
    replicate where a clip is too short to reflect; positions past a clip's padded end are clamped
    into the clip (they only feed outputs past its length)."""
    j = torch.arange(-left, width + right, device=lengths.device)[None]
    last = (lengths - 1)[:, None]
    reflect = j.abs()
    reflect = torch.where(reflect > last, 2 * last - reflect, reflect)
    replicate = torch.minimum(j.clamp(min=0), last)
    idx = torch.where(lengths[:, None] > max(left, right), reflect, replicate)
    return torch.minimum(idx.clamp(min=0), last)


def _pad_batch(x: torch.Tensor, lengths: torch.Tensor, kernel: int, cache: dict) -> torch.Tensor:
    """``_pad_for`` per clip of a padded batch x (B, C, W) whose clip b has lengths[b] valid frames;
    ``cache`` keeps the gather index of each (kernel, width) for the rest of one forward."""
    left = kernel // 2
    right = left if kernel % 2 else left - 1
    if left == 0 and right == 0:
        return x
    key = (left, right, x.shape[-1])
    if key not in cache:
        cache[key] = _edge_index(lengths, left, right, x.shape[-1])[:, None, :]
    idx = cache[key]
    return torch.gather(x, 2, idx.expand(-1, x.shape[1], -1))


def _valid(lengths: torch.Tensor, width: int, like: torch.Tensor) -> torch.Tensor:
    """(B, 1, width) 1.0 on each clip's valid frames, 0.0 on padding."""
    return (torch.arange(width, device=lengths.device)[None] < lengths[:, None]).to(like.dtype)[:, None]


def length_groups(lengths: torch.Tensor, ratio: float = 0.85) -> list[list[int]]:
    """Indices grouped by similar length (longest first; each at least ``ratio`` of its group's
    longest), so a padded batch per group wastes at most ~(1 - ratio) of the compute."""
    groups: list[list[int]] = []
    for i in torch.argsort(lengths, descending=True, stable=True).tolist():
        if groups and int(lengths[i]) >= ratio * int(lengths[groups[-1][0]]):
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


class SpeakerEncoder(nn.Module):
    """AdaIN-VC speaker encoder (Chou et al. 2019), dropout 0, ReLU."""

    def __init__(
        self,
        n_mels: int = 80,
        channels: int = 128,
        out_dim: int = 256,
        bank_size: int = 8,
        kernel: int = 5,
        subsample: tuple[int, ...] = (1, 2, 1, 2, 1, 2),
        dense_blocks: int = 6,
    ):
        super().__init__()
        self.subsample = tuple(subsample)
        self.conv_bank = nn.ModuleList(nn.Conv1d(n_mels, channels, k) for k in range(1, bank_size + 1))
        self.in_conv_layer = nn.Conv1d(channels * bank_size + n_mels, channels, 1)
        self.first_conv_layers = nn.ModuleList(nn.Conv1d(channels, channels, kernel) for _ in self.subsample)
        self.second_conv_layers = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel, stride=s) for s in self.subsample
        )
        self.first_dense_layers = nn.ModuleList(nn.Linear(channels, channels) for _ in range(dense_blocks))
        self.second_dense_layers = nn.ModuleList(nn.Linear(channels, channels) for _ in range(dense_blocks))
        self.output_layer = nn.Linear(channels, out_dim)

    def forward(self, mel: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """mel (B, n_mels, F) -> (B, out_dim); ``lengths`` (B,) valid frames per clip of a padded batch
        (None: every clip fills F)."""
        if lengths is not None:
            return self._forward_padded(mel, lengths)
        bank = [F.relu(conv(_pad_for(mel, conv.kernel_size[0]))) for conv in self.conv_bank]
        x = F.relu(self.in_conv_layer(torch.cat([*bank, mel], dim=1)))
        for first, second, s in zip(self.first_conv_layers, self.second_conv_layers, self.subsample):
            y = F.relu(first(_pad_for(x, first.kernel_size[0])))
            y = F.relu(second(_pad_for(y, second.kernel_size[0])))
            if s > 1:
                x = F.avg_pool1d(x, kernel_size=s, ceil_mode=True)
            x = x + y
        x = x.mean(dim=-1)
        for first, second in zip(self.first_dense_layers, self.second_dense_layers):
            x = x + F.relu(second(F.relu(first(x))))
        return self.output_layer(x)

    def _forward_padded(self, mel: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The forward above on a padded batch, equal to each clip run alone (module docstring)."""
        lengths = lengths.to(mel.device)
        cache: dict = {}  # widths shrink with each stride, so a (kernel, width) key is one set of lengths
        bank = [F.relu(conv(_pad_batch(mel, lengths, conv.kernel_size[0], cache))) for conv in self.conv_bank]
        x = F.relu(self.in_conv_layer(torch.cat([*bank, mel], dim=1)))
        for first, second, s in zip(self.first_conv_layers, self.second_conv_layers, self.subsample):
            y = F.relu(first(_pad_batch(x, lengths, first.kernel_size[0], cache)))
            y = F.relu(second(_pad_batch(y, lengths, second.kernel_size[0], cache)))
            if s > 1:
                # windows straddling a clip's end average its valid frames only; both pools share the
                # divisor, so sum / count is the clip's own mean (exact for s = 2)
                valid = _valid(lengths, x.shape[-1], x)
                total = F.avg_pool1d(x * valid, kernel_size=s, ceil_mode=True)
                count = F.avg_pool1d(valid, kernel_size=s, ceil_mode=True)
                x = total / count.clamp(min=1e-12)
                lengths = (lengths + s - 1) // s
            x = x + y
        x = (x * _valid(lengths, x.shape[-1], x)).sum(dim=-1) / lengths[:, None].to(x.dtype)
        for first, second in zip(self.first_dense_layers, self.second_dense_layers):
            x = x + F.relu(second(F.relu(first(x))))
        return self.output_layer(x)


class SpeakingStyleEncoder(nn.Module):
    """E_s plus heads: ``forward(mel) -> f_s (B, n)``; ``weights(f_s)`` and ``project(f_s)``."""

    def __init__(self, slots: int, **encoder_kwargs):
        super().__init__()
        self.encoder = SpeakerEncoder(**encoder_kwargs)
        out_dim = self.encoder.output_layer.out_features
        self.to_style_emb = nn.Linear(out_dim, slots)
        self.to_scale = nn.Linear(slots, 1, bias=False)
        self.style_mlp = nn.Sequential(nn.Linear(slots, slots), nn.ReLU(), nn.Linear(slots, slots))
        for m in self.modules():  # xavier-uniform weights, zero biases (as released)
            if isinstance(m, nn.Linear | nn.Conv1d):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, mel: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.to_style_emb(self.encoder(mel, lengths))

    def weights(self, f_s: torch.Tensor) -> torch.Tensor:
        """w_s = sigmoid(f_s) * scale(f_s) (Eq 15): one weight per memory slot, (B, n)."""
        return torch.sigmoid(f_s) * self.to_scale(f_s)

    def project(self, f_s: torch.Tensor) -> torch.Tensor:
        """Triplet projection head (Eq 13)."""
        return self.style_mlp(f_s)
