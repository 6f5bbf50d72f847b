"""CodeTalker `incremental` inference: the one-frame VQ decode against a cache (incremental.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_codetalker import V, make_model

from talkbench.errors import ConfigError
from talkbench.methods.codetalker.few_row_linear import reuse
from talkbench.methods.codetalker.incremental import IncrementalDecoder
from talkbench.methods.codetalker.predictor import PredictorStepper


def quantised_frames(model, n: int, seed: int = 5, batch: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(batch, n, model.config.face_groups * model.config.code_dim, generator=g)
    return model.vqvae.quantize(feats).z_q


def full_last(model, z: torch.Tensor) -> torch.Tensor:
    """What `exact` feeds back for the prefix z: last frame of the full non-causal decode."""
    return model._decode_last(z)


@pytest.mark.parametrize("pe_quirk,io_linears", [("constant", False), ("fixed", False), ("constant", True)])
def test_every_step_refresh_reproduces_the_full_prefix_decode(pe_quirk, io_linears):
    model = make_model(pe_quirk=pe_quirk, io_linears=io_linears)
    z = quantised_frames(model, 11)
    dec = IncrementalDecoder(model.vqvae.decoder, refresh="every")
    with torch.no_grad():
        for n in range(1, 12):
            assert torch.allclose(dec.push(z[:, n - 1 : n]), full_last(model, z[:, :n]), atol=1e-5)


@pytest.mark.parametrize("io_linears", [False, True])
def test_cached_step_equals_causal_reference(io_linears):
    """Without refreshes each new frame gets the exact conv output and instance-norm statistics of
    the full pass over its prefix, then attends causally to the earlier frames as they were computed.
    (Constant PE, as released: there the duplicated first frame equals a one-frame pass.)"""
    model = make_model(io_linears=io_linears)
    dec_mod = model.vqvae.decoder
    n_frames = 9
    z = quantised_frames(model, n_frames)
    with torch.no_grad():
        h = dec_mod.pre(z) if dec_mod.pre is not None else z
        rows = []
        for n in range(1, n_frames + 1):  # the last row of the squasher over each prefix
            valid = torch.ones(z.shape[0], n, dtype=torch.bool)
            rows.append(dec_mod.squasher(h[:, :n], valid)[:, -1])
        x = dec_mod.transformer.pe(dec_mod.transformer.embed(torch.stack(rows, dim=1)))
        for block in dec_mod.transformer.blocks:  # causal: row n from the block over rows <= n
            ones = torch.ones(z.shape[0], n_frames, dtype=torch.bool)
            x = torch.stack([block(x[:, :n], ones[:, :n])[:, -1] for n in range(1, n_frames + 1)], dim=1)
        ref = dec_mod.vertice_map_reverse(x)
        dec = IncrementalDecoder(dec_mod, refresh="none")
        got = torch.cat([dec.push(z[:, i : i + 1]) for i in range(n_frames)], dim=1)
    assert torch.allclose(got, ref, atol=1e-5)
    # the first two frames have no earlier frame to differ on; later ones are an approximation
    exact = torch.cat([full_last(model, z[:, :n]) for n in range(1, n_frames + 1)], dim=1)
    assert torch.allclose(got[:, :1], exact[:, :1], atol=1e-5)
    assert not torch.allclose(got[:, 3:], exact[:, 3:], atol=1e-3)


def test_doubling_refresh_is_exact_at_powers_of_two_and_cached_between():
    model = make_model()
    z = quantised_frames(model, 17)
    dec = IncrementalDecoder(model.vqvae.decoder, refresh="doubling")
    none = IncrementalDecoder(model.vqvae.decoder, refresh="none")
    with torch.no_grad():
        for n in range(1, 18):
            got, cached = dec.push(z[:, n - 1 : n]), none.push(z[:, n - 1 : n])
            exact = full_last(model, z[:, :n])
            if n & (n - 1) == 0:
                assert torch.allclose(got, exact, atol=1e-5), n
            elif n > 4:
                assert not torch.allclose(got, exact, atol=1e-4), n
                assert not torch.allclose(got, cached, atol=1e-4), n  # the refreshed cache is used
    assert dec.length == 17 and len(dec.keys[0][0, 0]) == 17


def test_every_refresh_prediction_equals_exact_mode():
    model = make_model(incremental_refresh="every")
    audio, template = torch.randn(12000), torch.randn(V, 3)
    exact = model.predict_conditions(audio, template, [0, 2], "exact")
    inc = model.predict_conditions(audio, template, [0, 2], "incremental")
    assert torch.allclose(exact, inc, atol=1e-5)


@pytest.mark.parametrize("refresh", ["doubling", "none"])
def test_incremental_prediction_shape_and_batched_conditions(refresh):
    model = make_model(batch_conditions=False, incremental_refresh=refresh)
    audio, template = torch.randn(16000), torch.randn(V, 3)
    _, frames = model.predictor.encode_audio(audio[None], torch.tensor([16000]), None)
    single = torch.stack([model.predict(audio, template, condition=c, mode="incremental") for c in range(3)])
    assert single.shape == (3, int(frames[0]), V, 3) and int(frames[0]) == 29
    batched = model.predict_conditions(audio, template, [0, 1, 2], "incremental")
    assert torch.allclose(single, batched, atol=1e-5)
    assert not torch.allclose(batched[0], batched[1], atol=1e-4)  # the condition matters
    assert model.predict(audio[:1200], template, condition=0, mode="incremental").shape[0] == 1


def test_incremental_config_validation():
    with pytest.raises(ConfigError, match="incremental_refresh"):
        make_model(incremental_refresh="sometimes")
    model = make_model()
    with pytest.raises(ConfigError, match="exact, fast, incremental"):
        model.predict_conditions(torch.randn(8000), torch.zeros(V, 3), [0], "quick")
    with pytest.raises(ValueError, match="refresh"):
        IncrementalDecoder(model.vqvae.decoder, refresh="sometimes")
    with pytest.raises(ConfigError, match="incremental_exact_frames must be >= 0, got -1"):
        make_model(incremental_exact_frames=-1)


def test_the_first_exact_frames_are_decoded_as_exact_then_doubling():
    model = make_model()
    z = quantised_frames(model, 13)
    dec = IncrementalDecoder(model.vqvae.decoder, refresh="doubling", exact_frames=6)
    with torch.no_grad():
        for n in range(1, 14):
            got, exact = dec.push(z[:, n - 1 : n]), full_last(model, z[:, :n])
            if n <= 6 or n == 8:
                assert torch.allclose(got, exact, atol=1e-5), n
            else:  # 7, 9-13: cached, as without exact_frames
                assert not torch.allclose(got, exact, atol=1e-4), n
    audio, template = torch.randn(12000), torch.randn(V, 3)  # 22 frames
    exact = model.predict_conditions(audio, template, [0, 2], "exact")
    model.config.incremental_exact_frames = 22
    assert torch.allclose(model.predict_conditions(audio, template, [0, 2], "incremental"), exact, atol=1e-5)
    model.config.incremental_exact_frames = 4
    inc = model.predict_conditions(audio, template, [0, 2], "incremental")
    assert not torch.allclose(inc, exact, atol=1e-4)


BEFORE = Path(__file__).parent / "fixtures" / "codetalker_incremental_before.pt"


def test_incremental_predictions_equal_those_saved_before_the_speed_change():
    """Predictions of `incremental` saved on fixed weights at commit 351141d, before the step was
    rewritten for speed (issue 16): two alignments, doubling and no refresh, fixed PE with io linears."""
    cases = torch.load(BEFORE)
    state = None
    for case in cases:
        model = make_model(alignment=case["alignment"], incremental_refresh=case["refresh"],
                           incremental_exact_frames=0, **case["kw"])  # the schedule saved then
        state = case["state"] if case["state"] is not None else state
        model.load_state_dict(state)
        got = model.predict_conditions(case["audio"], case["template"], [0, 2], "incremental")
        assert got.shape == case["pred"].shape
        assert torch.allclose(got, case["pred"], atol=1e-5, rtol=1e-5), (case["alignment"], case["refresh"])


@pytest.mark.parametrize("alignment", ["interpolate", "pairs"])
@pytest.mark.parametrize("rows", [2, 5])
def test_predictor_stepper_equals_cached_step(alignment, rows):
    """The inference stepper (weights through FewRowLinear, in-place KV buffers, precomputed or
    two-key cross-attention) equals Predictor.step, with a shared (expanded) memory as inference has."""
    model = make_model(alignment=alignment)
    pred = model.predictor
    with torch.no_grad():
        memory, frames = pred.encode_audio(torch.randn(1, 20000), torch.tensor([20000]), None)
        n = int(frames[0])
        memory = memory.expand(rows, -1, -1)
        tokens = torch.randn(rows, n, memory.shape[2], generator=torch.Generator().manual_seed(1))
        cache, stepper = pred.start(memory), PredictorStepper(pred, memory, n)
        ref = torch.cat([pred.step(tokens[:, i : i + 1], i, cache) for i in range(n)], dim=1)
        got = torch.stack([stepper.step(tokens[:, i], i) for i in range(n)], dim=1)
    assert torch.allclose(got, ref, atol=1e-5)
    assert not torch.allclose(got[:, 1:], got[:, :-1], atol=1e-3)  # positions differ: not constant


def test_cache_buffers_grow_without_changing_the_result():
    model = make_model(pe_quirk="fixed")
    z = quantised_frames(model, 13, batch=5)  # 5 rows: the FewRowLinear kernel for several conditions
    small = IncrementalDecoder(model.vqvae.decoder, refresh="doubling", max_len=1)
    sized = IncrementalDecoder(model.vqvae.decoder, refresh="doubling", max_len=13)
    with torch.no_grad():
        a = torch.cat([small.push(z[:, i : i + 1]) for i in range(13)], dim=1)
        b = torch.cat([sized.push(z[:, i : i + 1]) for i in range(13)], dim=1)
    assert small.capacity == 16 and sized.capacity == 13
    assert torch.allclose(a, b, atol=1e-6)


def test_incremental_with_many_conditions_equals_one_at_a_time():
    """5 conditions run with the few-rows kernels (few_row_linear.py), one condition with F.linear."""
    audio, template = torch.randn(20000), torch.randn(V, 3)
    conditions = [0, 1, 2, 1, 0]
    batched = make_model().predict_conditions(audio, template, conditions, "incremental")
    single = make_model(batch_conditions=False).predict_conditions(audio, template, conditions, "incremental")
    assert torch.allclose(batched, single, atol=1e-5)
    assert torch.allclose(batched[0], batched[4], atol=1e-5)


def test_step_weights_are_prepared_once_per_model_and_follow_weight_updates():
    """The reordered step weights are kept across clips (few_row_linear.reuse); an in-place update of any
    parameter (an optimiser step, load_state_dict) or a replaced one rebuilds them, so a prediction
    never uses stale weights."""
    model = make_model()
    built = []
    for _ in range(2):
        reuse(model, "probe", lambda: built.append(1) or len(built))
    assert built == [1]
    audio, template = torch.randn(20000), torch.randn(V, 3)
    conditions = [0, 1, 2, 1]  # 4 rows: the reordered (packed) kernel where this torch has it

    def predict(m):
        return m.predict_conditions(audio, template, conditions, "incremental")

    def predict_fresh():
        fresh = make_model()
        fresh.load_state_dict(model.state_dict())
        return predict(fresh)

    predict(model)
    with torch.no_grad():
        model.vqvae.decoder.transformer.blocks[0].mlp[0].weight.mul_(1.5)  # in place: version bump
        model.predictor.decoder.layers[0].linear1.weight.add_(0.05)
    assert torch.allclose(predict(model), predict_fresh(), atol=1e-5)
    feat_map = model.predictor.feat_map.weight
    feat_map.data = feat_map.data * 2  # replaced storage, same version (as Module.to/.double do)
    assert torch.allclose(predict(model), predict_fresh(), atol=1e-5)
    reuse(model, "probe", lambda: built.append(1) or len(built))
    assert built == [1, 1]  # the parameters changed since: rebuilt
