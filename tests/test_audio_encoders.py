"""Shared speech encoders: log-mel, normalisation, frame-rate alignment, padding, errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from talkbench.audio.build import build_audio_encoder
from talkbench.audio.config import AudioEncoderConfig
from talkbench.audio.mel import time_mask_indices
from talkbench.audio.signal import align_features, log_mel, mel_filterbank, normalize_audio
from talkbench.datasets.spec import DatasetSpec
from talkbench.errors import ConfigError, DataError

TINY_HF = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=37,
    conv_dim=(16,) * 7,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
    hidden_dropout=0.0,
    attention_dropout=0.0,
    activation_dropout=0.0,
    feat_proj_dropout=0.0,
    layerdrop=0.0,
)


def make_spec(fps: float = 30, alignment: str = "interpolate") -> DatasetSpec:
    return DatasetSpec(
        name="unit", fps=fps, n_vertices=4, splits={}, train_subjects=("a", "b"), audio_alignment=alignment
    )


def tiny_cfg(kind: str, **kw) -> AudioEncoderConfig:
    if kind == "mel":
        return AudioEncoderConfig(
            kind="mel", n_mels=40, conv_dim=24, d_model=32, n_layers=2, dropout=0.0, **kw
        )
    return AudioEncoderConfig(kind=kind, pretrained=False, hf_overrides=dict(TINY_HF), **kw)


def test_log_mel_frames_and_peak():
    sr, f0 = 16000, 1000.0
    t = torch.arange(sr) / sr
    mel = log_mel(torch.sin(2 * math.pi * f0 * t), n_mels=40)
    assert mel.shape == (40, 1 + (sr - 400) // 160)
    fb = mel_filterbank(40, 400, sr)
    bin_of_f0 = round(f0 / (sr / 400))
    # the loudest mel band is one of the filters that cover the sine's frequency
    assert fb[mel.mean(1).argmax(), bin_of_f0] > 0
    assert (fb.max(1).values <= 1).all() and (fb.sum(1) > 0).all()  # every filter covers a bin
    batched = log_mel(torch.stack([torch.sin(2 * math.pi * f0 * t), torch.zeros(sr)]), n_mels=40)
    assert torch.allclose(batched[0], mel, atol=1e-5)


def test_normalize_audio_over_valid_samples():
    audio = torch.randn(2, 1000) * 3 + 1
    lengths = torch.tensor([1000, 600])
    out = normalize_audio(audio, lengths)
    assert torch.allclose(out[1, :600].mean(), torch.tensor(0.0), atol=1e-5)
    assert torch.allclose(out[1, :600].var(unbiased=False), torch.tensor(1.0), atol=1e-4)
    assert (out[1, 600:] == 0).all()
    alone = normalize_audio(audio[1:, :600], lengths[1:])
    assert torch.allclose(out[1, :600], alone[0], atol=1e-6)


def test_interpolate_alignment_matches_f_interpolate_per_element():
    torch.manual_seed(0)
    lens = torch.tensor([50, 37, 1, 80])
    targets = torch.tensor([30, 45, 3, 1])
    feats = torch.randn(4, 80, 6)
    out, out_len = align_features(feats, lens, targets, "interpolate", fps=30)
    assert out_len.tolist() == targets.tolist()
    for b in range(4):
        x = feats[b, : lens[b]].T[None]
        ref = F.interpolate(x, size=int(targets[b]), mode="linear", align_corners=True)[0].T
        assert torch.allclose(out[b, : targets[b]], ref, atol=1e-6)
        assert (out[b, targets[b] :] == 0).all()


@pytest.mark.parametrize("fps", [30, 25])
def test_default_frame_count_follows_released_formula(fps):
    lens = torch.tensor([149, 50, 7])
    _, out_len = align_features(torch.zeros(3, 149, 2), lens, None, "interpolate", fps=fps)
    assert out_len.tolist() == [int(n / 50 * fps) for n in lens.tolist()]


def test_pairs_alignment_trims_and_crops():
    feats = torch.arange(2 * 11 * 1, dtype=torch.float32).reshape(2, 11, 1)
    out, out_len = align_features(feats, torch.tensor([11, 9]), None, "pairs", fps=25)
    assert out_len.tolist() == [10, 8]
    out, out_len = align_features(feats, torch.tensor([11, 9]), torch.tensor([3, 7]), "pairs", fps=25)
    assert out_len.tolist() == [6, 8]  # cropped to 2 * n_frames, or the even audio length if shorter
    assert torch.equal(out[0, :6], feats[0, :6])


def test_time_mask_spans():
    torch.manual_seed(0)
    m = time_mask_indices(torch.tensor([100, 30]), 100, prob=0.3, span=5, min_masks=2)
    assert m.shape == (2, 100)
    assert not m[1, 30:].any()
    assert m[1].sum() >= 5 and m[0].sum() >= 10


@pytest.mark.parametrize("kind", ["mel", "wav2vec2", "hubert"])
@pytest.mark.parametrize("alignment", ["interpolate", "pairs"])
def test_padded_batch_equals_clips_one_at_a_time(kind, alignment):
    torch.manual_seed(0)
    fps = 30 if alignment == "interpolate" else 25
    enc = build_audio_encoder(tiny_cfg(kind), make_spec(fps, alignment)).eval()
    lengths = torch.tensor([16000, 9000, 12345])
    audio = torch.randn(3, 16000) * (lengths[:, None] > torch.arange(16000)[None])
    n_frames = torch.tensor([30, 17, 23]) if alignment == "interpolate" else torch.tensor([25, 14, 19])
    for frames in (n_frames, None):
        feats, feat_len = enc(audio, lengths, frames)
        assert feats.shape[-1] == enc.out_dim
        for b in range(3):
            one, one_len = enc(
                audio[b : b + 1, : lengths[b]],
                lengths[b : b + 1],
                None if frames is None else frames[b : b + 1],
            )
            assert one_len.item() == feat_len[b].item()
            assert torch.allclose(feats[b, : feat_len[b]], one[0], atol=1e-5)
    if alignment == "interpolate":
        assert feat_len.tolist() == [int(49 / 50 * fps), int(27 / 50 * fps), int(38 / 50 * fps)]
    else:
        assert feat_len.tolist() == [48, 26, 38]  # even 50 Hz lengths: 2 audio frames per motion frame


def test_hf_cnn_frozen_and_rest_trains():
    enc = build_audio_encoder(tiny_cfg("wav2vec2"), make_spec())
    cnn = list(enc.model.feature_extractor.parameters())
    assert cnn and not any(p.requires_grad for p in cnn)
    assert "model.feature_extractor" not in enc.trainable_prefixes()
    assert "model.encoder" in enc.trainable_prefixes()
    enc.train()
    feats, _ = enc(torch.randn(1, 8000), torch.tensor([8000]), torch.tensor([15]))
    feats.pow(2).mean().backward()
    assert enc.model.encoder.layers[0].attention.q_proj.weight.grad is not None
    assert all(p.grad is None for p in cnn)


@pytest.mark.parametrize("kind", ["mel", "wav2vec2"])
def test_spec_augment_only_in_training(kind):
    torch.manual_seed(0)
    enc = build_audio_encoder(tiny_cfg(kind, mask_time_prob=0.6, mask_time_length=3), make_spec())
    audio, lengths = torch.randn(1, 16000), torch.tensor([16000])
    enc.eval()
    a, _ = enc(audio, lengths)
    b, _ = enc(audio, lengths)
    assert torch.equal(a, b)
    enc.train()
    c, _ = enc(audio, lengths)
    assert not torch.allclose(a, c, atol=1e-4)  # dropout is 0: the difference is the time masking
    plain = build_audio_encoder(tiny_cfg(kind, mask_time_prob=0.0), make_spec())
    plain.train()
    d, _ = plain(audio, lengths)
    plain.eval()
    e, _ = plain(audio, lengths)
    assert torch.allclose(d, e, atol=1e-6)


def test_missing_checkpoint_says_how_to_get_it():
    cfg = AudioEncoderConfig(kind="wav2vec2", name_or_path="/nonexistent/wav2vec2-ckpt")
    with pytest.raises(ConfigError, match="huggingface-cli download"):
        build_audio_encoder(cfg, make_spec())


def test_unknown_kind_and_bad_override():
    with pytest.raises(ConfigError, match="audio.kind"):
        build_audio_encoder(AudioEncoderConfig(kind="whisper"), make_spec())
    with pytest.raises(ConfigError, match="hf_overrides"):
        build_audio_encoder(
            AudioEncoderConfig(kind="hubert", pretrained=False, hf_overrides={"nope": 1}), make_spec()
        )


@pytest.mark.parametrize("kind", ["mel", "hubert"])
def test_audio_shorter_than_one_motion_frame(kind):
    enc = build_audio_encoder(tiny_cfg(kind), make_spec())
    with pytest.raises(DataError, match="shorter than one motion frame"):
        enc(torch.randn(1, 300), torch.tensor([300]))
    with pytest.raises(DataError, match="shorter than one motion frame"):
        enc(torch.randn(1, 600), torch.tensor([600]))  # one 50 Hz frame -> int(1/50*30) == 0 frames


def _official_vocaset_frames(n_samples: int, fps: float, alignment: str) -> int:
    """The released FaceFormer/CodeTalker/MemoryTalker count: wav2vec2 CNN frames (kernels 10,3,3,3,3,2,2,
    strides 5,2,2,2,2,2,2), then int(S'/50*fps) (VOCASET) or floor(S'_even/2) (BIWI)."""
    n = n_samples
    for k, s in zip((10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2)):
        n = (n - k) // s + 1
    return int(n / 50 * fps) if alignment == "interpolate" else (n - n % 2) // 2


@pytest.mark.parametrize("kind", ["mel", "wav2vec2"])
@pytest.mark.parametrize(("fps", "alignment"), [(30, "interpolate"), (25, "pairs")])
def test_feature_rule_is_the_official_frame_count(kind, fps, alignment):
    """VOCASET / BIWI specs: the spec's rule, each encoder's output and the released formula agree."""
    spec = make_spec(fps, alignment)
    assert spec.frame_rule == "features"
    lengths = [19200, 16000, 9999, 20807, 4000, 5111]
    for n in lengths:
        assert spec.frames_for_samples(n) == _official_vocaset_frames(n, fps, alignment), n
    assert spec.frames_for_samples(19200) == (35 if fps == 30 else 29)  # 1.2 s: one short of 36 / 30
    torch.manual_seed(0)
    enc = build_audio_encoder(tiny_cfg(kind), spec).eval()
    audio = torch.randn(len(lengths), max(lengths))
    _, out_len = enc(audio, torch.tensor(lengths))
    per_frame = 2 if alignment == "pairs" else 1
    assert out_len.tolist() == [per_frame * spec.frames_for_samples(n) for n in lengths]


def test_sample_rule_gives_the_generator_frame_count():
    """SynthTalk specs: round(S * capture_fps / 16k) captured frames kept every stride-th -> ceil(n / stride),
    which the encoders use when no frame count is given."""
    spec = DatasetSpec(
        name="synth", fps=30, n_vertices=4, splits={}, train_subjects=("a",), capture_fps=60,
        frame_rule="samples",
    )
    assert spec.frames_for_samples(19200) == 36  # 1.2 s: 72 captured frames, [::2] -> 36
    assert spec.frames_for_samples(19200 + 267) == 37  # 73 captured frames -> 37
    assert spec.frames_for_samples(16000) == 30
    enc = build_audio_encoder(tiny_cfg("mel"), spec).eval()
    _, out_len = enc(torch.randn(2, 19467), torch.tensor([19200, 19467]))
    assert out_len.tolist() == [36, 37]
    _, given = enc(torch.randn(1, 19200), torch.tensor([19200]), torch.tensor([20]))
    assert given.tolist() == [20]  # an explicit count (training) still wins
    with pytest.raises(ValueError, match="frame_rule"):
        DatasetSpec(name="x", fps=30, n_vertices=4, splits={}, train_subjects=(), frame_rule="nope") \
            .frames_for_samples(16000)
