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

from talkbench.methods.codetalker.few_row_linear import FewRowLinear
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


def _unique_rows(memory: torch.Tensor) -> torch.Tensor:
    """The conditions of one clip share one expanded memory (stride 0): project it once."""
    return memory[:1] if memory.shape[0] > 1 and memory.stride(0) == 0 else memory


class PredictorStepper:
    """Inference-only twin of ``Predictor.step`` (eval mode, to float tolerance), for loops of one
    tiny step per frame whose cost is streaming weights and dispatch:

    - weights called through ``FewRowLinear`` (few_row_linear.py), q/k/v in one matmul, keys/values
      written in place into buffers preallocated for ``max_len`` positions (no per-step torch.cat
      of the whole cache);
    - the self-attention bias row (ALiBi, per period) sliced from a table built once;
    - cross-attention: with ``interpolate`` each frame sees one audio frame, and softmax over one
      key is 1, so the block is out_proj(value of that frame), computed for every frame at once;
      with ``pairs`` the query attends to its two audio frames only (the mask blocks all others);
    - the memory projected once for all conditions when they share it.
    """

    def __init__(
        self, predictor: Predictor, memory: torch.Tensor, max_len: int, weights: list | None = None
    ):
        """``weights``: ``PredictorStepper.weights(predictor, rows)`` prepared earlier (they depend
        on the weights and the number of rows only, so a caller may keep them across clips)."""
        if predictor.training:
            raise ValueError("PredictorStepper needs the predictor in eval mode (dropout off)")
        b = memory.shape[0]
        h = predictor.n_heads
        d = memory.shape[2]
        mem = _unique_rows(memory)
        self.pairs = predictor.alignment == "pairs"
        *per_layer, self.feat_map = weights or self.weights(predictor, b)
        self.layers = []
        for layer, (qkv_map, out_map, lin1, lin2, cross_maps) in zip(predictor.decoder.layers, per_layer):
            ca = layer.multihead_attn
            wv, bv = ca.in_proj_weight[2 * d :], ca.in_proj_bias[2 * d :]
            if self.pairs:
                k = F.linear(mem, ca.in_proj_weight[d : 2 * d], ca.in_proj_bias[d : 2 * d])
                v = F.linear(mem, wv, bv)
                split = (mem.shape[0], -1, h, d // h)
                cross = (k.view(split).transpose(1, 2).expand(b, -1, -1, -1),
                         v.view(split).transpose(1, 2).expand(b, -1, -1, -1), *cross_maps)
            else:
                rows = F.linear(F.linear(mem[:, :max_len], wv, bv), ca.out_proj.weight, ca.out_proj.bias)
                cross = rows.expand(b, -1, -1)
            kv = memory.new_empty(b, 2, h, max_len, d // h)
            self.layers.append((qkv_map, out_map, layer.norm1, cross, layer.norm2, lin1, lin2,
                                layer.norm3, kv))
        # row i of the self-attention bias over keys 0..i is rev[:, max_len - 1 - i :]
        dist = torch.arange(max_len, device=memory.device).div(predictor.period, rounding_mode="floor")
        slopes = alibi_slopes(h).to(memory)
        self.rev = (-slopes[:, None] * dist.to(memory)[None]).flip(1)[None, :, None]  # (1, H, 1, L)
        self.ppe = predictor.ppe.table.to(memory)
        self.b, self.h, self.d, self.max_len = b, h, d, max_len

    @staticmethod
    def weights(predictor: Predictor, rows: int) -> list:
        """The step's linears for ``rows`` rows: per layer (self q/k/v, self out, linear1, linear2,
        cross query and out (pairs alignment) or ()), then feat_map."""
        d = predictor.decoder.layers[0].self_attn.embed_dim
        out: list = []
        for layer in predictor.decoder.layers:
            sa, ca = layer.self_attn, layer.multihead_attn
            cross = ()
            if predictor.alignment == "pairs":
                cross = (FewRowLinear(ca.in_proj_weight[:d], ca.in_proj_bias[:d], rows),
                         FewRowLinear(ca.out_proj.weight, ca.out_proj.bias, rows))
            out.append((FewRowLinear(sa.in_proj_weight, sa.in_proj_bias, rows),
                        FewRowLinear(sa.out_proj.weight, sa.out_proj.bias, rows),
                        FewRowLinear(layer.linear1.weight, layer.linear1.bias, rows),
                        FewRowLinear(layer.linear2.weight, layer.linear2.bias, rows), cross))
        return [*out, FewRowLinear(predictor.feat_map.weight, None, rows)]

    def step(self, token: torch.Tensor, i: int) -> torch.Tensor:
        """Position ``i`` (0, 1, ... in order): embedded token (B, d) without PPE -> features (B, feat)."""
        b, h, d = self.b, self.h, self.d
        hd = d // h
        x = token + self.ppe[i % self.ppe.shape[0]]
        bias = self.rev[..., self.max_len - 1 - i :]
        for (qkv_map, out_map, n1, cross, n2, lin1, lin2, n3, kv) in self.layers:
            qkv = qkv_map(x)
            kv[:, :, :, i] = qkv[:, d:].view(b, 2, h, hd)
            q = qkv[:, :d].reshape(b, h, 1, hd).contiguous()  # SDPA: ~15 % faster contiguous
            a = F.scaled_dot_product_attention(q, kv[:, 0, :, : i + 1], kv[:, 1, :, : i + 1], bias)
            x = F.layer_norm(x + out_map(a.view(b, d)), (d,), n1.weight, n1.bias, n1.eps)
            if self.pairs:
                mk, mv, q_map, cross_out = cross
                q = q_map(x).view(b, h, 1, hd)
                pair = slice(2 * i, 2 * i + 2)  # its two audio frames: the mask blocks every other
                c = F.scaled_dot_product_attention(q, mk[:, :, pair], mv[:, :, pair])
                c = cross_out(c.view(b, d))
            else:
                c = cross[:, i]
            x = F.layer_norm(x + c, (d,), n2.weight, n2.bias, n2.eps)
            f = lin2(torch.relu(lin1(x)))
            x = F.layer_norm(x + f, (d,), n3.weight, n3.bias, n3.eps)
        return self.feat_map(x)
