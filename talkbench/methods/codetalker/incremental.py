"""The VQ-VAE decoder run one quantised frame at a time, for CodeTalker's autoregressive feedback.

The released loop (`exact`) decodes the whole quantised prefix at every step and feeds back its last
frame: O(T) work per step. ``IncrementalDecoder.push`` returns that last frame for O(1) work per
step (plus attention over the cached keys, negligible next to the 1024-d projections):

- convolution (kernel k, replicate padding): each frame's k tap products W_o z_t are computed once
  when it arrives; a frame's conv output is the sum of its neighbours' taps. The last k // 2 frames
  of a prefix see replicate-padded look-ahead (copies of the last frame), exactly as the full pass
  over that prefix does, so they are recomputed each step from the stored taps. **Exact.**
- instance norm over time: mean and variance of all conv outputs of the prefix from running sums
  (float64) of the final outputs plus the k // 2 provisional ones. **Exact** for the new frame.
- transformer: the new frame attends to cached keys/values of the earlier frames. **Approximation**:
  in the full pass every earlier frame is re-normalised with the current statistics and re-attends
  to all frames including the new one (the decoder is non-causal); the cache holds them as they
  were computed at their own step (causal, statistics of their own prefix).
- ``refresh``: at the chosen steps the cache is rebuilt from a full non-causal pass over the prefix,
  which is then what `exact` computes at that step. ``doubling`` (prefix lengths 1, 2, 4, 8, ...)
  bounds the staleness of the cache to half the prefix and costs about one extra frame per frame
  (amortised O(1)); ``every`` reproduces `exact` (O(T) per step, a reference for tests); ``none``
  never rebuilds.
- ``feedback``: the predictor's ``vertice_map``. The fed-back token is vertice_map(vertice_map_reverse(x)),
  two V*3-wide linears in a row; they are fused into one hidden x hidden linear, computed once per
  decoder. At batch 1 a step is bound by streaming the weights, and these two are a quarter of them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from talkbench.methods.codetalker.vqvae import MotionDecoder, PreNormBlock
from talkbench.methods.layers import sinusoid_table

REFRESH = ("none", "doubling", "every")


def _attend_block(
    block: PreNormBlock, x: torch.Tensor, past_k: torch.Tensor | None, past_v: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One pre-LN block for new frames x (B, n, D) attending to past keys/values plus their own
    (no mask: non-causal among the new frames). -> (x, keys, values) with keys (B, heads, t + n, hd)."""
    attn = block.attn
    b, n, d = x.shape

    def heads(y: torch.Tensor) -> torch.Tensor:
        return y.view(b, n, attn.n_heads, d // attn.n_heads).transpose(1, 2)

    h = block.norm1(x)
    q, k, v = heads(attn.q(h)), heads(attn.k(h)), heads(attn.v(h))
    if past_k is not None:
        k, v = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)
    y = F.scaled_dot_product_attention(q, k, v, scale=attn.scale)
    x = x + attn.out(y.transpose(1, 2).reshape(b, n, d))
    return x + block.mlp(block.norm2(x)), k, v


class IncrementalDecoder:
    """Feeds quantised frames (B, 1, H*C) one at a time; ``push`` returns the offsets (B, 1, V*3) that
    the last frame of a full decode of the prefix gives (exactly, or approximately: module docstring),
    or with ``feedback`` that linear applied to them (B, 1, out). Eval mode only (no dropout)."""

    def __init__(
        self, decoder: MotionDecoder, refresh: str = "doubling", eps: float = 1e-5,
        feedback: nn.Linear | None = None,
    ):
        if refresh not in REFRESH:
            raise ValueError(f"refresh must be one of {', '.join(REFRESH)}, got '{refresh}'")
        self.dec = decoder
        self.refresh = refresh
        self.eps = eps
        conv = decoder.squasher.conv
        self.kernel = conv.kernel_size[0]
        self.half = self.kernel // 2
        # (D_in, k * D_out): all k tap products of a frame in one matmul
        self.tap_weight = conv.weight.permute(1, 2, 0).reshape(conv.in_channels, -1)
        self.inputs: list[torch.Tensor] = []  # pre-conv frames (B, D), kept for refreshes
        self.taps: dict[int, torch.Tensor] = {}  # frame -> (B, k, D_out); frame 0 and the last k
        self.sum1: torch.Tensor | None = None  # running sums of final conv outputs (float64)
        self.sum2: torch.Tensor | None = None
        self.n_final = 0
        n_layers = len(decoder.transformer.blocks)
        self.keys: list[torch.Tensor | None] = [None] * n_layers
        self.values: list[torch.Tensor | None] = [None] * n_layers
        self.out_weight, self.out_bias = self._output(decoder.vertice_map_reverse, feedback)

    @staticmethod
    @torch.no_grad()
    def _output(reverse: nn.Linear, feedback: nn.Linear | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        if feedback is None:
            return reverse.weight, reverse.bias
        bias = feedback.bias
        if reverse.bias is not None:
            bias = feedback(reverse.bias)
        return feedback.weight @ reverse.weight, bias

    @property
    def length(self) -> int:
        return len(self.inputs)

    def _conv_out(self, j: int, n: int) -> torch.Tensor:
        """LeakyReLU(conv) at frame j of an n-frame prefix, replicate-padded at both ends -> (B, D)."""
        y = self.dec.squasher.conv.bias
        for o in range(self.kernel):
            t = min(max(j + o - self.half, 0), n - 1)
            y = y + self.taps[t][:, o]
        return F.leaky_relu(y, self.dec.squasher.slope)

    def _pe(self, i: int, device, dtype) -> torch.Tensor:
        pe = self.dec.transformer.pe
        row = sinusoid_table(1 if pe.quirk == "constant" else i + 1, pe.dim)[-1]
        return row.to(device=device, dtype=dtype)

    def _should_refresh(self, n: int) -> bool:
        if n == 1 or self.refresh == "every":  # the first frame follows the release's duplication
            return True
        return self.refresh == "doubling" and n & (n - 1) == 0

    @torch.no_grad()
    def push(self, z_q: torch.Tensor) -> torch.Tensor:
        """Append one quantised frame z_q (B, 1, H*C); -> offsets of the prefix's last frame (B, 1, V*3)."""
        dec = self.dec
        x = dec.pre(z_q) if dec.pre is not None else z_q
        x = x[:, 0]
        i = self.length
        n = i + 1
        self.inputs.append(x)
        self.taps[i] = (x @ self.tap_weight).view(x.shape[0], self.kernel, -1)
        # frame i - half now has its full look-ahead: its conv output is final
        j = i - self.half
        if j >= 0:
            y = self._conv_out(j, n).double()
            self.sum1 = y if self.sum1 is None else self.sum1 + y
            self.sum2 = y * y if self.sum2 is None else self.sum2 + y * y
            self.n_final += 1
        for old in [t for t in self.taps if 0 < t < i - 2 * self.half]:
            del self.taps[old]
        if self._should_refresh(n):
            out = self._refresh()
        else:
            out = self._step(i, n)
        return F.linear(out, self.out_weight, self.out_bias)

    def _step(self, i: int, n: int) -> torch.Tensor:
        provisional = [self._conv_out(j, n) for j in range(max(i - self.half + 1, 0), n)]
        s1, s2 = self.sum1, self.sum2
        for y in provisional:
            y = y.double()
            s1 = y if s1 is None else s1 + y
            s2 = y * y if s2 is None else s2 + y * y
        mean = s1 / n
        var = (s2 / n - mean * mean).clamp(min=0.0)
        last = provisional[-1]
        h = ((last.double() - mean) / torch.sqrt(var + self.eps)).to(last.dtype)
        t = self.dec.transformer
        x = (t.embed(h) + self._pe(i, h.device, h.dtype))[:, None]
        for li, block in enumerate(t.blocks):
            x, self.keys[li], self.values[li] = _attend_block(block, x, self.keys[li], self.values[li])
        return x

    def _refresh(self) -> torch.Tensor:
        """Full non-causal pass over the prefix (what `exact` decodes); rebuilds the cache. A single
        frame is decoded duplicated, as the release does (conv/instance norm need two frames); with
        the constant PE that equals a one-frame pass, with the fixed PE the copy sees PE(1)."""
        dec = self.dec
        z = torch.stack(self.inputs, dim=1)
        n = z.shape[1]
        if n == 1:
            z = torch.cat([z, z], dim=1)
        valid = torch.ones(z.shape[:2], dtype=torch.bool, device=z.device)
        x = dec.transformer.pe(dec.transformer.embed(dec.squasher(z, valid)))
        for li, block in enumerate(dec.transformer.blocks):
            x, k, v = _attend_block(block, x, None, None)
            self.keys[li], self.values[li] = k[:, :, :n], v[:, :, :n]
        return x[:, n - 1 : n]
