"""MemoryTalker: fidelity to the spec (shapes, parameter counts, gradient routing, freezing,
per-sample stylization), the losses, the ablation knobs, inference and bad input."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from talkbench.audio.config import AudioEncoderConfig
from talkbench.datasets.batch import Batch, collate
from talkbench.datasets.clip import Clip
from talkbench.datasets.spec import DatasetSpec, Split
from talkbench.engine import freeze_for  # the engine's own freezing by Stage.trainable
from talkbench.errors import ConfigError, DataError
from talkbench.methods.memorytalker import MemoryTalker, MemoryTalkerConfig
from talkbench.methods.memorytalker.frontend import style_log_mel
from talkbench.methods.memorytalker.losses import masked_mse, velocity_mse
from talkbench.methods.memorytalker.memory import FacialMotionMemory
from talkbench.methods.memorytalker.model import resample_lengths
from talkbench.methods.memorytalker.style import SpeakingStyleEncoder

SR = 16_000


# -- fixtures -------------------------------------------------------------------------------------
def make_spec(n_vertices: int = 40, fps: float = 30.0, alignment: str = "interpolate", period: int = 30):
    lips = np.array([1, 2, 3, 4, 4, 5], dtype=np.int64)  # with a duplicate, as VOCASET's file has
    return DatasetSpec(
        name="fake",
        fps=fps,
        n_vertices=n_vertices,
        splits={"train": Split(("A", "B", "C"))},
        train_subjects=("A", "B", "C"),
        regions={"lips": lips, "upper_face": np.arange(20, 30)},
        audio_alignment=alignment,
        period=period,
    )


def tiny_config(**changes) -> MemoryTalkerConfig:
    cfg = MemoryTalkerConfig(
        audio=AudioEncoderConfig(kind="mel", d_model=32, conv_dim=32, n_layers=1, n_heads=2, dropout=0.0),
        memory_slots=8,
        feature_dim=16,
        n_heads=2,
        ffn_dim=32,
        style_channels=16,
        style_out_dim=24,
        style_dense_blocks=2,
    )
    return dataclasses.replace(cfg, **changes)


def make_clip(subject: str, sentence: int, seconds: float, spec: DatasetSpec, seed: int) -> Clip:
    rng = np.random.default_rng(seed)
    n = int(round(seconds * SR))
    t = np.arange(n) / SR
    f0 = {"A": 120.0, "B": 210.0, "C": 160.0}[subject]
    audio = np.sin(2 * np.pi * f0 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.05 * rng.standard_normal(
        n
    )
    frames = int(round(seconds * spec.fps))
    template = rng.standard_normal((spec.n_vertices, 3)).astype(np.float32) * 0.1
    motion = 0.01 * rng.standard_normal((frames, spec.n_vertices, 3)).astype(np.float32)
    return Clip(
        f"{subject}_s{sentence:02d}",
        subject,
        sentence,
        spec.fps,
        audio.astype(np.float32),
        template[None] + motion,
        template,
    )


def triplet_batch(spec: DatasetSpec, seconds=(0.6, 0.8)) -> Batch:
    anchors = [make_clip("A", 1, seconds[0], spec, 1), make_clip("B", 1, seconds[1], spec, 2)]
    positives = [make_clip("A", 2, 0.7, spec, 3), make_clip("B", 2, 0.5, spec, 4)]
    negatives = [make_clip("C", 1, 0.9, spec, 5), make_clip("A", 3, 0.6, spec, 6)]
    batch = collate(anchors, spec.speaker_index)
    batch.positive = collate(positives, spec.speaker_index)
    batch.negative = collate(negatives, spec.speaker_index)
    return batch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# -- parameter counts (spec §8), computed here from the layer shapes ------------------------------
def linear(i: int, o: int, bias: bool = True) -> int:
    return i * o + (o if bias else 0)


def conv(i: int, o: int, k: int) -> int:
    return i * o * k + o


def style_branch_count(n_mels=80, ch=128, out=256, bank=8, k=5, blocks=6, dense=6, slots=32) -> int:
    encoder = (
        sum(conv(n_mels, ch, kk) for kk in range(1, bank + 1))
        + conv(ch * bank + n_mels, ch, 1)
        + blocks * 2 * conv(ch, ch, k)
        + dense * 2 * linear(ch, ch)
        + linear(ch, out)
    )
    heads = linear(out, slots) + linear(slots, 1, bias=False) + 2 * linear(slots, slots)
    return encoder + heads


def decoder_layer_count(d: int, ffn: int) -> int:
    attention = linear(d, 3 * d) + linear(d, d)
    return 2 * attention + linear(d, ffn) + linear(ffn, d) + 3 * 2 * d


@pytest.fixture(scope="module")
def paper_vocaset_model():
    """The `paper` VOCASET preset with a randomly initialised one-layer HuBERT of width 768 (no download)."""
    from talkbench.config import load_config

    cfg = load_config(
        "memorytalker",
        dataset="vocaset",
        overrides=[
            "memorytalker.audio.pretrained=false",
            "memorytalker.audio.hf_overrides={num_hidden_layers: 1, intermediate_size: 64, "
            "conv_dim: [16, 16, 16, 16, 16, 16, 16], num_conv_pos_embeddings: 16}",
        ],
    ).method_config
    spec = make_spec(n_vertices=5023)
    return MemoryTalker(cfg, spec), cfg


def test_paper_vocaset_parameter_counts(paper_vocaset_model):
    model, cfg = paper_vocaset_model
    assert (cfg.memory_slots, cfg.feature_dim, cfg.kappa, cfg.triplet_margin) == (32, 96, 16.0, 5.0)
    assert cfg.audio.kind == "hubert" and cfg.audio.name_or_path == "facebook/hubert-base-ls960"
    counts = model.parameter_counts()
    v3 = 5023 * 3
    assert counts["lm_head"] == linear(768, 32) == 24_608
    assert counts["motion_encoder"] == linear(v3, 96)  # 1.447M
    assert counts["output_proj"] == linear(96, v3)  # 1.462M
    assert counts["transformer_decoder"] == decoder_layer_count(96, 192)  # 0.112M
    assert counts["txt_proj"] + counts["fusion_layer"] + counts["memory"] == (
        linear(32, 96) + linear(192, 96) + 32 * 96
    )
    outside = counts["total"] - counts["audio_encoder"] - counts["style_encoder"]
    expected = linear(768, 32) + linear(v3, 96) + linear(96, v3) + decoder_layer_count(96, 192)
    expected += linear(32, 96) + linear(192, 96) + 32 * 96
    assert outside == expected
    # spec §8's rows (0.025 + 1.447 + 1.462 + 0.112 + 0.025 M) sum to 3.071M; its "3.05M" total is a slip
    assert outside == 3_070_013
    assert counts["style_encoder"] == style_branch_count() == 1_737_216  # spec: about 1.737M


def test_paper_preset_stage_settings(paper_vocaset_model):
    model, _ = paper_vocaset_model
    s1, s2 = model.stages()
    assert (s1.name, s1.epochs, s1.lr, s1.batch_size, s1.optimizer, s1.sampler) == (
        "memorizing",
        100,
        1e-4,
        1,
        "adam",
        "bucketed",
    )
    assert (s2.name, s2.epochs, s2.lr, s2.batch_size, s2.sampler, s2.trainable) == (
        "animating",
        100,
        5e-5,
        1,
        "triplet",
        ("style_encoder.",),
    )
    # stage 1 trains everything but the frozen HuBERT CNN and the (unused) style branch
    trained = {n for n, _ in model.named_trainable(s1)}
    for n, p in model.named_parameters():
        if "feature_extractor" in n or n.startswith("style_encoder."):
            assert n not in trained and not (n.startswith("audio_encoder") and p.requires_grad)
        else:
            assert n in trained, n
    assert any("encoder.layers.0" in n for n in trained)  # the HuBERT transformer trains
    trained2 = {n for n, _ in model.named_trainable(s2)}
    assert trained2 == {n for n, _ in model.named_parameters() if n.startswith("style_encoder.")}
    assert sum(p.numel() for n, p in model.named_parameters() if n in trained2) == style_branch_count()


def test_biwi_preset_resolves():
    from talkbench.config import load_config

    cfg = load_config("memorytalker", dataset="biwi").method_config
    assert cfg.audio.kind == "hubert" and cfg.memory_slots == 32 and cfg.memorizing_lr == 1e-4


# -- building blocks ------------------------------------------------------------------------------
def test_style_log_mel_matches_definition():
    """Centred Hann STFT (n_fft 400, hop 160), power, HTK mel filters, 10 log10(max(x, 1e-10))."""
    wave = torch.randn(1, 4000)
    mel = style_log_mel(wave)
    assert mel.shape == (1, 80, 1 + 4000 // 160)
    x = (wave - wave.mean()) / torch.sqrt(wave.var(unbiased=False) + 1e-7)
    x = F.pad(x[None], (200, 200), mode="reflect")[0]
    frame = x[0, 160 * 7 : 160 * 7 + 400] * torch.hann_window(400)
    power = torch.fft.rfft(frame.double()).abs() ** 2
    freqs = torch.linspace(0, 8000, 201, dtype=torch.float64)
    mel_pts = torch.linspace(0, 2595 * np.log10(1 + 8000 / 700), 82, dtype=torch.float64)
    hz = 700 * (10 ** (mel_pts / 2595) - 1)
    m = 10  # one filter by hand
    tri = torch.clamp(
        torch.minimum((freqs - hz[m]) / (hz[m + 1] - hz[m]), (hz[m + 2] - freqs) / (hz[m + 2] - hz[m + 1])),
        min=0,
    )
    expected = 10 * torch.log10(torch.clamp((tri * power).sum(), min=1e-10))
    assert torch.allclose(mel[0, m, 7].double(), expected, atol=1e-3)


def test_style_encoder_shapes_and_padding():
    enc = SpeakingStyleEncoder(8, n_mels=80, channels=16, out_dim=24, dense_blocks=2)
    for frames in (3, 7, 101):  # replicate padding below the reflect limit, any length works
        f = enc(torch.randn(2, 80, frames))
        assert f.shape == (2, 8)
    w = enc.weights(f)
    assert torch.allclose(w, torch.sigmoid(f) * enc.to_scale(f))
    assert enc.to_scale.bias is None and enc.project(f).shape == (2, 8)


def test_memory_read_per_sample_equals_batch_of_one():
    mem = FacialMotionMemory(8, 16, kappa=16.0)
    key = torch.softmax(torch.randn(3, 5, 8), -1)
    style = torch.randn(3, 8)
    batched = mem.read(key, style)
    for b in range(3):
        single = mem.read(key[b : b + 1], style[b : b + 1])
        assert torch.allclose(batched[b : b + 1], single, atol=1e-6)
        assert torch.allclose(single[0], key[b] @ (torch.diag(style[b]) @ mem.M_m), atol=1e-6)
    # the release's batch mean would mix speakers: it differs from the per-sample result
    mixed = key @ (torch.diag(style.mean(0)) @ mem.M_m)
    assert not torch.allclose(mixed, batched, atol=1e-4)


def test_memory_losses_match_release_at_batch_one_and_ignore_padding():
    mem = FacialMotionMemory(8, 16, kappa=16.0)
    f_m, z = torch.randn(1, 6, 16), torch.randn(1, 6, 8)
    l_mem, l_align = mem.update_loss(f_m, z, torch.ones(1, 6, dtype=torch.bool))
    v = mem.value_address(f_m)
    assert torch.allclose(l_mem, F.mse_loss(v @ mem.M_m, f_m), atol=1e-6)
    ref = F.kl_div(torch.log(v), torch.softmax(16.0 * z, -1), reduction="batchmean")
    assert torch.allclose(l_align, ref, atol=1e-5)
    # a padded batch of two: padded frames add nothing; L_align = (sum_a + sum_b) / B
    f2, z2 = torch.randn(1, 4, 16), torch.randn(1, 4, 8)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    pad = lambda x: F.pad(x, (0, 0, 0, 2), value=7.0)  # noqa: E731
    m2, a2 = mem.update_loss(torch.cat([f_m, pad(f2)]), torch.cat([z, pad(z2)]), mask)
    m_b, a_b = mem.update_loss(f2, z2, torch.ones(1, 4, dtype=torch.bool))
    assert torch.allclose(a2, (l_align + a_b) / 2, atol=1e-5)
    assert torch.allclose(m2, (l_mem * 6 + m_b * 4) / 10, atol=1e-6)


def test_masked_losses_equal_plain_mse_without_padding():
    a, b = torch.randn(2, 5, 4, 3), torch.randn(2, 5, 4, 3)
    full = torch.ones(2, 5, dtype=torch.bool)
    assert torch.allclose(masked_mse(a, b, full), F.mse_loss(a, b))
    assert torch.allclose(velocity_mse(a, b, full), F.mse_loss(a[:, 1:] - a[:, :-1], b[:, 1:] - b[:, :-1]))
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    b2 = b.clone()
    b2[1, 3:] = 100.0  # padded frames must not count
    assert torch.allclose(masked_mse(a, b2, mask), masked_mse(a, b, mask))
    assert torch.allclose(velocity_mse(a, b2, mask), velocity_mse(a, b, mask))


def test_resample_lengths_matches_interpolate():
    x = torch.randn(2, 10, 3)
    out = resample_lengths(x, torch.tensor([10, 6]), torch.tensor([5, 3]), 5)
    ref0 = F.interpolate(x[0:1].transpose(1, 2), size=5, mode="linear", align_corners=True).transpose(1, 2)
    ref1 = F.interpolate(x[1:2, :6].transpose(1, 2), size=3, mode="linear", align_corners=True).transpose(
        1, 2
    )
    assert torch.allclose(out[0], ref0[0], atol=1e-6)
    assert torch.allclose(out[1, :3], ref1[0], atol=1e-6) and (out[1, 3:] == 0).all()


# -- the model ------------------------------------------------------------------------------------
def test_untrained_prediction_is_the_template_and_any_length():
    spec = make_spec()
    model = MemoryTalker(tiny_config(), spec)
    clip = make_clip("A", 1, 0.5, spec, 0)
    out = model.predict(torch.from_numpy(clip.audio), torch.from_numpy(clip.template))
    # the encoder's inference length: int(50 Hz frames / 50 * fps)
    _, n = model.audio_encoder(torch.from_numpy(clip.audio)[None], torch.tensor([len(clip.audio)]))
    assert out.shape == (int(n[0]), spec.n_vertices, 3) and 12 <= out.shape[0] <= 15
    assert torch.equal(out, torch.from_numpy(clip.template).expand_as(out))
    long = model.predict(torch.randn(SR * 25), torch.from_numpy(clip.template))
    assert long.shape[0] > 740  # beyond the release's 600-frame cap


def test_gradient_routing_stage1():
    """Memory: no gradient from reconstruction; E_m: none from the prediction path; the memory losses
    train only M_m; the prediction path reaches the logits through the key addressing."""
    spec = make_spec()
    model = MemoryTalker(tiny_config(dropout=0.0, final_dropout=0.0), spec)
    with torch.no_grad():  # a non-zero output head so that gradients flow back through the decoder
        model.output_proj.weight.normal_(0, 0.1)
    batch = triplet_batch(spec)
    out = model.memorizing_paths(batch)
    target, mask = out["target"], out["mask"]
    params = dict(model.named_parameters())
    rec_pred = masked_mse(out["v_hat"], target, mask) + velocity_mse(out["v_hat"], target, mask)
    rec_val = masked_mse(out["v_val"], target, mask) + velocity_mse(out["v_val"], target, mask)
    l_mem, l_align = model.memory.update_loss(out["f_m"], out["logits"], mask)

    def grads(loss):
        names = [n for n, p in params.items() if p.requires_grad]
        g = torch.autograd.grad(loss, [params[n] for n in names], retain_graph=True, allow_unused=True)
        return {n: (gi if gi is not None else torch.zeros_like(params[n])) for n, gi in zip(names, g)}

    g_pred, g_val, g_memloss = grads(rec_pred), grads(rec_val), grads(l_mem + l_align)
    assert g_pred["memory.M_m"].abs().max() == 0 and g_val["memory.M_m"].abs().max() == 0
    assert g_pred["motion_encoder.weight"].abs().max() == 0
    assert g_val["motion_encoder.weight"].abs().max() > 0
    assert g_memloss["memory.M_m"].abs().max() > 0
    assert all(g.abs().max() == 0 for n, g in g_memloss.items() if n != "memory.M_m")
    for name in ("lm_head.weight", "txt_proj.weight", "fusion_layer.weight", "output_proj.weight"):
        assert g_pred[name].abs().max() > 0 and g_val[name].abs().max() > 0
    # key addressing: the prediction path also back-propagates into z through K_txt
    enc = model.encode(batch.audio, batch.audio_lengths, batch.lengths)
    z = enc.logits.detach().requires_grad_(True)
    f_mkey = model.memory.read(model.memory.key_address(z), detach=True)
    assert torch.autograd.grad(f_mkey.square().sum(), z)[0].abs().max() > 0
    # the full stage-1 loss is their weighted sum
    cfg = model.config
    total = model.loss("memorizing", batch)
    assert set(total) == {"loss", "mse", "velocity", "mem", "align"}
    recomposed = total["mse"] + cfg.w_velocity * total["velocity"] + cfg.w_mem * total["mem"]
    assert torch.allclose(total["loss"], recomposed + cfg.w_align * total["align"])


def test_stage2_step_changes_only_the_style_branch():
    spec = make_spec()
    model = MemoryTalker(tiny_config(), spec)
    with torch.no_grad():
        model.output_proj.weight.normal_(0, 0.1)
    s1, s2 = model.stages()
    model.begin_stage(s2)
    params = freeze_for(model, s2)
    model.train()
    before = copy.deepcopy(model.state_dict())
    opt = torch.optim.Adam(params, lr=1e-3)
    losses = model.loss("animating", triplet_batch(spec))
    assert set(losses) == {"loss", "mse", "velocity", "lip", "style"}
    losses["loss"].backward()
    opt.step()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("style_encoder.") for k in changed), changed
    assert any(k.startswith("style_encoder.encoder.") for k in changed)
    assert bool(model.stylized)


def test_frozen_train_mode_switch():
    spec = make_spec()
    for released in (True, False):
        model = MemoryTalker(tiny_config(frozen_train_mode=released), spec)
        model.begin_stage(model.stages()[1])
        model.train()
        assert model.style_encoder.training
        assert model.transformer_decoder.training is released
        assert model.audio_encoder.training is released and model.ppe.training is released


def test_per_sample_stylization_equals_batch_of_one():
    """A padded batch of two speakers gives each clip what it gets alone (stylized, eval mode)."""
    spec = make_spec()
    model = MemoryTalker(tiny_config(), spec)
    with torch.no_grad():
        model.output_proj.weight.normal_(0, 0.1)
    model.begin_stage(model.stages()[1])
    model.eval()
    batch = triplet_batch(spec)
    with torch.no_grad():
        verts, lengths = model.animate(batch.audio, batch.audio_lengths, batch.template, batch.lengths)
        for b in range(2):
            n, t = int(batch.audio_lengths[b]), int(lengths[b])
            single, _ = model.animate(
                batch.audio[b : b + 1, :n],
                batch.audio_lengths[b : b + 1],
                batch.template[b : b + 1],
                batch.lengths[b : b + 1],
            )
            assert single.shape[1] == t == int(batch.lengths[b])
            assert torch.allclose(verts[b, :t], single[0], atol=1e-5)
        # stylization is on, and it depends on the speaker
        w = model.style_encoder.weights(model.style_features(batch.audio, batch.audio_lengths))
        assert not torch.allclose(w[0], w[1])
        # the animating loss of the batch: padded frames do not count
        losses = model.loss("animating", batch)
        ref = masked_mse(verts, batch.vertices, batch.mask)
        assert torch.allclose(losses["mse"], ref, atol=1e-6)


def test_pairs_alignment_biwi_like():
    spec = make_spec(fps=25.0, alignment="pairs", period=25)
    model = MemoryTalker(tiny_config(), spec)
    batch = triplet_batch(spec)
    enc = model.encode(batch.audio, batch.audio_lengths, batch.lengths)
    # 50 Hz transformer memory, two audio frames per motion frame; the CNN's last partial frame is
    # dropped, so (as in the release) a clip may lose its last motion frame
    assert enc.memory.shape[1] == 2 * enc.text.shape[1]
    assert ((batch.lengths - enc.lengths) >= 0).all() and ((batch.lengths - enc.lengths) <= 1).all()
    losses = model.loss("memorizing", batch)
    assert torch.isfinite(losses["loss"])
    out = model.predict(batch.audio[0, : int(batch.audio_lengths[0])], batch.template[0])
    _, n = model.audio_encoder(batch.audio[:1, : int(batch.audio_lengths[0])], batch.audio_lengths[:1])
    assert out.shape[0] == int(n[0]) // 2  # T = T_logits // 2 at inference


# -- ablation knobs -------------------------------------------------------------------------------
def test_knob_sizes_and_kappa():
    spec = make_spec()
    model = MemoryTalker(tiny_config(memory_slots=12, feature_dim=24), spec)
    assert model.memory.M_m.shape == (12, 24) and model.lm_head.out_features == 12
    assert model.fusion_layer.in_features == 48 and model.style_encoder.to_style_emb.out_features == 12
    z = 0.05 * torch.randn(1, 4, 12)  # unsaturated: a large z gives a max of exactly 1.0 at both kappas
    sharp = MemoryTalker(tiny_config(memory_slots=12, feature_dim=24, kappa=64.0), spec)
    k_soft, k_sharp = model.memory.key_address(z), sharp.memory.key_address(z)
    assert torch.allclose(k_soft, torch.softmax(16.0 * z, -1))
    assert (k_sharp.max(-1).values > k_soft.max(-1).values).all()


def test_knob_triplet_margin_and_weights():
    spec = make_spec()
    batch = triplet_batch(spec)
    results = {}
    for margin in (5.0, 50.0):
        torch.manual_seed(0)
        model = MemoryTalker(tiny_config(triplet_margin=margin, dropout=0.0, final_dropout=0.0), spec)
        model.begin_stage(model.stages()[1])
        model.eval()
        results[margin] = model.loss("animating", batch)
    # L_style = mean(relu(d(a, p) - d(a, n) + margin)) on the projection head, Euclidean
    proj = model.style_encoder.project
    f = [model.style_features(x.audio, x.audio_lengths) for x in (batch, batch.positive, batch.negative)]
    gap = F.pairwise_distance(proj(f[0]), proj(f[1])) - F.pairwise_distance(proj(f[0]), proj(f[2]))
    for margin in (5.0, 50.0):
        assert torch.allclose(results[margin]["style"], torch.relu(gap + margin).mean(), atol=1e-4)
    assert results[50.0]["style"] > results[5.0]["style"]
    torch.manual_seed(0)
    heavy = MemoryTalker(
        tiny_config(
            triplet_margin=5.0, dropout=0.0, final_dropout=0.0, w_style=1.0, w_lip=2.0, w_velocity=3.0
        ),
        spec,
    )
    heavy.begin_stage(heavy.stages()[1])
    heavy.eval()
    h = heavy.loss("animating", batch)
    assert torch.allclose(h["style"], results[5.0]["style"])
    assert torch.allclose(h["loss"], h["mse"] + 3.0 * h["velocity"] + 2.0 * h["lip"] + 1.0 * h["style"])


def test_knob_stage2_false_and_memory_false():
    spec = make_spec()
    only1 = MemoryTalker(tiny_config(stage2=False), spec)
    assert [s.name for s in only1.stages()] == ["memorizing"]
    assert not hasattr(only1, "style_encoder")
    nomem = MemoryTalker(tiny_config(memory=False), spec)
    assert [s.name for s in nomem.stages()] == ["memorizing"]
    names = {n for n, _ in nomem.named_parameters()}
    assert not any(n.startswith(("memory.", "motion_encoder.", "style_encoder.")) for n in names)
    assert nomem.fusion_layer.in_features == nomem.config.feature_dim
    losses = nomem.loss("memorizing", triplet_batch(spec))
    assert set(losses) == {"loss", "mse", "velocity"}
    assert torch.allclose(losses["loss"], losses["mse"] + losses["velocity"])


def test_knob_style_input_none_removes_speaker_information():
    spec = make_spec()
    batch = triplet_batch(spec)
    for mode, same in (("audio", False), ("none", True)):
        model = MemoryTalker(tiny_config(style_input=mode), spec)
        f_s = model.style_features(batch.audio, batch.audio_lengths)
        assert torch.allclose(f_s[0], f_s[1], atol=1e-6) is same


def test_knob_style_input_scale_scales_the_log_mel():
    spec = make_spec()
    batch = triplet_batch(spec)
    torch.manual_seed(0)
    model = MemoryTalker(tiny_config(style_input_scale=0.05), spec)
    n = int(batch.audio_lengths[0])
    f_s = model.style_features(batch.audio[:1, :n], batch.audio_lengths[:1])
    expected = model.style_encoder(style_log_mel(batch.audio[:1, :n]) * 0.05)
    assert torch.allclose(f_s, expected, atol=1e-6)
    model.config.style_input_scale = 1.0
    assert not torch.allclose(model.style_features(batch.audio[:1, :n], batch.audio_lengths[:1]), f_s)


def test_knob_style_weight_init_unit_starts_stage2_at_unit_weights():
    """release (default) leaves every weight as initialised; unit rescales only to_scale, so w_s
    averages 1 over the training clips (sign included) and keeps its shape across slots and clips."""
    spec = make_spec()
    clips = [make_clip(s, k, 0.5 + 0.1 * k, spec, 10 * k + i) for i, s in enumerate("ABC") for k in (1, 2)]
    weights = {}
    for init in ("release", "unit"):
        torch.manual_seed(3)
        model = MemoryTalker(tiny_config(style_weight_init=init), spec)
        before = copy.deepcopy(model.state_dict())
        model.prepare(clips)
        changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
        assert changed == (set() if init == "release" else {"style_encoder.to_scale.weight"})
        weights[init] = model.style_embeddings(clips)[0]["weights"]
    assert weights["unit"].mean() == pytest.approx(1.0, rel=1e-5)
    release = weights["release"]  # one factor for every slot and clip
    assert np.allclose(weights["unit"], release / release.mean(), rtol=1e-4, atol=1e-6)
    assert MemoryTalker(tiny_config(stage2=False, style_weight_init="unit"), spec).prepare(clips) is None
    with pytest.raises(ConfigError, match="memorytalker.style_weight_init"):
        MemoryTalker(tiny_config(style_weight_init="ones"), spec)


def test_bad_input_and_config():
    spec = make_spec()
    model = MemoryTalker(tiny_config(), spec)
    with pytest.raises(DataError, match="template"):
        model.predict(torch.randn(SR), torch.zeros(7, 3))
    with pytest.raises(DataError, match="shorter"):
        model.predict(torch.randn(100), torch.zeros(spec.n_vertices, 3))
    with pytest.raises(ConfigError, match="style_input"):
        MemoryTalker(tiny_config(style_input="video"), spec)
    with pytest.raises(ConfigError, match="feature_dim"):
        MemoryTalker(tiny_config(feature_dim=30, n_heads=4), spec)
    with pytest.raises(ConfigError, match="stage"):
        model.loss("finetune", triplet_batch(spec))
    no_lips = make_spec()
    no_lips.regions.pop("lips")
    with pytest.raises(ConfigError, match="lips"):
        MemoryTalker(tiny_config(), no_lips)


def test_registry_and_overrides():
    from talkbench.config import load_config
    from talkbench.registry import METHODS

    assert METHODS.get("memorytalker") is MemoryTalker and MemoryTalker.uses_speaker_id is False
    cfg = load_config(
        "memorytalker",
        preset="tiny",
        overrides=[
            "memorytalker.memory_slots=16",
            "memorytalker.triplet_margin=1",
            "memorytalker.stage2=false",
        ],
    ).method_config
    assert (cfg.memory_slots, cfg.triplet_margin, cfg.stage2) == (16, 1.0, False)
    with pytest.raises(ConfigError, match="memory_slots"):
        load_config("memorytalker", preset="tiny", overrides=["memorytalker.memory_slot=16"])


# -- fidelity to the release (issue 16 point 3) ---------------------------------------------------
def test_text_logit_head_initialised_as_released():
    """lm_head: N(0, 0.02) weights and zero bias (the library's init of a new CTC head), not
    PyTorch's default Linear init (uniform with bound 1/sqrt(fan_in) = 0.0625 here)."""
    cfg = tiny_config(memory_slots=32)
    cfg.audio = dataclasses.replace(cfg.audio, d_model=256)
    model = MemoryTalker(cfg, make_spec())
    w, b = model.lm_head.weight.detach(), model.lm_head.bias.detach()
    assert w.shape == (32, 256)
    assert torch.equal(b, torch.zeros(32))
    assert abs(float(w.mean())) < 2e-3 and 0.019 < float(w.std()) < 0.021
    beyond = float((w.abs() > 0.04).float().mean())  # 4.6 % beyond 2 sigma for a normal
    assert 0.035 < beyond < 0.057 and float(w.abs().max()) > 0.0625  # a uniform would give 36 % and <= bound


def test_lip_loss_runs_over_the_raw_index_list_with_duplicates():
    """Metrics use the unique lip set; the animating stage's lip loss gathers the release's list, so a
    repeated vertex weighs twice in the mean: L = (sum_i e_i + e_4) / 6 over ids [1, 2, 3, 4, 4, 5]."""
    spec = make_spec()
    spec.regions["lips"] = np.array([1, 2, 3, 4, 5], np.int64)  # the unique set (metrics)
    spec.lip_loss_indices = np.array([1, 2, 3, 4, 4, 5], np.int64)  # the file as released
    batch = triplet_batch(spec)
    model = MemoryTalker(tiny_config(dropout=0.0, final_dropout=0.0), spec)
    assert model.lip_index.tolist() == [1, 2, 3, 4, 4, 5]
    model.begin_stage(model.stages()[1])
    model.eval()
    with torch.no_grad():
        full = model.loss("animating", batch)["lip"]
        per_vertex = {}
        for v in (1, 2, 3, 4, 5):
            model.lip_index = torch.tensor([v])
            per_vertex[v] = model.loss("animating", batch)["lip"]
    expected = (sum(per_vertex.values()) + per_vertex[4]) / 6
    assert torch.allclose(full, expected, rtol=1e-5)
    unique_mean = sum(per_vertex.values()) / 5
    assert not torch.allclose(full, unique_mean, rtol=1e-3)  # the deduplicated loss differs
    spec.lip_loss_indices = None  # datasets without a raw list fall back to the region
    assert MemoryTalker(tiny_config(), spec).lip_index.tolist() == [1, 2, 3, 4, 5]


def test_predict_conditions_equals_the_default_loop():
    """Audio-only: the override computes once; the rows equal Method's loop over predict()."""
    from talkbench.methods.base import Method

    spec = make_spec()
    model = MemoryTalker(tiny_config(), spec)
    torch.nn.init.normal_(model.output_proj.weight, std=0.1)  # zero-initialised as released
    model.begin_stage(model.stages()[1])
    clip = make_clip("B", 1, 0.6, spec, 7)
    audio, template = torch.from_numpy(clip.audio), torch.from_numpy(clip.template)
    loop = Method.predict_conditions(model, audio, template, [None, 0, 2])
    got = model.predict_conditions(audio, template, [None, 0, 2])
    assert got.shape == loop.shape and got.shape[0] == 3
    torch.testing.assert_close(got, loop, rtol=0, atol=1e-6)
    assert not torch.allclose(got[0], template.expand_as(got[0]), atol=1e-4)  # not the template
