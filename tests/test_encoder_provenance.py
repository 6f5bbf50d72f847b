"""Speech-encoder provenance (audio/provenance.py): what a run logs about the encoder it predicted with."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from talkbench.audio.config import AudioEncoderConfig, encoder_name
from talkbench.audio.provenance import encoder_provenance, main_encoder
from talkbench.methods.faceformer import FaceFormer, FaceFormerConfig
from talkbench.speed import measure
from tests.test_audio_encoders import TINY_HF
from tests.test_faceformer import TINY_MEL, make_spec


def _faceformer(audio: AudioEncoderConfig) -> FaceFormer:
    torch.manual_seed(0)
    return FaceFormer(FaceFormerConfig(feature_dim=16, dropout=0.0, audio=audio), make_spec())


def test_a_hugging_face_encoder_names_its_checkpoint_digest_and_frozen_cnn():
    audio = AudioEncoderConfig(kind="wav2vec2", pretrained=False, hf_overrides=dict(TINY_HF))
    model = _faceformer(audio)
    prov = encoder_provenance(model)
    assert main_encoder(model) is model.audio
    assert prov["name"] == "wav2vec2: facebook/wav2vec2-base-960h (random init)"
    assert prov["kind"] == "wav2vec2" and prov["pretrained"] == "False"
    assert "feature_extractor" in prov["frozen"] and prov["frozen_digest"] != "-"
    # the frozen digest names the checkpoint: training the rest leaves it, the weights digest moves
    with torch.no_grad():
        frozen = set(model.audio.frozen_parameters())
        next(p for n, p in model.audio.named_parameters() if n not in frozen).add_(1.0)
    again = encoder_provenance(model)
    assert again["frozen_digest"] == prov["frozen_digest"]
    assert again["weights_digest"] != prov["weights_digest"]


def test_a_mel_encoder_trains_with_the_method():
    prov = encoder_provenance(_faceformer(dataclasses.replace(TINY_MEL)))
    assert prov["name"] == "mel" and prov["checkpoint"] == "-" and prov["frozen"].startswith("none")
    assert encoder_name("hubert", "x/y", True) == "hubert: x/y"


def test_the_timing_function_runs_a_real_method():
    model = _faceformer(dataclasses.replace(TINY_MEL))
    audio = np.random.default_rng(0).normal(size=8000).astype(np.float32)
    prof = measure(model, audio, np.zeros((12, 3), np.float32), 30.0, condition=0, clip_s=1.0, repeats=1)
    assert abs(prof.n_frames - 30) <= 1 and prof.rtf > 0 and 0 < prof.encoder_share < 1
    assert prof.first_chunk_s > 0 and prof.params_trainable == prof.params_total  # mel: nothing frozen
