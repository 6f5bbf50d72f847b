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
  never rebuilds. ``exact_frames`` N: also at each of the first N steps, a cost of O(N^2) once per
  clip: a young cache is the stalest (its frames saw a small share of the prefix and noisy
  statistics; measured, the fed-back frame's error grows fastest over the first steps after a
  refresh while the prefix is short).
- ``feedback``: the predictor's ``vertice_map``. The fed-back token is vertice_map(vertice_map_reverse(x)),
  two V*3-wide linears in a row; they are fused into one hidden x hidden linear, computed once per
  decoder. At batch 1 a step is bound by streaming the weights, and these two are a quarter of them.

Speed of a step (issue 16): its cost is streaming the weights once, so the step calls the weights
through ``FewRowLinear`` (few_row_linear.py: the fastest CPU kernel for a few rows), q/k/v in one matmul,
and keys/values written in place into buffers that grow by doubling (no torch.cat of the whole cache
per step). Refreshes (many frames at once, compute-bound) keep the modules.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from talkbench.methods.codetalker.few_row_linear import FewRowLinear
from talkbench.methods.codetalker.vqvae import MotionDecoder, PreNormBlock
from talkbench.methods.layers import sinusoid_table

REFRESH = ("none", "doubling", "every")


def _attend_block(
    block: PreNormBlock, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One pre-LN block over all frames x (B, n, D), non-causal -> (x, keys, values); keys are
    (B, heads, n, hd)."""
    attn = block.attn
    b, n, d = x.shape

    def heads(y: torch.Tensor) -> torch.Tensor:
        return y.view(b, n, attn.n_heads, d // attn.n_heads).transpose(1, 2)

    h = block.norm1(x)
    q, k, v = heads(attn.q(h)), heads(attn.k(h)), heads(attn.v(h))
    y = F.scaled_dot_product_attention(q, k, v, scale=attn.scale)
    x = x + attn.out(y.transpose(1, 2).reshape(b, n, d))
    return x + block.mlp(block.norm2(x)), k, v


def _block_weights(block: PreNormBlock, rows: int) -> tuple:
    a = block.attn
    qkv = FewRowLinear(torch.cat([a.q.weight, a.k.weight, a.v.weight]), None, rows)
    return (block.norm1, qkv, FewRowLinear(a.out.weight, a.out.bias, rows), block.norm2,
            FewRowLinear(block.mlp[0].weight, block.mlp[0].bias, rows), block.mlp[1].approximate,
            FewRowLinear(block.mlp[3].weight, block.mlp[3].bias, rows))


class IncrementalDecoder:
    """Feeds quantised frames (B, 1, H*C) one at a time; ``push`` returns the offsets (B, 1, V*3) that
    the last frame of a full decode of the prefix gives (exactly, or approximately: module docstring),
    or with ``feedback`` that linear applied to them (B, 1, out). Eval mode only (no dropout).
    ``max_len``: the number of frames to come, if known (the key/value buffers are sized once);
    ``exact_frames``: refresh at each of the first that many steps too (module docstring)."""

    def __init__(
        self, decoder: MotionDecoder, refresh: str = "doubling", eps: float = 1e-5,
        feedback: nn.Linear | None = None, max_len: int = 64, weights: tuple[dict, list] | None = None,
        exact_frames: int = 0,
    ):
        if refresh not in REFRESH:
            raise ValueError(f"refresh must be one of {', '.join(REFRESH)}, got '{refresh}'")
        self.dec = decoder
        self.refresh = refresh
        self.exact_frames = exact_frames
        self.eps = eps
        conv = decoder.squasher.conv
        self.kernel = conv.kernel_size[0]
        self.half = self.kernel // 2
        t = decoder.transformer
        self.hidden = t.embed.weight.shape[0]
        # step linears (``weights``); built at the first push, for its number of rows, if not given
        self.maps, self.blocks = weights or ({}, [])
        self.n_heads = t.blocks[0].attn.n_heads
        self.scale = t.blocks[0].attn.scale
        self.inputs: list[torch.Tensor] = []  # pre-conv frames (B, D), kept for refreshes
        self.taps: dict[int, torch.Tensor] = {}  # frame -> (B, k, D_out); frame 0 and the last k
        self.sum1: torch.Tensor | None = None  # running sums of final conv outputs (float64)
        self.sum2: torch.Tensor | None = None
        self.n_final = 0
        self.capacity = max(int(max_len), 1)
        self.kv: list[torch.Tensor] = []  # per block (B, 2, heads, capacity, hd): keys, values
        self.pe_fixed = t.pe.quirk != "constant"  # constant: PE(0) for every frame
        self.pe_table = sinusoid_table(self.capacity if self.pe_fixed else 1, t.pe.dim)
        self.feedback = feedback

    @staticmethod
    def weights(decoder: MotionDecoder, feedback: nn.Linear | None, rows: int) -> tuple[dict, list]:
        """The step's linears for ``rows`` rows: (maps by name, per block). They depend on the weights
        and the number of rows only, so a caller may keep them across clips (``weights=``)."""
        conv = decoder.squasher.conv
        # (k * D_out, D_in): all k tap products of a frame in one matmul
        taps = conv.weight.detach().permute(2, 0, 1).reshape(-1, conv.in_channels)
        maps = {"taps": FewRowLinear(taps, None, rows)}
        if decoder.pre is not None:
            maps["pre"] = FewRowLinear(decoder.pre.weight, decoder.pre.bias, rows)
        t = decoder.transformer
        maps["embed"] = FewRowLinear(t.embed.weight, t.embed.bias, rows)
        maps["out"] = FewRowLinear(*IncrementalDecoder._output(decoder.vertice_map_reverse, feedback), rows)
        return maps, [_block_weights(b, rows) for b in t.blocks]

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

    @property
    def keys(self) -> list[torch.Tensor]:
        """Cached keys per block, (B, heads, length, hd)."""
        return [kv[:, 0, :, : self.length] for kv in self.kv]

    @property
    def values(self) -> list[torch.Tensor]:
        return [kv[:, 1, :, : self.length] for kv in self.kv]

    def _reserve(self, n: int, like: torch.Tensor) -> None:
        """Key/value buffers for at least n frames; capacity doubles (amortised O(1) copies)."""
        b, d = like.shape[0], self.hidden
        if self.kv and n <= self.capacity:
            return
        old = self.capacity if self.kv else 0
        while self.capacity < n:
            self.capacity *= 2
        hd = d // self.n_heads
        new = [like.new_empty(b, 2, self.n_heads, self.capacity, hd) for _ in self.blocks]
        for buf, kv in zip(new, self.kv):
            buf[:, :, :, :old] = kv
        self.kv = new
        if self.pe_fixed and self.pe_table.shape[0] < self.capacity:
            self.pe_table = sinusoid_table(self.capacity, self.pe_table.shape[1])
        self.pe_table = self.pe_table.to(like)

    def _conv_out(self, j: int, n: int) -> torch.Tensor:
        """LeakyReLU(conv) at frame j of an n-frame prefix, replicate-padded at both ends -> (B, D)."""
        y = self.dec.squasher.conv.bias
        for o in range(self.kernel):
            t = min(max(j + o - self.half, 0), n - 1)
            y = y + self.taps[t][:, o]
        return F.leaky_relu(y, self.dec.squasher.slope)

    def _should_refresh(self, n: int) -> bool:
        if n == 1 or n <= self.exact_frames or self.refresh == "every":  # 1: the release's duplication
            return True
        return self.refresh == "doubling" and n & (n - 1) == 0

    @torch.no_grad()
    def push(self, z_q: torch.Tensor) -> torch.Tensor:
        """Append one quantised frame z_q (B, 1, H*C); -> offsets of the prefix's last frame (B, 1, V*3)."""
        x = z_q[:, 0]
        if not self.maps:
            self.maps, self.blocks = self.weights(self.dec, self.feedback, x.shape[0])
        if "pre" in self.maps:
            x = self.maps["pre"](x)
        i = self.length
        n = i + 1
        self._reserve(n, x)
        self.inputs.append(x)
        self.taps[i] = self.maps["taps"](x).view(x.shape[0], self.kernel, -1)
        # frame i - half now has its full look-ahead: its conv output is final
        j = i - self.half
        if j >= 0:
            y = self._conv_out(j, n).double()
            self.sum1 = y if self.sum1 is None else self.sum1 + y
            self.sum2 = y * y if self.sum2 is None else self.sum2 + y * y
            self.n_final += 1
        for old in [t for t in self.taps if 0 < t < i - 2 * self.half]:
            del self.taps[old]
        out = self._refresh() if self._should_refresh(n) else self._step(i, n)
        return self.maps["out"](out)[:, None]

    def _step(self, i: int, n: int) -> torch.Tensor:
        """The new frame i through the transformer against the cached keys/values -> (B, D)."""
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
        x = self.maps["embed"](h) + self.pe_table[i if self.pe_fixed else 0]
        b, d = x.shape
        heads = self.n_heads
        for kv, (n1, qkv_map, out_map, n2, lin1, gelu, lin2) in zip(self.kv, self.blocks):
            qkv = qkv_map(F.layer_norm(x, (d,), n1.weight, n1.bias, n1.eps))
            kv[:, :, :, i] = qkv[:, d:].view(b, 2, heads, d // heads)
            q = qkv[:, :d].reshape(b, heads, 1, d // heads).contiguous()  # SDPA: ~15 % faster contiguous
            a = F.scaled_dot_product_attention(q, kv[:, 0, :, :n], kv[:, 1, :, :n], scale=self.scale)
            x = x + out_map(a.view(b, d))
            f = lin1(F.layer_norm(x, (d,), n2.weight, n2.bias, n2.eps))
            x = x + lin2(F.gelu(f, approximate=gelu))
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
        for kv, block in zip(self.kv, dec.transformer.blocks):
            x, k, v = _attend_block(block, x)
            kv[:, 0, :, :n], kv[:, 1, :, :n] = k[:, :, :n], v[:, :, :n]
        return x[:, n - 1]
