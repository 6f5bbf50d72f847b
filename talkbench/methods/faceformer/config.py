"""FaceFormer hyperparameters (specs/faceformer.md), including every stage setting so that
``--set faceformer.epochs=...`` works."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from talkbench.audio.config import AudioEncoderConfig
from talkbench.errors import ConfigError


@dataclass
class FaceFormerConfig:
    """Defaults are the released VOCASET settings (spec §3, §5).

    ``train_mode``: ``autoregressive`` is what the released ``main.py`` trains with (rollout with
    gradients through every step); ``teacher_forcing`` feeds the shifted ground truth (faster).
    ``ar_cache``: run the autoregressive rollout with the key/value cache instead of re-running the
    whole prefix at every step; with dropout off its loss and gradients equal the plain rollout's.
    ``first_token``: ``released`` keeps the asymmetry of §5.1/§5.2 (teacher forcing starts from
    vertice_map(0) + style, the rollout from style alone); ``consistent`` starts both from
    vertice_map(0) + style.
    """

    feature_dim: int = 64  # d: 64 VOCASET, 128 BIWI
    n_heads: int = 4
    n_layers: int = 1
    ffn_mult: int = 2  # FFN width = ffn_mult * d
    dropout: float = 0.1
    period: int | None = None  # PPE / ALiBi period; None = the dataset's (30 VOCASET, 25 BIWI)
    first_token: Literal["released", "consistent"] = "released"
    train_mode: Literal["autoregressive", "teacher_forcing"] = "autoregressive"
    ar_cache: bool = False
    # the single training stage
    epochs: int = 100  # the released loop is range(max_epoch + 1): 101 epochs
    lr: float = 1e-4
    batch_size: int = 1
    sampler: Literal["sequential", "bucketed"] = "sequential"
    schedule: Literal["constant", "cosine"] = "constant"  # released: constant
    grad_clip: float | None = None
    selection: Literal["val", "last"] = "last"  # released: no model selection, last epoch
    audio: AudioEncoderConfig = field(default_factory=AudioEncoderConfig)

    def __post_init__(self) -> None:
        if isinstance(self.audio, dict):
            self.audio = AudioEncoderConfig(**self.audio)
        if self.feature_dim % self.n_heads:
            raise ConfigError(
                f"faceformer.feature_dim ({self.feature_dim}) must be divisible by faceformer.n_heads "
                f"({self.n_heads})"
            )
        for key, allowed in (
            ("first_token", ("released", "consistent")),
            ("train_mode", ("autoregressive", "teacher_forcing")),
            ("sampler", ("sequential", "bucketed")),
            ("schedule", ("constant", "cosine")),
            ("selection", ("val", "last")),
        ):
            if getattr(self, key) not in allowed:
                raise ConfigError(f"faceformer.{key} '{getattr(self, key)}', expected one of {allowed}")
