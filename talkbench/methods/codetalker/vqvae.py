"""Stage 1 of CodeTalker: a non-causal transformer VQ-VAE over face-component tokens.

Every frame's 1024-d latent is split into H tokens of size C (VOCASET 16 x 64, BIWI 8 x 128), each
quantised against one shared codebook. Padded batches give exactly the per-clip result: the
replicate-padded convolution sees each clip's own last frame, instance norm uses valid frames only,
and attention ignores padded keys.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from talkbench.methods.codetalker.quantizer import Quantized, VectorQuantizer
from talkbench.methods.layers import sinusoid_table


@dataclass(frozen=True)
class VQShape:
    """Layer shapes of the VQ-VAE (see specs/codetalker.md §1, §3)."""

    in_dim: int  # V * 3
    hidden: int = 1024
    n_layers: int = 6
    n_heads: int = 8
    ffn: int = 1536
    groups: int = 16  # H, face components per frame
    code_dim: int = 64  # C
    n_codes: int = 256
    kernel: int = 5
    slope: float = 0.2
    io_linears: bool = False  # BIWI: encoder_linear_embedding_post / decoder_linear_embedding_pre
    reverse_bias: bool = True  # BIWI: vertice_map_reverse without bias
    pe_dropout: float = 0.1
    block_dropout: float = 0.0
    beta: float = 0.25
    pe_quirk: str = "constant"  # constant: PE(0) added to every frame (released) | fixed: per-frame PE
    attn_scale_quirk: str = "hidden"  # hidden: 1/sqrt(hidden) (released) | head_dim: 1/sqrt(head_dim)


def fill_padding_with_last(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """x (B, T, D): replace padded frames by each clip's last valid frame (replicate padding)."""
    last = (valid.sum(1) - 1).clamp(min=0)
    idx = torch.arange(x.shape[1], device=x.device)[None, :].minimum(last[:, None])
    return torch.gather(x, 1, idx[..., None].expand_as(x))


def masked_instance_norm(x: torch.Tensor, valid: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """InstanceNorm1d(affine=False) over time for x (B, T, D), statistics from valid frames only."""
    w = valid.to(x.dtype)[..., None]
    n = w.sum(1, keepdim=True).clamp(min=1.0)
    mean = (x * w).sum(1, keepdim=True) / n
    var = ((x - mean).pow(2) * w).sum(1, keepdim=True) / n
    return (x - mean) / torch.sqrt(var + eps)


class Squasher(nn.Module):
    """Conv1d(k, replicate padding) + LeakyReLU + InstanceNorm over time (quant_factor = 0)."""

    def __init__(self, dim: int, kernel: int, slope: float):
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, kernel, stride=1, padding=kernel // 2, padding_mode="replicate")
        self.slope = slope

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        x = fill_padding_with_last(x, valid)
        y = self.conv(x.transpose(1, 2)).transpose(1, 2)
        return masked_instance_norm(F.leaky_relu(y, self.slope), valid)


class SelfAttention(nn.Module):
    """Multi-head self-attention with bias-free q/k/v and a configurable logit scale."""

    def __init__(self, dim: int, n_heads: int, scale_quirk: str, dropout: float):
        super().__init__()
        if scale_quirk not in ("hidden", "head_dim"):
            raise ValueError(f"attn_scale_quirk must be 'hidden' or 'head_dim', got '{scale_quirk}'")
        self.n_heads = n_heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.out = nn.Linear(dim, dim)
        # the released code divides by sqrt(hidden), not sqrt(head_dim) (spec §4.2)
        self.scale = dim**-0.5 if scale_quirk == "hidden" else (dim // n_heads) ** -0.5
        self.dropout = dropout

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape

        def heads(y: torch.Tensor) -> torch.Tensor:
            return y.view(b, t, self.n_heads, d // self.n_heads).transpose(1, 2)

        attn_mask = valid[:, None, None, :]  # True = attend
        y = F.scaled_dot_product_attention(
            heads(self.q(x)), heads(self.k(x)), heads(self.v(x)), attn_mask=attn_mask,
            dropout_p=self.dropout if self.training else 0.0, scale=self.scale,
        )
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class PreNormBlock(nn.Module):
    """x + Attn(LN(x)), then x + MLP(LN(x)); MLP = Linear -> GELU -> Linear."""

    def __init__(self, dim: int, n_heads: int, ffn: int, scale_quirk: str, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, n_heads, scale_quirk, dropout)
        self.norm2 = nn.LayerNorm(dim)
        # the release's GELU is the tanh approximation (spec §3); the erf form flips codes downstream
        self.mlp = nn.Sequential(
            nn.Linear(dim, ffn), nn.GELU(approximate="tanh"), nn.Dropout(dropout), nn.Linear(ffn, dim)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x), valid))
        return x + self.drop(self.mlp(self.norm2(x)))


class QuirkPositionalEncoding(nn.Module):
    """Sinusoidal PE of the VQ transformers. ``constant`` reproduces the released batch-1 behaviour
    (PE(0) = (0, 1, 0, 1, ...) added to every frame, no positional information); ``fixed`` adds PE(t)."""

    def __init__(self, dim: int, quirk: str, dropout: float):
        super().__init__()
        if quirk not in ("constant", "fixed"):
            raise ValueError(f"pe_quirk must be 'constant' or 'fixed', got '{quirk}'")
        self.dim = dim
        self.quirk = quirk
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = 1 if self.quirk == "constant" else x.shape[1]
        pe = sinusoid_table(n, self.dim).to(device=x.device, dtype=x.dtype)
        return self.dropout(x + pe[None])


class TransformerStack(nn.Module):
    """Linear -> PE -> pre-LN blocks (no final LayerNorm), shared by the encoder and the decoder."""

    def __init__(self, s: VQShape):
        super().__init__()
        self.embed = nn.Linear(s.hidden, s.hidden)
        self.pe = QuirkPositionalEncoding(s.hidden, s.pe_quirk, s.pe_dropout)
        self.blocks = nn.ModuleList(
            PreNormBlock(s.hidden, s.n_heads, s.ffn, s.attn_scale_quirk, s.block_dropout)
            for _ in range(s.n_layers)
        )

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        x = self.pe(self.embed(x))
        for block in self.blocks:
            x = block(x, valid)
        return x


class MotionEncoder(nn.Module):
    """Offsets (B, T, V*3) -> continuous latents (B, T, H*C)."""

    def __init__(self, s: VQShape):
        super().__init__()
        self.slope = s.slope
        self.vertice_mapping = nn.Linear(s.in_dim, s.hidden)
        self.squasher = Squasher(s.hidden, s.kernel, s.slope)
        self.transformer = TransformerStack(s)
        self.post = nn.Linear(s.hidden, s.groups * s.code_dim) if s.io_linears else None

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.vertice_mapping(x), self.slope)
        h = self.transformer(self.squasher(h, valid), valid)
        return self.post(h) if self.post is not None else h


class MotionDecoder(nn.Module):
    """Quantised latents (B, T, H*C) -> offsets (B, T, V*3)."""

    def __init__(self, s: VQShape):
        super().__init__()
        self.pre = nn.Linear(s.groups * s.code_dim, s.hidden) if s.io_linears else None
        self.squasher = Squasher(s.hidden, s.kernel, s.slope)
        self.transformer = TransformerStack(s)
        self.vertice_map_reverse = nn.Linear(s.hidden, s.in_dim, bias=s.reverse_bias)

    def forward(self, z: torch.Tensor, valid: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """``last_only``: map only the last frame to vertices (autoregressive feedback of unpadded
        clips needs nothing else; the V*3 output layer dominates the cost)."""
        h = self.pre(z) if self.pre is not None else z
        h = self.transformer(self.squasher(h, valid), valid)
        return self.vertice_map_reverse(h[:, -1:] if last_only else h)


class VQVAE(nn.Module):
    """Encoder, shared codebook over face-component tokens, decoder."""

    def __init__(self, s: VQShape):
        super().__init__()
        if s.groups * s.code_dim != s.hidden and not s.io_linears:
            raise ValueError(
                f"groups x code_dim ({s.groups} x {s.code_dim}) must equal hidden ({s.hidden}) "
                "unless io_linears is set"
            )
        self.shape = s
        self.encoder = MotionEncoder(s)
        self.quantizer = VectorQuantizer(s.n_codes, s.code_dim, s.beta)
        self.decoder = MotionDecoder(s)

    @staticmethod
    def _valid(x: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
        if valid is None:
            return torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        return valid

    def to_tokens(self, h: torch.Tensor) -> torch.Tensor:
        """(B, T, H*C) -> (B, T*H, C): each frame becomes H face-component tokens."""
        b, t, _ = h.shape
        return h.reshape(b, t * self.shape.groups, self.shape.code_dim)

    def from_tokens(self, z: torch.Tensor) -> torch.Tensor:
        b, n, c = z.shape
        return z.reshape(b, n // self.shape.groups, self.shape.groups * c)

    def quantize(self, h: torch.Tensor, valid: torch.Tensor | None = None) -> Quantized:
        """Frame latents (B, T, H*C) -> Quantized with z_q regrouped to (B, T, H*C)."""
        valid = self._valid(h, valid)
        tok_valid = valid.repeat_interleave(self.shape.groups, dim=1)
        q = self.quantizer(self.to_tokens(h), tok_valid)
        b, t = h.shape[:2]
        return Quantized(self.from_tokens(q.z_q), q.loss, q.indices.view(b, t, -1), q.perplexity)

    def encode(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> Quantized:
        valid = self._valid(x, valid)
        return self.quantize(self.encoder(x, valid), valid)

    def decode(
        self, z_q: torch.Tensor, valid: torch.Tensor | None = None, last_only: bool = False
    ) -> torch.Tensor:
        return self.decoder(z_q, self._valid(z_q, valid), last_only)

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> tuple[torch.Tensor, Quantized]:
        """Offsets (B, T, V*3) -> (reconstructed offsets, Quantized)."""
        q = self.encode(x, valid)
        return self.decode(q.z_q, valid), q
