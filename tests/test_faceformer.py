"""FaceFormer: fidelity to the spec, equivalence of batched / cached paths, bad input."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from talkbench.audio.config import AudioEncoderConfig
from talkbench.datasets.batch import collate
from talkbench.datasets.clip import Clip
from talkbench.datasets.spec import DatasetSpec
from talkbench.errors import ConfigError, DataError, TalkbenchError
from talkbench.methods.faceformer import FaceFormer, FaceFormerConfig
from talkbench.registry import METHODS

PRESETS = Path(__file__).resolve().parents[1] / "talkbench" / "presets" / "faceformer"
TINY_MEL = AudioEncoderConfig(
    kind="mel", n_mels=24, conv_dim=16, d_model=16, n_layers=1, n_heads=2, dropout=0.0
)


def make_spec(v=12, fps=30, alignment="interpolate", speakers=("s0", "s1", "s2"), period=None) -> DatasetSpec:
    return DatasetSpec(
        name="unit",
        fps=fps,
        n_vertices=v,
        splits={},
        train_subjects=tuple(speakers),
        audio_alignment=alignment,
        period=period or int(fps),
    )


def make_model(spec=None, randomise_head=True, **kw) -> FaceFormer:
    torch.manual_seed(0)
    cfg = FaceFormerConfig(feature_dim=16, dropout=0.0, audio=dataclasses.replace(TINY_MEL), **kw)
    model = FaceFormer(cfg, spec or make_spec())
    if randomise_head:  # the released head is zero-initialised; give the equivalence tests signal
        torch.nn.init.normal_(model.vertice_map_r.weight, std=0.3)
        torch.nn.init.normal_(model.vertice_map_r.bias, std=0.1)
    return model


def make_clips(frames=(20, 13, 17), v=12, fps=30, subjects=("s0", "s1", "s2"), seed=0) -> list[Clip]:
    rng = np.random.default_rng(seed)
    clips = []
    for i, (n, subj) in enumerate(zip(frames, subjects)):
        audio = rng.standard_normal(round(n / fps * 16000)).astype(np.float32)
        verts = rng.standard_normal((n, v, 3)).astype(np.float32) * 0.1
        clips.append(
            Clip(
                f"{subj}_{i}",
                subj,
                i,
                float(fps),
                audio,
                verts,
                rng.standard_normal((v, 3)).astype(np.float32),
            )
        )
    return clips


def mel_motion_frames(n_samples: int, fps: int = 30) -> int:
    """Released frame count int(S'/50*fps) with S' the mel encoder's 50 Hz length."""
    s50 = ((n_samples - 400) // 160) // 2 + 1
    return int(s50 / 50 * fps)


def test_registered_with_speaker_id():
    assert METHODS.get("faceformer") is FaceFormer
    assert FaceFormer.uses_speaker_id
    assert set(FaceFormer.presets) == {"paper", "synthtalk", "tiny"}


def test_output_is_template_before_training():
    model = make_model(randomise_head=False)
    clip = make_clips()[0]
    out = model.predict(torch.from_numpy(clip.audio), torch.from_numpy(clip.template), condition=1)
    assert out.shape == (mel_motion_frames(len(clip.audio)), 12, 3)
    assert torch.equal(out, torch.from_numpy(clip.template).expand_as(out))
    batch = collate(make_clips(), make_spec().speaker_index)
    model.eval()
    t = int(batch.lengths.max())
    offsets = (batch.vertices - batch.template[:, None]).flatten(2)
    losses = model.clip_losses(batch)
    expected = [(offsets[b, : batch.lengths[b]] ** 2).mean() for b in range(3)]
    assert torch.allclose(losses, torch.stack(expected), atol=1e-6)
    assert t == 20


def _paper_model(preset: str, spec: DatasetSpec) -> FaceFormer:
    from talkbench.config import preset_layers

    data: dict = {}  # the preset's faceformer section, its ``base:`` file merged first
    for layer, _ in preset_layers(PRESETS / f"{preset}.yaml"):
        for key, value in (layer.get("faceformer") or {}).items():
            both = isinstance(value, dict) and isinstance(data.get(key), dict)
            data[key] = {**data[key], **value} if both else value
    audio = dict(data.pop("audio"))
    # a tiny random wav2vec2 with the right output size (768): nothing is downloaded
    audio.update(
        pretrained=False,
        hf_overrides=dict(
            hidden_size=768,
            num_hidden_layers=1,
            num_attention_heads=12,
            intermediate_size=32,
            conv_dim=(8,) * 7,
            num_conv_pos_embeddings=4,
            num_conv_pos_embedding_groups=768,
        ),
    )
    return FaceFormer(FaceFormerConfig(**data, audio=AudioEncoderConfig(**audio)), spec)


@pytest.mark.parametrize(
    "preset,n_vertices,n_train,d,fps,alignment",
    [("paper-vocaset", 5023, 8, 64, 30, "interpolate"), ("paper-biwi", 23370, 6, 128, 25, "pairs")],
)
def test_paper_parameter_counts_outside_speech_encoder(preset, n_vertices, n_train, d, fps, alignment):
    spec = make_spec(v=n_vertices, fps=fps, alignment=alignment, speakers=[f"s{i}" for i in range(n_train)])
    model = _paper_model(preset, spec)
    v3 = 3 * n_vertices

    def linear(i, o, bias=True):
        return i * o + (o if bias else 0)

    attention = 4 * d * d + 4 * d  # in_proj (3d x d + 3d) + out_proj (d x d + d)
    layer = 2 * attention + linear(d, 2 * d) + linear(2 * d, d) + 3 * 2 * d
    expected = {
        "audio_feature_map": linear(768, d),
        "vertice_map": linear(v3, d),
        "vertice_map_r": linear(d, v3),
        "obj_vector": linear(n_train, d, bias=False),
        "decoder": layer,
    }
    counts = model.parameter_counts()
    assert model.audio.out_dim == 768
    assert {k: counts[k] for k in expected} == expected
    assert counts["total"] - counts["audio"] == sum(expected.values())
    # the spec's table (§9): 2.04M (VOCASET) and 18.3M (BIWI) outside wav2vec2
    assert sum(expected.values()) == {"paper-vocaset": 2_043_933, "paper-biwi": 18_316_382}[preset]
    stage = model.stages()[0]
    assert (stage.epochs, stage.lr, stage.batch_size, stage.optimizer) == (100, 1e-4, 1, "adam")
    assert not any(
        name.startswith("audio.model.feature_extractor") for name, _ in model.named_trainable(stage)
    )
    assert any(name.startswith("audio.model.encoder") for name, _ in model.named_trainable(stage))


@pytest.mark.parametrize("mode", ["teacher_forcing", "autoregressive"])
@pytest.mark.parametrize("alignment", ["interpolate", "pairs"])
def test_padded_batch_equals_clips_one_at_a_time(mode, alignment):
    fps = 30 if alignment == "interpolate" else 25
    spec = make_spec(fps=fps, alignment=alignment)
    model = make_model(spec, train_mode=mode, ar_cache=True).eval()
    clips = make_clips(fps=fps)
    batch = collate(clips, spec.speaker_index)
    with torch.no_grad():
        batched = model.clip_losses(batch)
        loss = model.loss("train", batch)["loss"]
        single = torch.cat([model.clip_losses(collate([c], spec.speaker_index)) for c in clips])
        memory, n_motion = model.encode(batch.audio, batch.audio_lengths, batch.lengths)
        style = model.style(batch.speaker)
        out = model.rollout_cached(memory, style, int(n_motion.max()))
        for b, clip in enumerate(clips):
            one = collate([clip], spec.speaker_index)
            m1, n1 = model.encode(one.audio, one.audio_lengths, one.lengths)
            o1 = model.rollout_cached(m1, model.style(one.speaker), int(n1[0]))
            assert torch.allclose(out[b, : n1[0]], o1[0], atol=1e-5)
    assert torch.allclose(batched, single, atol=1e-6)
    assert torch.allclose(loss, single.mean(), atol=1e-6)


def test_autoregressive_cached_loss_and_gradients_equal_plain_rollout():
    spec = make_spec()
    batch = collate(make_clips(frames=(9, 6, 8)), spec.speaker_index)
    results = []
    for cache in (False, True):
        model = make_model(spec, train_mode="autoregressive", ar_cache=cache).train()
        loss = model.loss("train", batch)["loss"]
        names, params = zip(*[(n, p) for n, p in model.named_parameters() if p.requires_grad])
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        results.append((loss, dict(zip(names, grads))))
    (l_plain, g_plain), (l_cache, g_cache) = results
    assert torch.allclose(l_plain, l_cache, rtol=1e-6)
    assert g_plain["vertice_map.weight"] is not None and g_plain["vertice_map.weight"].abs().sum() > 0
    for name, g in g_plain.items():
        if g is None:
            assert g_cache[name] is None
            continue
        assert torch.allclose(g, g_cache[name], atol=1e-6, rtol=1e-4), name


def test_first_token_asymmetry_flag():
    model = make_model()
    style = model.style(torch.tensor([0]))
    assert torch.equal(model.first_token(style, teacher_forcing=False), style[:, None])
    assert torch.allclose(
        model.first_token(style, teacher_forcing=True), (model.vertice_map.bias + style)[:, None]
    )
    consistent = make_model(first_token="consistent")
    assert torch.allclose(consistent.first_token(style, False), consistent.first_token(style, True))


def test_predict_any_length_with_cache_matches_rollout():
    model = make_model().eval()
    audio = torch.from_numpy(np.random.default_rng(1).standard_normal(16000 * 21).astype(np.float32))
    template = torch.zeros(12, 3)
    out = model.predict(audio, template, condition="s2")
    assert out.shape == (mel_motion_frames(16000 * 21), 12, 3)
    assert out.shape[0] > 600  # beyond the released 600-frame cap
    with torch.no_grad():
        memory, n = model.encode(audio[None, :16000], torch.tensor([16000]), None)
        plain = model.rollout(memory, model.style(torch.tensor([2])), int(n[0]))
    short = model.predict(audio[:16000], template, condition=2)
    assert torch.allclose(short.flatten(1), plain[0], atol=1e-5)


@pytest.mark.parametrize("alignment", ["interpolate", "pairs"])
def test_batched_conditions_equal_the_default_loop(alignment):
    """The override batches the one-hot conditions exactly: it equals Method's loop over predict()."""
    from talkbench.methods.base import Method

    fps = 30 if alignment == "interpolate" else 25
    model = make_model(make_spec(fps=fps, alignment=alignment)).eval()
    audio = torch.from_numpy(np.random.default_rng(4).standard_normal(15000).astype(np.float32))
    template = torch.randn(12, 3)
    conditions = [2, "s0", 1]
    loop = Method.predict_conditions(model, audio, template, conditions)
    batched = model.predict_conditions(audio, template, conditions)
    assert batched.shape == loop.shape and loop.shape[0] == 3
    torch.testing.assert_close(batched, loop, rtol=0, atol=1e-5)
    assert not torch.allclose(batched[0], batched[1], atol=1e-4)  # the style changes the output
    with pytest.raises(TalkbenchError, match="condition"):
        model.predict_conditions(audio, template, [0, 7])


def test_pairs_alignment_crops_motion_to_audio():
    spec = make_spec(fps=25, alignment="pairs")
    model = make_model(spec).eval()
    clip = make_clips(frames=(20,), fps=25)[0]
    short = Clip(clip.name, clip.subject, 1, 25.0, clip.audio[:8000], clip.vertices, clip.template)
    batch = collate([short], spec.speaker_index)
    _, n_motion = model.encode(batch.audio, batch.audio_lengths, batch.lengths)
    assert n_motion.tolist() == [12]  # 8000 samples -> 24 audio frames at 50 Hz -> 12 motion frames
    assert torch.isfinite(model.clip_losses(batch)).all()


def test_validation_averages_unseen_speakers_over_conditions():
    spec = make_spec()
    model = make_model(spec).eval()
    clips = make_clips(subjects=("s1", "new", "new"))
    batch = collate(clips, spec.speaker_index)
    assert batch.speaker.tolist() == [1, -1, -1]
    with torch.no_grad():
        val = model.validation_loss("train", batch)["loss"]
        per_condition = [
            model.clip_losses(batch, torch.tensor([1, c, c]), mode="teacher_forcing") for c in range(3)
        ]
    assert torch.allclose(val, torch.stack(per_condition).mean(0).mean(), atol=1e-6)
    with pytest.raises(DataError, match="training speakers only"):
        model.loss("train", batch)


@pytest.mark.parametrize("condition", [None, -1, 3, "new"])
def test_condition_must_be_a_training_speaker(condition):
    model = make_model()
    with pytest.raises(TalkbenchError, match="training speaker"):
        model.predict(torch.zeros(16000), torch.zeros(12, 3), condition=condition)


def test_audio_shorter_than_one_motion_frame():
    model = make_model()
    with pytest.raises(DataError, match="shorter than one motion frame"):
        model.predict(torch.randn(300), torch.zeros(12, 3), condition=0)


def test_vertex_count_must_match_the_model():
    model = make_model()
    with pytest.raises(DataError, match="built for 12"):
        model.predict(torch.randn(16000), torch.zeros(13, 3), condition=0)
    batch = collate(make_clips(v=10, frames=(5,)), make_spec(v=10).speaker_index)
    with pytest.raises(DataError, match="built for 12"):
        model.loss("train", batch)


def test_presets_resolve_and_set_overrides():
    from talkbench.config import load_config

    cfg = load_config("faceformer", dataset="synthtalk", preset="tiny", overrides=["faceformer.epochs=3"])
    assert cfg.method_config.epochs == 3 and cfg.method_config.audio.kind == "mel"
    for dataset in ("vocaset", "biwi"):
        paper = load_config("faceformer", dataset=dataset, preset="paper").method_config
        assert paper.train_mode == "autoregressive" and paper.lr == 1e-4 and paper.batch_size == 1
        assert paper.feature_dim == {"vocaset": 64, "biwi": 128}[dataset]
        assert paper.audio.name_or_path == "facebook/wav2vec2-base-960h"
    synth = load_config("faceformer", dataset="synthtalk").method_config
    assert synth.audio.kind == "synthtalk" and synth.audio.freeze_cnn  # issue 14: the pretrained encoder


def test_stage_carries_every_config_setting():
    model = make_model(epochs=7, lr=3e-4, batch_size=5, sampler="bucketed", schedule="cosine", grad_clip=1.0)
    stage = model.stages()[0]
    assert (stage.epochs, stage.lr, stage.batch_size, stage.sampler, stage.schedule, stage.grad_clip) == (
        7,
        3e-4,
        5,
        "bucketed",
        "cosine",
        1.0,
    )
    assert {n for n, _ in model.named_trainable(stage)} == {n for n, _ in model.named_parameters()}
    with pytest.raises(ConfigError, match="faceformer.train_mode"):
        FaceFormerConfig(train_mode="scheduled_sampling")
