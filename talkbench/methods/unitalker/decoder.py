"""UniTalker's two decoders (models/unitalker_decoder.py, models/model_utils.py of the release):

``TCNDecoder`` (``conv``, the default): Linear(encoder dim -> d) -> dropout -> concat the identity
embedding repeated over time -> ``tcn_layers`` conv blocks (Conv1d k3 pad 1 -> LayerNorm over channels
-> + residual (a k3 conv where the width changes, else identity) -> ReLU).
``TransformerDecoder``: the identity embedding (d wide) repeated over time plus the periodic positional
encoding queries the projected audio through one FaceFormer decoder layer (ALiBi-biased causal
self-attention, frame i attending audio frame i).

Both take (B, T, C) features at the motion rate, (B,) identity indices and a (B, T) valid mask and
return (B, T, d). Padded frames are zeroed before every convolution, which is the zero padding a clip
alone gets, so a padded batch gives each clip what it gives alone.
"""

from __future__ import annotations

import torch
from torch import nn

from talkbench.methods.layers import PeriodicPositionalEncoding, alignment_mask, biased_causal_mask, per_batch
from talkbench.methods.unitalker.config import UniTalkerConfig


class ConvBlock(nn.Module):
    """ConvNormRelu(1d, residual, norm='ln') of the release (its dropout has p = 0: left out)."""

    def __init__(self, c_in: int, c_out: int, kernel: int):
        super().__init__()
        pad = (kernel - 1) // 2
        self.conv = nn.Conv1d(c_in, c_out, kernel, padding=pad)
        self.norm = nn.LayerNorm(c_out)
        self.residual_layer = (nn.Identity() if c_in == c_out
                               else nn.Sequential(nn.Conv1d(c_in, c_out, kernel, padding=pad)))

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        x = x * valid
        out = self.norm(self.conv(x).transpose(1, 2)).transpose(1, 2)
        return torch.relu(out + self.residual_layer(x))


class TCNDecoder(nn.Module):
    def __init__(self, c: UniTalkerConfig, in_dim: int, n_identities: int):
        super().__init__()
        self.identity = nn.Embedding(n_identities, c.identity_dim)
        self.audio_feature_map = nn.Linear(in_dim, c.decoder_dim)
        self.dropout = nn.Dropout(c.dropout)
        widths = [c.decoder_dim + c.identity_dim] + [c.decoder_dim] * c.tcn_layers
        self.blocks = nn.ModuleList(ConvBlock(a, b, c.kernel_size) for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, feats: torch.Tensor, identity: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.audio_feature_map(feats))
        style = self.identity(identity)[:, None].expand(-1, x.shape[1], -1)
        x = torch.cat([x, style], dim=-1).transpose(1, 2)
        mask = valid[:, None].to(x.dtype)
        for block in self.blocks:
            x = block(x, mask)
        return x.transpose(1, 2) * valid[..., None].to(x.dtype)


class TransformerDecoder(nn.Module):
    def __init__(self, c: UniTalkerConfig, in_dim: int, n_identities: int):
        super().__init__()
        d = c.decoder_dim
        self.n_heads, self.period = c.n_heads, c.period
        self.identity = nn.Embedding(n_identities, d)
        self.audio_feature_map = nn.Linear(in_dim, d)
        self.PPE = PeriodicPositionalEncoding(d, c.period, c.dropout)
        layer = nn.TransformerDecoderLayer(d, c.n_heads, 2 * d, c.dropout, batch_first=True)
        self.transformer_decoder = nn.TransformerDecoder(layer, 1)

    def forward(self, feats: torch.Tensor, identity: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        b, t = valid.shape
        queries = self.PPE(self.identity(identity)[:, None].expand(-1, t, -1))
        memory = self.audio_feature_map(feats)
        # causal self-attention and the diagonal cross-attention never reach a padded frame from a
        # valid one, so no key-padding mask is needed
        self_mask = per_batch(biased_causal_mask(self.n_heads, t, self.period, feats.device), b, self.n_heads)
        cross_mask = alignment_mask(t, t, "interpolate", feats.device)
        out = self.transformer_decoder(queries, memory, tgt_mask=self_mask.to(memory.dtype),
                                       memory_mask=cross_mask)
        return out * valid[..., None].to(out.dtype)


def build_decoder(c: UniTalkerConfig, in_dim: int, n_identities: int) -> nn.Module:
    return (TCNDecoder if c.decoder == "conv" else TransformerDecoder)(c, in_dim, n_identities)
