"""The floor-line methods: template (zero motion) and mean-motion (mean displacement per frame phase)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from _engine_support import MemoryData, forget_dummy, memory_loader, register_dummy

from talkbench.config import load_config
from talkbench.datasets.batch import collate
from talkbench.engine import train
from talkbench.errors import TalkbenchError
from talkbench.methods.reference import MeanMotionConfig, MeanMotionMethod, TemplateConfig, TemplateMethod
from talkbench.registry import METHODS


@pytest.fixture(scope="module")
def data():
    # audio of exactly T frames' samples, like SynthTalk: the ground truth follows the sample rule
    data = MemoryData(seed=3)
    data.spec = dataclasses.replace(data.spec, frame_rule="samples")
    return data


def _prepared(data, period=None) -> MeanMotionMethod:
    method = MeanMotionMethod(MeanMotionConfig(period=period), data.spec)
    method.prepare(data.split("train"))
    return method


def test_registered_under_their_names():
    assert METHODS.get("template") is TemplateMethod
    assert METHODS.get("mean-motion") is MeanMotionMethod
    for cls in (TemplateMethod, MeanMotionMethod):
        assert not cls.uses_speaker_id and {"paper", "synthtalk", "tiny"} <= set(cls.presets)


def test_template_predicts_the_template_for_the_audio_length(data):
    method = TemplateMethod(TemplateConfig(), data.spec)
    clip = data.split("test")[0]
    out = method.predict(torch.from_numpy(clip.audio), torch.from_numpy(clip.template))
    assert out.shape == (clip.n_frames, data.spec.n_vertices, 3)
    assert torch.equal(out, torch.from_numpy(clip.template)[None].expand_as(out))
    assert method.stages() == [] and method.parameter_counts()["total"] == 0


def test_reference_methods_follow_the_feature_rule_on_real_datasets(data):
    """VOCASET/BIWI specs (frame_rule 'features'): int(S'/50*fps) with S' the wav2vec2 CNN length."""
    spec = dataclasses.replace(data.spec, frame_rule="features", fps=30.0)
    method = TemplateMethod(TemplateConfig(), spec)
    audio = torch.zeros(19200)  # 1.2 s: S' = (19200 - 400) // 320 + 1 = 59 -> int(35.4) = 35
    assert method.predict(audio, torch.zeros(spec.n_vertices, 3)).shape[0] == 35


def test_mean_motion_matches_a_direct_computation(data):
    method = _prepared(data)
    period = data.spec.period
    expected = np.zeros((period, data.spec.n_vertices, 3))
    for p in range(period):
        disp = [c.vertices[p::period] - c.template[None] for c in data.split("train")]
        expected[p] = np.concatenate(disp).astype(np.float64).mean(0)
    np.testing.assert_allclose(method.mean_offsets.numpy(), expected, rtol=1e-5, atol=1e-7)
    counts = [sum(len(c.vertices[p::period]) for c in data.split("train")) for p in range(period)]
    assert method.frames_per_phase.tolist() == counts


def test_mean_motion_predicts_template_plus_phase_mean(data):
    method = _prepared(data)
    clip = data.split("test")[1]
    out = method.predict(torch.from_numpy(clip.audio), torch.from_numpy(clip.template))
    assert out.shape == (clip.n_frames, data.spec.n_vertices, 3)
    for t in (0, 1, data.spec.period, clip.n_frames - 1):
        assert torch.equal(
            out[t], torch.from_numpy(clip.template) + method.mean_offsets[t % data.spec.period]
        )
    # the batched path used for losses agrees with predict() on every clip
    clips = data.split("test")
    batched = method.predict_batch(collate(clips))
    for i, c in enumerate(clips):
        single = method.predict(torch.from_numpy(c.audio), torch.from_numpy(c.template))
        torch.testing.assert_close(batched[i, : c.n_frames], single, rtol=0, atol=1e-6)


def test_mean_motion_beats_the_template_on_training_data(data):
    batch = collate(data.split("train"))
    mean_loss = _prepared(data).loss("none", batch)["loss"]
    template_loss = TemplateMethod(TemplateConfig(), data.spec).loss("none", batch)["loss"]
    assert float(mean_loss) < float(template_loss)


def test_statistics_travel_in_the_state_dict(data):
    method = _prepared(data, period=3)
    assert method.mean_offsets.shape == (3, data.spec.n_vertices, 3)
    fresh = MeanMotionMethod(MeanMotionConfig(period=3), data.spec)
    clip = data.split("val")[0]
    audio, template = torch.from_numpy(clip.audio), torch.from_numpy(clip.template)
    with pytest.raises(TalkbenchError, match="no statistics yet"):
        fresh.predict(audio, template)
    fresh.load_state_dict(method.state_dict())
    assert torch.equal(fresh.predict(audio, template), method.predict(audio, template))


def test_bad_training_clip_shape_is_a_clear_error(data):
    from dataclasses import replace

    bad = replace(data.split("train")[0], vertices=np.zeros((5, 7, 3), np.float32))
    with pytest.raises(TalkbenchError, match=r"clip A_s00 has vertices \(5, 7, 3\), expected \(T, 12, 3\)"):
        MeanMotionMethod(MeanMotionConfig(), data.spec).prepare([bad])


def test_through_the_engine_with_the_period_from_config(data, tmp_path):
    register_dummy()  # the in-memory dataset 'memory' is a registered dataset like any other
    try:
        cfg = load_config("mean-motion", dataset="memory", overrides=["mean-motion.period=4", "device=cpu"])
    finally:
        forget_dummy()
    method = METHODS.get(cfg.method)(cfg.method_config, data.spec)
    result = train(method, data, cfg, tmp_path, progress=False, loader_factory=memory_loader)
    assert result.history == [] and result.stage_seconds == {}
    saved = torch.load(result.checkpoint, weights_only=True)
    assert saved["mean_offsets"].shape == (4, data.spec.n_vertices, 3)
    assert torch.equal(saved["mean_offsets"], _prepared(data, period=4).mean_offsets)


def test_predict_conditions_default_stacks_predict_per_condition(data):
    method = _prepared(data)
    clip = data.split("test")[0]
    audio, template = torch.from_numpy(clip.audio), torch.from_numpy(clip.template)
    out = method.predict_conditions(audio, template, [None, None])
    one = method.predict(audio, template)
    assert out.shape == (2, *one.shape)
    torch.testing.assert_close(out[0], one)
    torch.testing.assert_close(out[1], one)
    with pytest.raises(ValueError, match="at least one condition"):
        method.predict_conditions(audio, template, [])
