"""The one timing function (talkbench.speed) on a method that sleeps a known time per frame: the
latency, real-time factor and encoder share it reports follow from the sleeps (generous tolerances
against scheduler noise, tight enough to catch a formula off by the frame rate or the clip length),
and a real run logs the profile for the leaderboard's speed columns."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from torch import nn

from talkbench.audio.base import AudioEncoder
from talkbench.audio.config import AudioEncoderConfig
from talkbench.methods.base import Method, Stage
from talkbench.speed import SpeedProfile, measure, trainable_count

FPS = 25.0
ENCODER_S, DECODER_S = 0.002, 0.006  # seconds slept per frame: encoder, then the rest of predict


class _Clock:
    name, fps, audio_alignment, frame_rule = "sleepy", FPS, "interpolate", "samples"

    def frames_for_samples(self, n: int) -> int:
        return int(n / 16000 * FPS)


class SleepyEncoder(AudioEncoder):
    out_dim = 4

    def __init__(self):
        super().__init__(AudioEncoderConfig(kind="mel"), _Clock())
        self.cnn = nn.Linear(4, 4)  # "frozen": left out of every stage
        self.proj = nn.Linear(4, 4)

    def trainable_prefixes(self):
        return ("proj",)

    def forward(self, audio, audio_lengths, n_frames=None):
        frames = _Clock().frames_for_samples(int(audio_lengths[0]))
        time.sleep(ENCODER_S * frames)
        return torch.zeros(1, frames, 4), torch.tensor([frames])


class SleepyMethod(nn.Module):
    """predict: the encoder (ENCODER_S per frame), then DECODER_S per frame."""

    uses_speaker_id = False
    named_trainable = Method.named_trainable

    def __init__(self):
        super().__init__()
        self.audio = SleepyEncoder()
        self.head = nn.Linear(4, 3)

    @property
    def device(self):
        return torch.device("cpu")

    def stages(self):
        return [Stage("s1", 1, 1e-3, trainable=("audio.proj", "head"))]

    def predict(self, audio, template, condition=None):
        feats, lengths = self.audio(audio[None], torch.tensor([audio.shape[-1]]))
        frames = int(lengths[0])
        time.sleep(DECODER_S * frames)
        return template[None].expand(frames, -1, -1)


@pytest.fixture(scope="module")
def profile() -> SpeedProfile:
    audio = np.random.default_rng(0).normal(size=16000).astype(np.float32)  # 1 s, tiled to 2 s
    return measure(SleepyMethod(), audio, np.zeros((5, 3), np.float32), FPS, clip_s=2.0, repeats=2)


def test_latency_and_real_time_factor_follow_the_sleeps(profile):
    per_frame = ENCODER_S + DECODER_S
    assert profile.n_frames == 50 and profile.clip_s == 2.0
    # RTF: compute per audio second = per_frame x fps (0.2 here); off by fps (x25) or by the
    # clip length (x2) it would leave the band
    assert 0.9 * per_frame * FPS <= profile.rtf <= 1.5 * per_frame * FPS
    assert profile.ms_per_audio_s == pytest.approx(1000 * profile.rtf)
    # first frame: one frame of audio, so one frame's sleeps (8 ms), not a second's (200 ms)
    assert profile.first_chunk_s == pytest.approx(1 / FPS, abs=1 / 16000)
    assert 0.9 * per_frame <= profile.first_frame_s <= 4 * per_frame
    assert 0.15 <= profile.encoder_share <= 0.4  # 2 of 8 ms per frame
    assert profile.threads == torch.get_num_threads() and profile.device == "cpu"


def test_parameter_counts_tell_trainable_from_frozen(profile):
    total = 2 * (4 * 4 + 4) + (4 * 3 + 3)  # cnn and proj, head
    assert profile.params_total == total
    assert profile.params_trainable == total - 20  # the encoder's "cnn" trains in no stage
    assert trainable_count(SleepyMethod()) == 35


def test_metrics_are_the_logged_names(profile):
    m = profile.metrics()
    assert m["speed/rtf"] == profile.rtf and m["speed/first_frame_ms"] == 1000 * profile.first_frame_s
    assert {"speed/params_total", "speed/params_trainable", "speed/encoder_share", "speed/threads"} <= set(m)
    assert all(isinstance(v, float) and not math.isnan(v) for v in m.values())
