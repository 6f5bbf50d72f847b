"""Stage 2 of CodeTalker: speech -> continuous code features, autoregressive over frames.

A post-LN ``nn.TransformerDecoder`` (biased causal self-attention, hard alignment cross-attention)
reads [style, vertice_map(offset_{t-1}) + style, ...] and the audio features; ``feat_map``
(zero-initialised, no bias) maps each output to the H*C features that the frozen codebook quantises.
``step`` is the key/value-cached single-position path, exact to the full-prefix pass in eval mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from talkbench.methods.layers import (
    PeriodicPositionalEncoding,
    alibi_slopes,
    alignment_mask,
    biased_causal_mask,
    per_batch,
)


@dataclass
class DecodeCache:
    """Per-layer self-attention keys/values so far and the projected audio keys/values."""

    self_k: list[torch.Tensor] = field(default_factory=list)
    self_v: list[torch.Tensor] = field(default_factory=list)
    mem_k: list[torch.Tensor] = field(default_factory=list)
    mem_v: list[torch.Tensor] = field(default_factory=list)


class Predictor(nn.Module):
    def __init__(
        self,
        audio_encoder: nn.Module,
        in_dim: int,
        d_model: int,
        n_heads: int,
        ffn: int,
        n_layers: int,
        n_styles: int,
        feat_dim: int,
        period: int,
        dropout: float,
        alignment: str,
    ):
        super().__init__()
        self.audio_encoder = audio_encoder
        self.audio_feature_map = nn.Linear(audio_encoder.out_dim, d_model)
        self.vertice_map = nn.Linear(in_dim, d_model)
        self.style_embedding = nn.Embedding(max(n_styles, 1), d_model)
        self.ppe = PeriodicPositionalEncoding(d_model, period, dropout)
        layer = nn.TransformerDecoderLayer(d_model, n_heads, ffn, dropout, batch_first=True)
        self.decoder = nn.TransformerDecoder(layer, n_layers)
        self.feat_map = nn.Linear(d_model, feat_dim, bias=False)
        nn.init.zeros_(self.feat_map.weight)
        self.n_heads = n_heads
        self.period = period
        self.alignment = alignment

    # -- audio ----------------------------------------------------------------------------------
    def encode_audio(
        self, audio: torch.Tensor, audio_lengths: torch.Tensor, n_frames: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> memory (B, Ta, d), number of motion frames per clip (B,)."""
        feats, feat_lengths = self.audio_encoder(audio, audio_lengths, n_frames)
        frames = feat_lengths // 2 if self.alignment == "pairs" else feat_lengths
        if n_frames is not None:
            frames = n_frames
        memory = self.audio_feature_map(feats)
        # every frame must see its audio frame(s): pad short features so no attention row is empty
        need = int(frames.max()) * (2 if self.alignment == "pairs" else 1)
        if memory.shape[1] < need:
            memory = F.pad(memory, (0, 0, 0, need - memory.shape[1]))
        return memory, frames

    # -- teacher forcing -------------------------------------------------------------------------
    def forward(
        self, memory: torch.Tensor, tokens: torch.Tensor
    ) -> torch.Tensor:
        """Full-prefix pass: tokens (B, T, d) already embedded (style + vertice_map), -> (B, T, feat)."""
        b, t, _ = tokens.shape
        h, dev = self.n_heads, tokens.device
        tgt_mask = per_batch(biased_causal_mask(h, t, self.period, dev), b, h)
        mem_mask = per_batch(alignment_mask(t, memory.shape[1], self.alignment, dev), b, h)
        out = self.decoder(self.ppe(tokens), memory, tgt_mask=tgt_mask.to(tokens.dtype), memory_mask=mem_mask)
        return self.feat_map(out)

    def embed(self, offsets: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """vertice_map(offsets) + style: offsets (B, T, V*3), style (B, d)."""
        return self.vertice_map(offsets) + style[:, None, :]

    # -- cached incremental decoding (eval mode) -------------------------------------------------
    def start(self, memory: torch.Tensor) -> DecodeCache:
        cache = DecodeCache()
        for layer in self.decoder.layers:
            attn = layer.multihead_attn
            d = attn.embed_dim
            w, bias = attn.in_proj_weight, attn.in_proj_bias
            cache.mem_k.append(self._heads(F.linear(memory, w[d : 2 * d], bias[d : 2 * d])))
            cache.mem_v.append(self._heads(F.linear(memory, w[2 * d :], bias[2 * d :])))
            cache.self_k.append(memory.new_zeros(memory.shape[0], self.n_heads, 0, d // self.n_heads))
            cache.self_v.append(memory.new_zeros(memory.shape[0], self.n_heads, 0, d // self.n_heads))
        return cache

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        return x.view(b, t, self.n_heads, d // self.n_heads).transpose(1, 2)

    def _merge(self, x: torch.Tensor) -> torch.Tensor:
        b, h, t, dh = x.shape
        return x.transpose(1, 2).reshape(b, t, h * dh)

    def step(self, token: torch.Tensor, position: int, cache: DecodeCache) -> torch.Tensor:
        """One new position: token (B, 1, d) embedded, without PPE -> features (B, 1, feat).

        Equals row ``position`` of ``forward`` on the whole prefix in eval mode (spec faceformer §7.1):
        causal rows never change as the sequence grows, and cross-attention sees fixed audio frames.
        """
        x = self.ppe(token, offset=position)
        steps = torch.arange(position, -1, -1, device=x.device).div(self.period, rounding_mode="floor")
        bias = -alibi_slopes(self.n_heads).to(x)[:, None, None] * steps.to(x)[None, None, :]
        audio_idx = [position] if self.alignment == "interpolate" else [2 * position, 2 * position + 1]
        for i, layer in enumerate(self.decoder.layers):
            sa = layer.self_attn
            q, k, v = F.linear(x, sa.in_proj_weight, sa.in_proj_bias).chunk(3, dim=-1)
            cache.self_k[i] = torch.cat([cache.self_k[i], self._heads(k)], dim=2)
            cache.self_v[i] = torch.cat([cache.self_v[i], self._heads(v)], dim=2)
            y = F.scaled_dot_product_attention(
                self._heads(q), cache.self_k[i], cache.self_v[i], attn_mask=bias
            )
            x = layer.norm1(x + sa.out_proj(self._merge(y)))
            ca = layer.multihead_attn
            d = ca.embed_dim
            q = F.linear(x, ca.in_proj_weight[:d], ca.in_proj_bias[:d])
            y = F.scaled_dot_product_attention(
                self._heads(q), cache.mem_k[i][:, :, audio_idx], cache.mem_v[i][:, :, audio_idx]
            )
            x = layer.norm2(x + ca.out_proj(self._merge(y)))
            x = layer.norm3(x + layer.linear2(layer.activation(layer.linear1(x))))
        return self.feat_map(x)
