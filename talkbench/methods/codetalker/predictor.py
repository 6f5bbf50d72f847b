"""Stage 2 of CodeTalker: speech -> continuous code features, autoregressive over frames.

The shared post-LN transformer decoder (``methods/decoder.py``; biased causal self-attention, hard
alignment cross-attention) reads [style, vertice_map(offset_{t-1}) + style, ...] and the audio
features; ``feat_map`` (zero-initialised, no bias) maps each output to the H*C features that the
frozen codebook quantises.
``step`` is the key/value-cached single-position path, exact to the full-prefix pass in eval mode.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from talkbench.methods.decoder import DecoderCache, TransformerDecoder
from talkbench.methods.layers import (
    PeriodicPositionalEncoding,
    alibi_slopes,
    alignment_mask,
    biased_causal_mask,
    per_batch,
)


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
        # post-LN, ReLU, nn.TransformerDecoder's parameter names, plus a key/value-cached step
        self.decoder = TransformerDecoder(d_model, n_heads, ffn, n_layers, dropout)
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
    def start(self, memory: torch.Tensor) -> DecoderCache:
        return self.decoder.init_cache(memory)

    def step(self, token: torch.Tensor, position: int, cache: DecoderCache) -> torch.Tensor:
        """One new position: token (B, 1, d) embedded, without PPE -> features (B, 1, feat).

        Equals row ``position`` of ``forward`` on the whole prefix in eval mode (spec faceformer §7.1):
        causal rows never change as the sequence grows, and cross-attention sees fixed audio frames.
        """
        x = self.ppe(token, offset=position)
        dev = x.device
        steps = torch.arange(position, -1, -1, device=dev).div(self.period, rounding_mode="floor")
        self_row = -alibi_slopes(self.n_heads).to(x)[:, None, None] * steps.to(x)[None, None, :]
        n_audio = cache.mem_k[0].shape[2]
        k = torch.arange(n_audio, device=dev)[None, :]
        own = 2 * position if self.alignment == "pairs" else position  # first audio frame of this one
        width = 2 if self.alignment == "pairs" else 1
        mem_row = (k < own) | (k >= own + width)  # True = blocked, as alignment_mask's row
        return self.feat_map(self.decoder.step(x, cache, self_row, mem_row))
