"""Build the encoder a config names, for a dataset's clock (its fps and audio alignment)."""

from __future__ import annotations

from talkbench.audio.base import AudioEncoder, MotionClock
from talkbench.audio.config import KINDS, AudioEncoderConfig
from talkbench.errors import ConfigError


def encoder_class(kind: str) -> type[AudioEncoder]:
    # imported on demand: the mel and SynthTalk encoders never load transformers
    if kind == "mel":
        from talkbench.audio.mel import MelEncoder as cls
    elif kind == "wav2vec2":
        from talkbench.audio.wav2vec2 import Wav2Vec2Encoder as cls
    elif kind == "hubert":
        from talkbench.audio.hubert import HubertEncoder as cls
    elif kind == "wavlm":
        from talkbench.audio.wavlm import WavLMEncoder as cls
    elif kind == "synthtalk":
        from talkbench.audio.synthtalk import SynthTalkEncoder as cls
    else:
        raise ConfigError(f"audio.kind '{kind}' is unknown, expected one of: {', '.join(KINDS)}")
    return cls


def build_audio_encoder(cfg: AudioEncoderConfig, spec: MotionClock) -> AudioEncoder:
    if spec.audio_alignment not in ("interpolate", "pairs"):
        raise ConfigError(
            f"dataset '{spec.name}': audio_alignment '{spec.audio_alignment}', "
            "expected 'interpolate' or 'pairs'"
        )
    return encoder_class(cfg.kind)(cfg, spec)
