"""SelfTalk hyperparameters (specs/selftalk.md), with every stage setting so ``--set selftalk.epochs=``
works. Defaults are the released VOCASET settings."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from talkbench.audio.config import AudioEncoderConfig
from talkbench.errors import ConfigError

XLSR_ENGLISH = "jonatasgrosman/wav2vec2-large-xlsr-53-english"
LICENCE = "CC BY-NC 4.0 (Psyche AI 2023): the released code and checkpoints are non-commercial"


def _xlsr() -> AudioEncoderConfig:
    return AudioEncoderConfig(kind="wav2vec2", name_or_path=XLSR_ENGLISH)


@dataclass
class SelfTalkConfig:
    """``audio``: the trainable encoder (its CNN frozen). ``recognizer``: the frozen lip-reading
    target (the same checkpoint with its CTC head in the release); None means "the same as audio".
    The interpreter's width is the recognizer's hidden size (1024 for xlsr-53), since its features
    are compared with the recognizer's; the CTC vocabulary is the recognizer's (33 tokens)."""

    feature_dim: int = 512  # 512 VOCASET, 1024 BIWI
    n_heads: int = 4
    ffn_mult: int = 2
    dropout: float = 0.1  # the decoder layer's (nn.TransformerDecoderLayer default)
    # the interpreter: nn.Transformer defaults of the release (6 + 6 layers, 8 heads, FFN 2048)
    interpreter_heads: int = 8
    interpreter_layers: int = 6
    interpreter_ffn: int = 2048
    interpreter_dropout: float = 0.1
    # loss weights (main.py): vertices, velocity, lip features, CTC
    w_vertices: float = 1000.0
    w_velocity: float = 1000.0
    w_features: float = 0.001
    w_ctc: float = 0.0001
    # CTC targets: the recognizer's greedy transcript decoded to text and tokenised again, which
    # strips the word delimiter at both ends; its id in xlsr-53-english's 33-token vocabulary is 4
    # [inferred: <pad> <s> </s> <unk> then "|", as wav2vec2 vocabularies are laid out; not verified]
    ctc_delimiter: int | None = 4
    # the single stage: Adam 1e-4, batch 1, the last of range(max_epoch + 1) epochs
    epochs: int = 100
    lr: float = 1e-4
    batch_size: int = 1
    sampler: Literal["sequential", "bucketed"] = "sequential"
    selection: Literal["val", "last"] = "last"
    audio: AudioEncoderConfig = field(default_factory=_xlsr)
    recognizer: AudioEncoderConfig | None = None
    # logged with the run where a preset departs from the release's protocol (BIWI); not identity
    protocol_note: str = field(default="", metadata={"identity": False})

    def __post_init__(self) -> None:
        if isinstance(self.audio, dict):
            self.audio = AudioEncoderConfig(**self.audio)
        if isinstance(self.recognizer, dict):
            self.recognizer = AudioEncoderConfig(**self.recognizer)
        if self.feature_dim % self.n_heads:
            raise ConfigError(
                f"selftalk.feature_dim ({self.feature_dim}) must be divisible by selftalk.n_heads "
                f"({self.n_heads})"
            )
        for key, allowed in (("sampler", ("sequential", "bucketed")), ("selection", ("val", "last"))):
            if getattr(self, key) not in allowed:
                raise ConfigError(f"selftalk.{key} '{getattr(self, key)}', expected one of {allowed}")

    def recognizer_config(self) -> AudioEncoderConfig:
        """The recognizer's encoder settings: frozen whole, no feature cache needed (it runs once per
        clip per step on the raw 50 Hz features; its CNN is cached like any frozen CNN)."""
        base = self.recognizer if self.recognizer is not None else self.audio
        return dataclasses.replace(base)
