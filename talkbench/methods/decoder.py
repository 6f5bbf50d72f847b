"""A transformer decoder (post-LN, ReLU, batch_first) with an incremental key/value-cache path.

Parameter names and shapes are those of ``nn.TransformerDecoder`` built from
``nn.TransformerDecoderLayer(d, n_heads, ffn, dropout, batch_first=True)`` with no final norm, so
state dicts load both ways and the full forward is numerically identical to it (tested).

Masks: float masks are added to the attention logits, boolean masks are True where blocked. Accepted
shapes: (T, S) shared by all; (B * n_heads, T, S) in nn.MultiheadAttention's layout (element b
uses rows b * n_heads ... b * n_heads + n_heads - 1; with B = 1 this is (n_heads, T, S)); or
(B, n_heads, T, S).

``step`` decodes one new position per call: self-attention keys/values of earlier positions come
from the cache and cross-attention keys/values of the memory are computed once. In eval mode the
result equals re-running the full prefix (FaceFormer spec §7.1); it is also differentiable, so
autoregressive training can use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


def additive_mask(
    mask: torch.Tensor | None, batch: int, n_heads: int, dtype: torch.dtype
) -> torch.Tensor | None:
    """Any accepted mask layout -> float (B or 1, n_heads or 1, T, S) added to the logits."""
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        mask = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))
    else:
        mask = mask.to(dtype)
    if mask.dim() == 2:
        return mask[None, None]
    if mask.dim() == 3:
        if mask.shape[0] == n_heads and batch != 1:
            return mask[None]  # (n_heads, T, S) shared by the batch
        return mask.reshape(-1, n_heads, *mask.shape[1:])
    if mask.dim() == 4:
        return mask
    raise ValueError(f"attention mask must be 2-, 3- or 4-D, got shape {tuple(mask.shape)}")


def _split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    b, t, d = x.shape
    return x.view(b, t, n_heads, d // n_heads).transpose(1, 2)


def _attend(
    mha: nn.MultiheadAttention,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    training: bool,
) -> torch.Tensor:
    """Scaled dot-product attention with projected heads (B, H, T, hd) -> out_proj (B, T, d).

    Attention weights are never returned or kept.
    """
    p = mha.dropout if training else 0.0
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
    b, h, t, hd = out.shape
    return F.linear(out.transpose(1, 2).reshape(b, t, h * hd), mha.out_proj.weight, mha.out_proj.bias)


def _project(mha: nn.MultiheadAttention, x: torch.Tensor, which: slice) -> torch.Tensor:
    w = mha.in_proj_weight[which]
    b = mha.in_proj_bias[which] if mha.in_proj_bias is not None else None
    return F.linear(x, w, b)


@dataclass
class DecoderCache:
    """Per-layer self-attention keys/values (B, H, t, hd) and memory keys/values (B, H, S, hd)."""

    self_k: list[torch.Tensor | None] = field(default_factory=list)
    self_v: list[torch.Tensor | None] = field(default_factory=list)
    mem_k: list[torch.Tensor] = field(default_factory=list)
    mem_v: list[torch.Tensor] = field(default_factory=list)
    length: int = 0


class DecoderLayer(nn.Module):
    """Post-LN decoder layer with nn.TransformerDecoderLayer's parameter names."""

    def __init__(self, d_model: int, n_heads: int, dim_feedforward: int, dropout: float = 0.1):
        super().__init__()
        self.n_heads = n_heads
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.multihead_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.d_model = d_model

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        qkv = F.linear(x, self.self_attn.in_proj_weight, self.self_attn.in_proj_bias)  # one matmul
        return tuple(_split_heads(t, self.n_heads) for t in qkv.chunk(3, dim=-1))  # type: ignore[return-value]

    def memory_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.d_model
        k = _project(self.multihead_attn, memory, slice(d, 2 * d))
        v = _project(self.multihead_attn, memory, slice(2 * d, 3 * d))
        return _split_heads(k, self.n_heads), _split_heads(v, self.n_heads)

    def _rest(self, x, mem_k, mem_v, memory_mask) -> torch.Tensor:
        """Cross-attention and feed-forward blocks (x already passed the self-attention block)."""
        q = _split_heads(_project(self.multihead_attn, x, slice(0, self.d_model)), self.n_heads)
        x = self.norm2(
            x + self.dropout2(_attend(self.multihead_attn, q, mem_k, mem_v, memory_mask, self.training))
        )
        ff = self.linear2(self.dropout(F.relu(self.linear1(x))))
        return self.norm3(x + self.dropout3(ff))

    def forward(
        self, x, mem_k, mem_v, tgt_mask, memory_mask, cache: DecoderCache | None = None, index: int = 0
    ):
        q, k, v = self._qkv(x)
        if cache is not None:
            if cache.self_k[index] is not None:
                k = torch.cat([cache.self_k[index], k], dim=2)
                v = torch.cat([cache.self_v[index], v], dim=2)
            cache.self_k[index], cache.self_v[index] = k, v
        sa = _attend(self.self_attn, q, k, v, tgt_mask, self.training)
        x = self.norm1(x + self.dropout1(sa))
        return self._rest(x, mem_k, mem_v, memory_mask)


class TransformerDecoder(nn.Module):
    """Stack of post-LN decoder layers; ``forward`` runs a whole sequence, ``step`` one position."""

    def __init__(
        self, d_model: int, n_heads: int, dim_feedforward: int, n_layers: int = 1, dropout: float = 0.1
    ):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.layers = nn.ModuleList(
            DecoderLayer(d_model, n_heads, dim_feedforward, dropout) for _ in range(n_layers)
        )

    def forward(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor,
        tgt_mask: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """tgt (B, T, d), memory (B, S, d) -> (B, T, d)."""
        b = tgt.shape[0]
        tgt_mask = additive_mask(tgt_mask, b, self.n_heads, tgt.dtype)
        memory_mask = additive_mask(memory_mask, b, self.n_heads, tgt.dtype)
        x = tgt
        for layer in self.layers:
            mem_k, mem_v = layer.memory_kv(memory)
            x = layer(x, mem_k, mem_v, tgt_mask, memory_mask)
        return x

    def init_cache(self, memory: torch.Tensor) -> DecoderCache:
        """Start incremental decoding over ``memory`` (B, S, d): memory keys/values computed once."""
        cache = DecoderCache()
        for layer in self.layers:
            k, v = layer.memory_kv(memory)
            cache.mem_k.append(k)
            cache.mem_v.append(v)
            cache.self_k.append(None)
            cache.self_v.append(None)
        return cache

    def step(
        self,
        x: torch.Tensor,
        cache: DecoderCache,
        tgt_mask: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Decode new position(s) x (B, n, d) given the cache; returns (B, n, d) and extends the cache.

        ``tgt_mask`` holds the rows of the new positions over all keys so far, (.., n, t + n);
        ``memory_mask`` their rows over the memory, (.., n, S). Same layouts as ``forward``.
        """
        b = x.shape[0]
        tgt_mask = additive_mask(tgt_mask, b, self.n_heads, x.dtype)
        memory_mask = additive_mask(memory_mask, b, self.n_heads, x.dtype)
        for i, layer in enumerate(self.layers):
            x = layer(x, cache.mem_k[i], cache.mem_v[i], tgt_mask, memory_mask, cache=cache, index=i)
        cache.length += x.shape[1]
        return x


class InferenceDecoder:
    """Inference-only incremental decoding of ``decoder`` over a fixed memory, one position per call.

    Same result as ``TransformerDecoder.step`` (to float tolerance) with less work per step, since
    the autoregressive loop runs one tiny step per frame and its cost is dispatch, not arithmetic:
    self-attention keys/values go into buffers preallocated for ``max_len`` positions (no torch.cat),
    layers are called through their weights (no nn.Module calls, no mask conversion per step), and
    where every memory-mask row lets exactly one memory position through (FaceFormer's
    'interpolate' alignment) the cross-attention block is a precomputed row: softmax over one key
    is exactly 1, so the block is out_proj(value of that key), computed for all rows at once.

    ``memory`` (B, S, d); ``memory_mask`` (max_len, S) in ``additive_mask``'s 2-D layouts or None.
    Use under ``torch.inference_mode()`` (or no_grad) with the decoder in eval mode.
    """

    def __init__(
        self,
        decoder: TransformerDecoder,
        memory: torch.Tensor,
        memory_mask: torch.Tensor | None,
        max_len: int,
    ):
        if decoder.training:
            raise ValueError("InferenceDecoder needs the decoder in eval mode (dropout off)")
        if memory_mask is not None and memory_mask.dim() != 2:
            raise ValueError(f"memory_mask must be (T, S), got shape {tuple(memory_mask.shape)}")
        b = memory.shape[0]
        h = decoder.n_heads
        mask = None if memory_mask is None else additive_mask(memory_mask, b, h, memory.dtype)[0, 0]
        # one allowed key per row -> the index of that key, else None (attend over the memory)
        only = None
        if mask is not None:
            allowed = torch.isfinite(mask)
            if bool((allowed.sum(1) == 1).all()):
                only = allowed.to(torch.int8).argmax(1)
        self.layers = []
        for layer in decoder.layers:
            d = layer.d_model
            sa, ca = layer.self_attn, layer.multihead_attn
            mem_k, mem_v = layer.memory_kv(memory)
            if only is not None:
                v = _project(ca, memory, slice(2 * d, 3 * d))
                cross = F.linear(v, ca.out_proj.weight, ca.out_proj.bias)[:, only]  # (B, max_len, d)
            else:
                cross = None
            kv = memory.new_empty(b, 2, h, max_len, d // h)  # keys then values, heads split
            self.layers.append((layer, sa, ca, mem_k, mem_v, cross, kv, d))
        self.mask = mask
        self.b, self.h = b, h

    def step(self, x: torch.Tensor, i: int, self_bias: torch.Tensor | None) -> torch.Tensor:
        """Position ``i`` (0, 1, ... in order): x (B, d) -> (B, d). ``self_bias``: its additive row
        over the keys so far, broadcastable to (B, H, 1, i + 1), or None."""
        b, h = self.b, self.h
        for layer, sa, ca, mem_k, mem_v, cross, kv, d in self.layers:
            qkv = F.linear(x, sa.in_proj_weight, sa.in_proj_bias)
            kv[:, :, :, i] = qkv[:, d:].view(b, 2, h, d // h)
            q = qkv[:, :d].view(b, h, 1, d // h)
            a = F.scaled_dot_product_attention(q, kv[:, 0, :, : i + 1], kv[:, 1, :, : i + 1], self_bias)
            a = F.linear(a.reshape(b, d), sa.out_proj.weight, sa.out_proj.bias)
            x = F.layer_norm(x + a, (d,), layer.norm1.weight, layer.norm1.bias, layer.norm1.eps)
            if cross is not None:
                c = cross[:, i]
            else:
                q = F.linear(x, ca.in_proj_weight[:d], ca.in_proj_bias[:d]).view(b, h, 1, d // h)
                m = None if self.mask is None else self.mask[i : i + 1]
                c = F.scaled_dot_product_attention(q, mem_k, mem_v, m).reshape(b, d)
                c = F.linear(c, ca.out_proj.weight, ca.out_proj.bias)
            x = F.layer_norm(x + c, (d,), layer.norm2.weight, layer.norm2.bias, layer.norm2.eps)
            f = F.relu(F.linear(x, layer.linear1.weight, layer.linear1.bias))
            f = F.linear(f, layer.linear2.weight, layer.linear2.bias)
            x = F.layer_norm(x + f, (d,), layer.norm3.weight, layer.norm3.bias, layer.norm3.eps)
        return x
