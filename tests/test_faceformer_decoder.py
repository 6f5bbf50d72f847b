"""Shared attention masks and the cached transformer decoder (FaceFormer spec §3, §4, §7.1)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from talkbench.methods.decoder import InferenceDecoder, TransformerDecoder
from talkbench.methods.layers import (
    PeriodicPositionalEncoding,
    alibi_slopes,
    alignment_mask,
    biased_causal_mask,
    per_batch,
    sinusoid_table,
)


@pytest.mark.parametrize("period", [30, 25])
def test_biased_causal_mask_matches_formula(period):
    t = 70
    mask = biased_causal_mask(4, t, period)
    slopes = [1 / 4, 1 / 16, 1 / 64, 1 / 256]
    assert mask.shape == (4, t, t)
    expected = torch.tensor(
        [
            [[-m * math.floor((i - j) / period) if j <= i else -math.inf for j in range(t)] for i in range(t)]
            for m in slopes
        ]
    )
    assert torch.equal(torch.isinf(mask), torch.isinf(expected))
    finite = ~torch.isinf(expected)
    assert torch.allclose(mask[finite], expected[finite], atol=1e-7)
    # within the current period the bias is zero; one step per period of past frames
    assert mask[0, period - 1, 0] == 0 and mask[0, period, 0] == pytest.approx(-0.25)


def test_alibi_slopes_eight_heads():
    assert alibi_slopes(8).tolist() == pytest.approx([2.0**-k for k in range(1, 9)])


def test_alignment_masks_30_and_25_fps():
    m30 = alignment_mask(5, 5, "interpolate")  # VOCASET: frame i sees audio frame i
    assert torch.equal(~m30, torch.eye(5, dtype=torch.bool))
    m25 = alignment_mask(4, 8, "pairs")  # BIWI: frame i sees audio frames 2i, 2i + 1
    for i in range(4):
        assert (~m25[i]).nonzero().flatten().tolist() == [2 * i, 2 * i + 1]
    rep = per_batch(biased_causal_mask(4, 6, 30), 3, 4)
    assert rep.shape == (12, 6, 6) and torch.equal(rep[4:8], rep[0:4])


def test_ppe_any_length_is_periodic():
    ppe = PeriodicPositionalEncoding(8, 25, dropout=0.0)
    enc = ppe.encoding(1300)  # far beyond the released 600-frame cap
    assert torch.equal(enc[1275], sinusoid_table(25, 8)[0])
    assert torch.equal(ppe.encoding(3, offset=1001), enc[1001:1004])


def _torch_reference(d, h, ffn, layers):
    layer = nn.TransformerDecoderLayer(d, h, ffn, dropout=0.1, batch_first=True)
    return nn.TransformerDecoder(layer, num_layers=layers)


def test_numerically_identical_and_load_compatible_with_nn_transformer_decoder():
    torch.manual_seed(0)
    d, h, b, t, s = 16, 4, 2, 11, 22
    ref = _torch_reference(d, h, 2 * d, 2).eval()
    ours = TransformerDecoder(d, h, 2 * d, n_layers=2).eval()
    ours.load_state_dict(ref.state_dict())  # strict: same names and shapes
    ref.load_state_dict(ours.state_dict())
    tgt, mem = torch.randn(b, t, d), torch.randn(b, s, d)
    self_mask = per_batch(biased_causal_mask(h, t, 5), b, h)  # (B*H, T, T) float
    mem_mask = alignment_mask(t, s, "pairs")  # (T, S) bool
    with torch.no_grad():
        expected = ref(tgt, mem, tgt_mask=self_mask, memory_mask=mem_mask)
        got = ours(tgt, mem, self_mask, mem_mask)
        got4d = ours(tgt, mem, biased_causal_mask(h, t, 5)[None], mem_mask)
    assert torch.allclose(got, expected, atol=1e-5)
    assert torch.allclose(got4d, expected, atol=1e-5)


@pytest.mark.parametrize("mode,ratio", [("interpolate", 1), ("pairs", 2)])
def test_cached_steps_equal_full_prefix_rerun(mode, ratio):
    torch.manual_seed(1)
    d, h, b, t = 24, 4, 3, 24
    dec = TransformerDecoder(d, h, 2 * d, n_layers=2).eval()
    tokens, mem = torch.randn(b, t, d), torch.randn(b, ratio * t, d)
    self_mask = biased_causal_mask(h, t, 7)[None]
    mem_mask = alignment_mask(t, ratio * t, mode)
    with torch.no_grad():
        cache = dec.init_cache(mem)
        for i in range(t):
            step = dec.step(
                tokens[:, i : i + 1], cache, self_mask[:, :, i : i + 1, : i + 1], mem_mask[i : i + 1]
            )
            full = dec(tokens[:, : i + 1], mem, self_mask[:, :, : i + 1, : i + 1], mem_mask[: i + 1])
            assert torch.allclose(step[:, 0], full[:, -1], atol=1e-5)
    assert cache.length == t


def test_cached_path_gradients_equal_full_forward():
    torch.manual_seed(2)
    d, h, t = 16, 4, 9
    dec = TransformerDecoder(d, h, 2 * d, n_layers=1, dropout=0.0).train()
    tokens, mem = torch.randn(2, t, d), torch.randn(2, t, d)
    self_mask, mem_mask = biased_causal_mask(h, t, 4)[None], alignment_mask(t, t, "interpolate")
    full = dec(tokens, mem, self_mask, mem_mask).pow(2).sum()
    g_full = torch.autograd.grad(full, list(dec.parameters()))
    cache = dec.init_cache(mem)
    outs = [
        dec.step(tokens[:, i : i + 1], cache, self_mask[:, :, i : i + 1, : i + 1], mem_mask[i : i + 1])
        for i in range(t)
    ]
    cached = torch.cat(outs, 1).pow(2).sum()
    g_cached = torch.autograd.grad(cached, list(dec.parameters()))
    assert torch.allclose(full, cached, rtol=1e-5)
    for a, c in zip(g_full, g_cached):
        assert torch.allclose(a, c, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("mode,ratio", [("interpolate", 1), ("pairs", 2), (None, 1)])
def test_inference_decoder_equals_cached_steps(mode, ratio):
    """The inference stepper (preallocated cache; precomputed cross-attention rows where each frame
    sees one memory position, attention over the memory otherwise) equals ``step``."""
    torch.manual_seed(3)
    d, h, b, t = 24, 4, 3, 30
    dec = TransformerDecoder(d, h, 2 * d, n_layers=2).eval()
    tokens, mem = torch.randn(b, t, d), torch.randn(b, ratio * t, d)
    self_mask = biased_causal_mask(h, t, 7)[None]
    mem_mask = None if mode is None else alignment_mask(t, ratio * t, mode)
    with torch.no_grad():
        cache, fast = dec.init_cache(mem), InferenceDecoder(dec, mem, mem_mask, t)
        assert (fast.layers[0][5] is not None) == (mode == "interpolate")  # the precomputed rows
        for i in range(t):
            row = self_mask[:, :, i : i + 1, : i + 1]
            ref = dec.step(
                tokens[:, i : i + 1], cache, row, None if mem_mask is None else mem_mask[i : i + 1]
            )
            got = fast.step(tokens[:, i], i, row)
            torch.testing.assert_close(got, ref[:, 0], rtol=1e-5, atol=1e-5)


def test_inference_decoder_refuses_training_mode():
    dec = TransformerDecoder(8, 2, 16).train()
    with pytest.raises(ValueError, match="eval mode"):
        InferenceDecoder(dec, torch.randn(1, 4, 8), None, 4)
