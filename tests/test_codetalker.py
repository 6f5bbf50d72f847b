"""CodeTalker fidelity: quantiser, VQ-VAE, quirk switches, stage losses, exact vs fast inference."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from talkbench.datasets.batch import Batch
from talkbench.datasets.spec import DatasetSpec, Split
from talkbench.errors import ConfigError
from talkbench.methods.codetalker import VQVAE, CodeTalker, CodeTalkerConfig, VectorQuantizer, VQShape
from talkbench.methods.codetalker.vqvae import QuirkPositionalEncoding, SelfAttention, TransformerStack
from talkbench.methods.layers import sinusoid_table
from talkbench.registry import METHODS

PRESETS = Path(__file__).resolve().parents[1] / "talkbench" / "presets" / "codetalker"
V = 40


def small_spec(alignment: str = "interpolate", n_train: int = 3) -> DatasetSpec:
    subjects = tuple(f"S{i}" for i in range(n_train))
    fps = 30.0 if alignment == "interpolate" else 25.0
    return DatasetSpec(
        "unit",
        fps,
        V,
        {"train": Split(subjects)},
        subjects,
        audio_alignment=alignment,
        period=30 if alignment == "interpolate" else 25,
    )


def small_config(**kw) -> CodeTalkerConfig:
    base = dict(
        hidden=32,
        vq_layers=2,
        vq_heads=4,
        vq_ffn=48,
        face_groups=4,
        code_dim=8,
        n_codes=32,
        d_model=32,
        n_heads=4,
        ffn=64,
        n_layers=2,
        fast_window=6,
        pe_dropout=0.0,
        audio={"kind": "mel", "n_mels": 40, "d_model": 16, "conv_dim": 16, "n_layers": 1, "n_heads": 2},
    )
    base.update(kw)
    return CodeTalkerConfig(**base)


def make_model(alignment: str = "interpolate", seed: int = 0, **kw) -> CodeTalker:
    torch.manual_seed(seed)
    model = CodeTalker(small_config(**kw), small_spec(alignment))
    # feat_map is zero-initialised (as released); give it weights so inference is not constant
    nn.init.normal_(model.predictor.feat_map.weight, std=0.3)
    return model.eval()


def make_batch(lengths=(20, 14, 9), speakers=(0, 1, 2), fps: float = 30.0, seed: int = 1) -> Batch:
    g = torch.Generator().manual_seed(seed)
    lengths_t = torch.tensor(lengths)
    t = int(lengths_t.max())
    samples = (lengths_t * 16000 / fps).long()
    audio = torch.randn(len(lengths), int(samples.max()), generator=g)
    audio = audio * (torch.arange(audio.shape[1])[None] < samples[:, None])
    mask = torch.arange(t)[None] < lengths_t[:, None]
    verts = 0.05 * torch.randn(len(lengths), t, V, 3, generator=g) * mask[..., None, None]
    template = torch.randn(len(lengths), V, 3, generator=g)
    verts = (verts + template[:, None]) * mask[..., None, None]
    return Batch(audio, samples, verts, lengths_t, mask, template, torch.tensor(speakers))


def clip(batch: Batch, i: int) -> Batch:
    n, s = int(batch.lengths[i]), int(batch.audio_lengths[i])
    return Batch(
        batch.audio[i : i + 1, :s],
        batch.audio_lengths[i : i + 1],
        batch.vertices[i : i + 1, :n],
        batch.lengths[i : i + 1],
        batch.mask[i : i + 1, :n],
        batch.template[i : i + 1],
        batch.speaker[i : i + 1],
    )


# -- quantiser ----------------------------------------------------------------------------------
def test_quantizer_init_is_uniform_in_one_over_n():
    q = VectorQuantizer(256, 64)
    w = q.embedding.weight
    assert float(w.detach().abs().max()) <= 1 / 256
    assert float(w.detach().std()) == pytest.approx((2 / 256) / math.sqrt(12), rel=0.05)


def test_quantizer_nearest_neighbour_matches_brute_force():
    torch.manual_seed(0)
    q = VectorQuantizer(16, 3)
    q.embedding.weight.data.normal_()
    z = torch.randn(2, 7, 3)
    brute = torch.tensor(
        [
            [
                min(range(16), key=lambda k: float(((z[b, i] - q.embedding.weight.detach()[k]) ** 2).sum()))
                for i in range(7)
            ]
            for b in range(2)
        ]
    )
    assert torch.equal(q.nearest(z), brute)
    # a point next to each code picks that code
    near = q.embedding.weight.data[None] + 1e-4
    assert torch.equal(q.nearest(near)[0], torch.arange(16))


def test_quantizer_loss_and_gradients_match_hand_computation():
    beta = 0.25
    q = VectorQuantizer(3, 2, beta=beta)
    codes = torch.tensor([[0.0, 0.0], [1.0, 1.0], [-1.0, 2.0]])
    q.embedding.weight.data.copy_(codes)
    z = torch.tensor([[[0.2, 0.1], [0.9, 1.3], [-0.6, 1.5]]], requires_grad=True)
    out = q(z)
    idx = [0, 1, 2]
    assert out.indices.tolist() == [idx]
    diff = codes[idx] - z.detach()[0]  # e - z
    mse = float((diff**2).mean())
    assert float(out.loss) == pytest.approx(beta * mse + mse, rel=1e-6)
    # downstream loss sum(w * z_q): straight-through passes w to z, nothing to the codebook
    w = torch.tensor([[[1.0, -2.0], [0.5, 3.0], [2.0, 1.0]]])
    (out.loss + (w * out.z_q).sum()).backward()
    n = diff.numel()
    expected_z = w[0] + beta * 2 * (-diff) / n  # d/dz beta*mean((sg[e]-z)^2)
    expected_codes = 2 * diff / n  # d/de mean((e-sg[z])^2), one token per code here
    assert torch.allclose(z.grad[0], expected_z, atol=1e-6)
    assert torch.allclose(q.embedding.weight.grad, expected_codes, atol=1e-6)
    assert torch.allclose(out.z_q.detach()[0], codes[idx])


def test_quantizer_padding_and_perplexity():
    q = VectorQuantizer(4, 1)
    q.embedding.weight.data.copy_(torch.tensor([[0.0], [1.0], [2.0], [3.0]]))
    z = torch.tensor([[[0.0], [1.0], [2.0], [3.0], [7.0]]])
    valid = torch.tensor([[True, True, True, True, False]])
    out = q(z, valid)
    assert float(out.perplexity) == pytest.approx(4.0, rel=1e-4)  # uniform over 4 used codes
    assert float(out.loss) == pytest.approx(0.0, abs=1e-7)  # the far padded token is ignored
    assert float(q(z).loss) > 1.0


# -- VQ-VAE -------------------------------------------------------------------------------------
def test_vqvae_padded_batch_equals_each_clip_alone():
    torch.manual_seed(0)
    vq = VQVAE(
        VQShape(in_dim=V * 3, hidden=32, n_layers=2, n_heads=4, ffn=48, groups=4, code_dim=8, n_codes=32)
    )
    vq.eval()
    batch = make_batch()
    x = (batch.vertices - batch.template[:, None]).flatten(2)
    recon, q = vq(x, batch.mask)
    for i in range(len(batch)):
        n = int(batch.lengths[i])
        r_i, q_i = vq(x[i : i + 1, :n])
        assert torch.allclose(recon[i, :n], r_i[0], atol=1e-5)
        assert torch.equal(q.indices[i, :n], q_i.indices[0])


def test_vq_frame_grouping_is_h_tokens_of_c():
    vq = VQVAE(VQShape(in_dim=V * 3, hidden=32, n_layers=1, n_heads=4, ffn=48, groups=4, code_dim=8))
    h = torch.arange(2 * 3 * 32, dtype=torch.float32).view(2, 3, 32)
    tokens = vq.to_tokens(h)
    assert tokens.shape == (2, 12, 8)
    assert torch.equal(tokens[0, 5], h[0, 1, 8:16])  # frame 1, component 1
    assert torch.equal(vq.from_tokens(tokens), h)


# -- quirk switches -----------------------------------------------------------------------------
def test_pe_quirk_constant_adds_pe0_everywhere_fixed_adds_per_frame_pe():
    x = torch.randn(2, 7, 16)
    const = QuirkPositionalEncoding(16, "constant", 0.0)(x) - x
    fixed = QuirkPositionalEncoding(16, "fixed", 0.0)(x) - x
    pe0 = torch.tensor([0.0, 1.0] * 8)
    assert torch.allclose(const, pe0.expand(2, 7, 16))
    assert torch.allclose(fixed, sinusoid_table(7, 16).expand(2, 7, 16), atol=1e-6)


def stack_pair(**diff):
    base = dict(in_dim=6, hidden=32, n_layers=2, n_heads=4, ffn=48, groups=4, code_dim=8, pe_dropout=0.0)
    torch.manual_seed(0)
    a = TransformerStack(VQShape(**base)).eval()
    b = TransformerStack(VQShape(**{**base, **diff})).eval()
    b.load_state_dict(a.state_dict())  # same parameters: the switch adds none
    return a, b


def test_pe_quirk_changes_only_the_positional_encoding():
    const, fixed = stack_pair(pe_quirk="fixed")
    x = torch.randn(1, 9, 32)
    valid = torch.ones(1, 9, dtype=torch.bool)
    perm = torch.randperm(9)
    # constant PE carries no position: the stack is permutation-equivariant; fixed PE is not
    assert torch.allclose(const(x, valid)[:, perm], const(x[:, perm], valid), atol=1e-5)
    assert not torch.allclose(fixed(x, valid)[:, perm], fixed(x[:, perm], valid), atol=1e-3)
    # and the only difference is the added encoding: fixed(x) == constant(x - PE(0) + PE(t))
    shift = sinusoid_table(9, 32)[None] - sinusoid_table(1, 32)[None]
    # PE is added after the input linear, so undo it through the linear's weight
    delta = torch.linalg.lstsq(const.embed.weight, shift[0].T).solution.T[None]
    assert torch.allclose(fixed(x, valid), const(x + delta, valid), atol=1e-4)
    assert const.blocks[0].attn.scale == fixed.blocks[0].attn.scale


def test_attention_scale_quirk_changes_only_the_logit_scale():
    torch.manual_seed(0)
    hidden = SelfAttention(32, 4, "hidden", 0.0).eval()
    head = SelfAttention(32, 4, "head_dim", 0.0).eval()
    head.load_state_dict(hidden.state_dict())
    assert hidden.scale == pytest.approx(32**-0.5) and head.scale == pytest.approx(8**-0.5)
    x = torch.randn(2, 6, 32)
    valid = torch.ones(2, 6, dtype=torch.bool)
    # hand computation of the released attention: softmax(q k^T / sqrt(hidden)) v
    q, k, v = (
        hidden.q(x).view(2, 6, 4, 8).transpose(1, 2),
        hidden.k(x).view(2, 6, 4, 8).transpose(1, 2),
        hidden.v(x).view(2, 6, 4, 8).transpose(1, 2),
    )
    ref = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(32), -1) @ v
    ref = hidden.out(ref.transpose(1, 2).reshape(2, 6, 32))
    assert torch.allclose(hidden(x, valid), ref, atol=1e-5)
    # head_dim scale == hidden scale with queries scaled by sqrt(hidden / head_dim): nothing else differs
    head.q.weight.data /= math.sqrt(32 / 8)
    assert torch.allclose(head(x, valid), ref, atol=1e-5)
    _, b = stack_pair(attn_scale_quirk="head_dim")
    assert b.pe.quirk == "constant"


# -- parameter counts of the paper presets (meta device, spec §6) ------------------------------
class MetaAudio(nn.Module):
    """Stand-in with wav2vec2-base's output width, only to count the non-encoder modules."""

    out_dim = 768

    def trainable_prefixes(self):
        return ("",)


def linear(i: int, o: int, bias: bool = True) -> int:
    return i * o + (o if bias else 0)


def expected_counts(vd: int, h: int, c: int, io: bool, rev_bias: bool, n_layers: int, n_train: int):
    d, ffn = 1024, 1536
    block = 3 * d * d + linear(d, d) + linear(d, ffn) + linear(ffn, d) + 4 * d
    conv = d * d * 5 + d
    vq = (
        linear(vd, d)
        + conv
        + linear(d, d)
        + (linear(d, h * c) if io else 0)
        + 6 * block
        + 256 * c
        + (linear(h * c, d) if io else 0)
        + conv
        + linear(d, d)
        + 6 * block
        + linear(d, vd, rev_bias)
    )
    mha = linear(d, 3 * d) + linear(d, d)
    dec_layer = 2 * mha + linear(d, 2048) + linear(2048, d) + 6 * d
    pred = linear(768, d) + linear(vd, d) + n_train * d + n_layers * dec_layer + linear(d, h * c, False)
    return vq, pred


def preset_config(name: str) -> CodeTalkerConfig:
    data = yaml.safe_load((PRESETS / f"{name}.yaml").read_text())["codetalker"]
    return CodeTalkerConfig(**data)


@pytest.mark.parametrize(
    "preset,n_vertices,n_train,alignment,vq_m,pred_m",
    [("paper-vocaset", 5023, 8, "interpolate", 131.7, 92.9), ("paper-biwi", 23370, 6, "pairs", 246.5, 224.8)],
)
def test_paper_parameter_counts(preset, n_vertices, n_train, alignment, vq_m, pred_m):
    cfg = preset_config(preset)
    subjects = tuple(f"S{i}" for i in range(n_train))
    spec = DatasetSpec("x", 30.0, n_vertices, {"train": Split(subjects)}, subjects, audio_alignment=alignment)
    with torch.device("meta"):
        model = CodeTalker(cfg, spec, audio_encoder=MetaAudio())
    counts = model.parameter_counts()
    vq, pred = expected_counts(
        n_vertices * 3, cfg.face_groups, cfg.code_dim, cfg.io_linears, cfg.reverse_bias, cfg.n_layers, n_train
    )
    assert counts["vqvae"] == vq
    assert counts["predictor"] == pred
    assert vq / 1e6 == pytest.approx(vq_m, abs=0.1)
    assert pred / 1e6 == pytest.approx(pred_m, abs=0.1)


# -- the method -----------------------------------------------------------------------------------
def test_registry_and_config_validation():
    assert METHODS.get("codetalker") is CodeTalker and CodeTalker.uses_speaker_id
    with pytest.raises(ConfigError, match="codetalker.pe_quirk"):
        CodeTalker(small_config(pe_quirk="fixd"), small_spec())
    with pytest.raises(ConfigError, match="face_groups"):
        CodeTalker(small_config(face_groups=3), small_spec())
    model = make_model()
    with pytest.raises(ConfigError, match="training-speaker index"):
        model.predict(torch.randn(8000), torch.zeros(V, 3), condition=7)


def test_stages_match_the_released_optimisation():
    model = CodeTalker(
        CodeTalkerConfig(
            audio=small_config().audio,
            hidden=32,
            face_groups=4,
            code_dim=8,
            vq_layers=1,
            vq_heads=4,
            vq_ffn=8,
            d_model=8,
            ffn=8,
            n_layers=1,
        ),
        small_spec(),
    )
    vq, pred = model.stages()
    assert (
        vq.name,
        vq.optimizer,
        vq.lr,
        vq.weight_decay,
        vq.schedule,
        vq.step_size,
        vq.gamma,
        vq.epochs,
    ) == ("vqvae", "adamw", 1e-4, 0.01, "step", 20, 0.5, 200)
    assert (pred.name, pred.optimizer, pred.lr, pred.weight_decay, pred.epochs) == (
        "predictor",
        "adam",
        1e-4,
        0.0,
        100,
    )
    names = [n for n, _ in model.named_trainable(pred)]
    assert names and all(n.startswith("predictor.") for n in names)
    assert all(n.startswith("vqvae.") for n, _ in model.named_trainable(vq))


def test_vq_stage_loss_is_l1_plus_quantiser_loss():
    model = make_model().train()
    batch = make_batch()
    out = model.loss("vqvae", batch)
    assert set(out) == {"loss", "recon_l1", "quant", "perplexity"}
    assert float(out["loss"]) == pytest.approx(float(out["recon_l1"] + out["quant"]), rel=1e-6)
    x = (batch.vertices - batch.template[:, None]).flatten(2)
    model.eval()
    recon, _ = model.vqvae(x, batch.mask)
    l1 = torch.stack([(recon[i, :n] - x[i, :n]).abs().sum() for i, n in enumerate(batch.lengths.tolist())])
    assert float(model.loss("vqvae", batch)["recon_l1"]) == pytest.approx(
        float(l1.sum() / (batch.lengths.sum() * V * 3)), rel=1e-5
    )
    out["loss"].backward()
    assert model.vqvae.quantizer.embedding.weight.grad.abs().sum() > 0


def test_predictor_stage_freezes_vqvae_and_trains_through_the_codebook():
    model = make_model()
    stage = model.stages()[1]
    for name, p in model.named_parameters():  # what the engine does before begin_stage
        p.requires_grad_(any(name.startswith(pref) for pref in stage.trainable))
    model.begin_stage(stage)
    model.train()
    assert not model.vqvae.training and model.predictor.training
    assert not any(p.requires_grad for p in model.vqvae.parameters())
    out = model.loss("predictor", make_batch())
    assert set(out) == {"loss", "motion_mse", "feature_mse"}
    assert float(out["loss"]) == pytest.approx(float(out["motion_mse"] + out["feature_mse"]), rel=1e-6)
    out["loss"].backward()
    assert model.predictor.feat_map.weight.grad.abs().sum() > 0
    assert model.predictor.vertice_map.weight.grad.abs().sum() > 0
    # motion loss reaches feat_map through the straight-through quantiser, not only the regression
    model.zero_grad()
    model.loss("predictor", make_batch())["motion_mse"].backward()
    assert model.predictor.feat_map.weight.grad.abs().sum() > 0


def test_feat_map_is_zero_initialised_without_bias():
    model = CodeTalker(small_config(), small_spec())
    assert model.predictor.feat_map.bias is None
    assert float(model.predictor.feat_map.weight.abs().sum()) == 0.0


def test_teacher_forcing_is_causal_and_batched_exactly():
    model = make_model()
    batch = make_batch()
    memory, _ = model.predictor.encode_audio(batch.audio, batch.audio_lengths, batch.lengths)
    style = model.predictor.style_embedding(batch.speaker)
    x = (batch.vertices - batch.template[:, None]).flatten(2)
    feats = model.predictor(memory, model.predictor.embed(x, style))
    x2 = x.clone()
    x2[:, 5:] += 1.0
    feats2 = model.predictor(memory, model.predictor.embed(x2, style))
    assert torch.allclose(feats[:, :5], feats2[:, :5], atol=1e-5)
    assert not torch.allclose(feats[:, 5:], feats2[:, 5:], atol=1e-3)
    for i in range(len(batch)):
        c = clip(batch, i)
        mem_i, _ = model.predictor.encode_audio(c.audio, c.audio_lengths, c.lengths)
        n = int(c.lengths[0])
        f_i = model.predictor(mem_i, model.predictor.embed(x[i : i + 1, :n], style[i : i + 1]))
        assert torch.allclose(feats[i, :n], f_i[0], atol=1e-4)
    loss_b = model.loss("predictor", batch)["motion_mse"]
    per = [model.loss("predictor", clip(batch, i))["motion_mse"] * int(batch.lengths[i]) for i in range(3)]
    assert float(loss_b) == pytest.approx(float(sum(per) / batch.lengths.sum()), rel=1e-4)


@pytest.mark.parametrize("alignment", ["interpolate", "pairs"])
def test_cached_step_equals_full_prefix_pass(alignment):
    model = make_model(alignment)
    fps = 30.0 if alignment == "interpolate" else 25.0
    batch = make_batch((12,), (1,), fps=fps)
    memory, _ = model.predictor.encode_audio(batch.audio, batch.audio_lengths, batch.lengths)
    tokens = torch.randn(1, 12, 32)
    full = model.predictor(memory, tokens)
    cache = model.predictor.start(memory)
    steps = torch.cat([model.predictor.step(tokens[:, i : i + 1], i, cache) for i in range(12)], dim=1)
    assert torch.allclose(full, steps, atol=1e-5)


def test_validation_averages_unseen_speakers_over_training_styles():
    model = make_model()
    batch = make_batch(speakers=(-1, -1, -1))
    val = model.validation_loss("predictor", batch)["loss"]
    per_style = [model._predictor_loss(batch, torch.full((3,), s))["loss"] for s in range(3)]
    assert float(val) == pytest.approx(float(sum(per_style) / 3), rel=1e-5)
    with pytest.raises(ConfigError, match="training speakers"):
        model.loss("predictor", batch)


def test_inference_exact_and_fast_agree_inside_the_window_and_differ_outside():
    model = make_model(fast_window=64)
    audio = torch.randn(16000)  # 1 s -> the encoder's int(S' / 50 * 30) frames (mel: S' = 49 -> 29)
    _, frames = model.predictor.encode_audio(audio[None], torch.tensor([16000]), None)
    template = torch.randn(V, 3)
    exact = model.predict(audio, template, condition=1, mode="exact")
    fast = model.predict(audio, template, condition=1, mode="fast")
    assert exact.shape == (int(frames[0]), V, 3) and int(frames[0]) == 29
    assert torch.allclose(exact, fast, atol=1e-4)
    model.config.fast_window = 3
    windowed = model.predict(audio, template, condition=1, mode="fast")
    assert not torch.allclose(exact, windowed, atol=1e-3)
    other = model.predict(audio, template, condition=2, mode="exact")
    assert not torch.allclose(exact, other, atol=1e-4)  # the style condition matters
    assert model.predict(audio[:8000], template, condition=1, mode="exact").shape == (14, V, 3)


@pytest.mark.parametrize("pe_quirk", ["constant", "fixed"])
def test_exact_inference_feeds_back_full_prefix_decodes(pe_quirk):
    """The released loop: token i+1 = vertice_map(last frame of decode(quantise(prefix))) + style."""
    model = make_model(pe_quirk=pe_quirk)
    audio, template = torch.randn(8000), torch.zeros(V, 3)
    out = model.predict(audio, template, condition=0, mode="exact")
    p, vq = model.predictor, model.vqvae
    memory, frames = p.encode_audio(audio[None], torch.tensor([8000]), None)
    style = p.style_embedding(torch.tensor([0]))
    tokens = style[:, None]
    with torch.no_grad():
        for i in range(int(frames[0])):
            feats = p(memory, tokens)
            z = vq.quantize(feats).z_q
            dec = vq.decode(torch.cat([z, z], 1))[:, :1] if i == 0 else vq.decode(z)[:, -1:]
            tokens = torch.cat([tokens, p.vertice_map(dec) + style[:, None]], 1)
        ref = vq.decode(vq.quantize(feats).z_q).reshape(-1, V, 3)
    assert torch.allclose(out, ref, atol=1e-5)


@pytest.mark.parametrize("mode", ["exact", "fast", "incremental"])
def test_batched_conditions_equal_one_condition_at_a_time(mode):
    """The override batches conditions exactly: it equals Method's default loop over predict()."""
    from talkbench.methods.base import Method

    model = make_model()
    audio, template = torch.randn(9000), torch.randn(V, 3)
    model.config.inference = mode
    single = Method.predict_conditions(model, audio, template, [0, 1, 2])  # the base-class loop
    batched = model.predict_conditions(audio, template, [0, 1, 2])
    assert batched.shape == single.shape == (3, 16, V, 3)
    torch.testing.assert_close(batched, single, rtol=0, atol=1e-5)
    assert not torch.allclose(batched[0], batched[1], atol=1e-4)  # the conditions differ
    model.config.batch_conditions = False  # one at a time: the same values
    one_by_one = model.predict_conditions(audio, template, [0, 1, 2])
    torch.testing.assert_close(one_by_one, single, rtol=0, atol=1e-5)
    # no cache behind the caller's back: a weight update shows in the next call
    with torch.no_grad():
        model.predictor.style_embedding.weight.mul_(2.0)
    again = model.predict(audio, template, condition=1)
    assert not torch.allclose(again, single[1], atol=1e-4)
    assert not hasattr(model, "_predict_cache")


def test_motion_scale_is_a_unit_change():
    """Scaling the offsets by k is undone exactly: with the output layer times k and the motion input
    layer divided by k, predictions (in dataset units) are unchanged."""
    a = make_model()
    b = make_model(motion_scale=1000.0)
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        b.vqvae.decoder.vertice_map_reverse.weight.mul_(1000.0)
        b.vqvae.decoder.vertice_map_reverse.bias.mul_(1000.0)
        b.predictor.vertice_map.weight.div_(1000.0)
    audio, template = torch.randn(9000), torch.randn(V, 3)
    assert torch.allclose(a.predict(audio, template, 1), b.predict(audio, template, 1), atol=1e-4)
    batch = make_batch()
    assert torch.allclose(b._offsets(batch), 1000.0 * a._offsets(batch))
    with pytest.raises(ConfigError, match="motion_scale"):
        make_model(motion_scale=0.0)


@pytest.mark.parametrize(
    "preset,dataset,groups,code_dim,layers,io,rev_bias,schedule",
    [
        ("paper", "vocaset", 16, 64, 6, False, True, "step"),
        ("paper", "biwi", 8, 128, 12, True, False, "constant"),
        ("synthtalk", "synthtalk", 8, 16, 2, False, True, "step"),
        ("tiny", "synthtalk", 4, 8, 1, False, True, "constant"),
    ],
)
def test_presets_resolve_through_load_config(
    preset, dataset, groups, code_dim, layers, io, rev_bias, schedule
):
    from talkbench.config import load_config

    c = load_config("codetalker", dataset=dataset, preset=preset).method_config
    assert isinstance(c, CodeTalkerConfig)
    assert (c.face_groups, c.code_dim, c.n_layers, c.io_linears, c.reverse_bias, c.vq_schedule) == (
        groups,
        code_dim,
        layers,
        io,
        rev_bias,
        schedule,
    )
    assert c.n_codes == 256 or preset == "tiny"
    assert (c.pe_quirk, c.attn_scale_quirk) == ("constant", "hidden")  # defaults as released


def test_vqvae_mlp_uses_the_released_tanh_gelu():
    """Each VQ block's MLP: Linear -> 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) -> Linear, the
    release's GELU, written out by hand; the erf form differs measurably on the same weights."""
    from talkbench.methods.codetalker.vqvae import PreNormBlock

    torch.manual_seed(0)
    block = PreNormBlock(16, 4, 24, "hidden", 0.0).eval()
    x = 3.0 * torch.randn(2, 5, 16)
    lin1, lin2 = block.mlp[0], block.mlp[3]
    h = lin1(block.norm2(x))
    tanh_gelu = 0.5 * h * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (h + 0.044715 * h**3)))
    erf_gelu = 0.5 * h * (1.0 + torch.erf(h / math.sqrt(2.0)))
    with torch.no_grad():
        got = block.mlp(block.norm2(x))
        torch.testing.assert_close(got, lin2(tanh_gelu), rtol=0, atol=1e-6)
        assert (got - lin2(erf_gelu)).abs().max() > 1e-4
