"""The fused reconstruction losses against their definitions (masked_mse, velocity_mse): values and
gradients, padded batches, degenerate lengths, and the model's losses on fixed weights."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_memorytalker import make_spec, tiny_config, triplet_batch

from talkbench.methods.memorytalker import MemoryTalker
from talkbench.methods.memorytalker.losses import masked_mse, reconstruction_losses, velocity_mse


def _definitions(pred, target, mask):
    return masked_mse(pred, target, mask), velocity_mse(pred, target, mask)


def _values_and_grads(fn, pred, target, mask, weights=(1.0, 0.7)):
    p = pred.clone().requires_grad_()
    t = target.clone().requires_grad_()
    mse, vel = fn(p, t, mask)
    (weights[0] * mse + weights[1] * vel).backward()
    return mse.detach(), vel.detach(), p.grad, t.grad


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(min_value=0, max_value=7), min_size=1, max_size=4),
    width=st.integers(min_value=1, max_value=5),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_fused_losses_equal_the_definitions(lengths, width, seed):
    """Any padding pattern, including empty clips and single frames (no velocity pairs); batches of at
    least two frames (the definition of velocity_mse needs a pair to exist in the padded batch)."""
    g = torch.Generator().manual_seed(seed)
    t_max = max(max(lengths), 2)
    pred = torch.randn(len(lengths), t_max, width, 3, generator=g, dtype=torch.float64)
    target = torch.randn(len(lengths), t_max, width, 3, generator=g, dtype=torch.float64)
    mask = torch.arange(t_max)[None] < torch.tensor(lengths)[:, None]
    fused = _values_and_grads(reconstruction_losses, pred, target, mask)
    plain = _values_and_grads(_definitions, pred, target, mask)
    for a, b in zip(fused, plain):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_fused_losses_ignore_padded_frames_and_pass_gradcheck():
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(2, 6, 4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randn(2, 6, 4, 3, generator=g, dtype=torch.float64)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    moved = target.clone()
    moved[1, 4:] += 100.0
    assert all(torch.equal(a, b) for a, b in zip(reconstruction_losses(pred, target, mask),
                                                 reconstruction_losses(pred, moved, mask)))
    assert torch.autograd.gradcheck(
        lambda p, t: reconstruction_losses(p, t, mask), (pred, target.requires_grad_()), eps=1e-6
    )


@pytest.mark.parametrize("stage", ["memorizing", "animating"])
def test_model_losses_on_fixed_weights_equal_the_definitions(stage):
    """The model's stage losses (fused) against the same paths scored by the definitions, float32."""
    torch.manual_seed(0)
    spec = make_spec()
    model = MemoryTalker(tiny_config(dropout=0.0, final_dropout=0.0), spec).eval()
    with torch.no_grad():
        model.output_proj.weight.normal_(0, 0.1)
    batch = triplet_batch(spec)
    losses = model.loss(stage, batch)
    if stage == "memorizing":
        out = model.memorizing_paths(batch)
        mse = masked_mse(out["v_hat"], out["target"], out["mask"]) + masked_mse(
            out["v_val"], out["target"], out["mask"])
        vel = velocity_mse(out["v_hat"], out["target"], out["mask"]) + velocity_mse(
            out["v_val"], out["target"], out["mask"])
    else:
        lip = losses["lip"]  # the lip term keeps the definition; mse/velocity are fused
        assert lip > 0
        enc, target, mask = model._encode_batch(batch)
        f_s = model._style_many((batch.audio, batch.audio_lengths))[0]
        w_s = model.style_encoder.weights(f_s)
        f_mkey = model.memory.read(model.memory.key_address(enc.logits), style=w_s)
        v_hat = model.decode(torch.cat([enc.text, f_mkey], -1), enc, mask, batch.template)
        mse, vel = masked_mse(v_hat, target, mask), velocity_mse(v_hat, target, mask)
    torch.testing.assert_close(losses["mse"], mse, rtol=1e-5, atol=0)
    torch.testing.assert_close(losses["velocity"], vel, rtol=1e-5, atol=0)
