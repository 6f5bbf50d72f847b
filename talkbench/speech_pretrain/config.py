"""Settings of one pretraining (data, architecture, optimisation) and the cache key they hash to."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields

from talkbench.audio.config import AudioEncoderConfig
from talkbench.errors import ConfigError


def _arch() -> AudioEncoderConfig:
    # the architecture of the methods' synthtalk presets (audio.kind: mel), SpecAugment as they use it
    return AudioEncoderConfig(kind="mel", pretrained=False, n_mels=80, conv_dim=128, d_model=128,
                              n_layers=2, n_heads=4, dropout=0.1, mask_time_prob=0.05, mask_time_length=5)


@dataclass
class PretrainConfig:
    seed: int = 0
    train_speakers: int = 32
    heldout_speakers: int = 8
    sentences: int = 10  # per training speaker
    heldout_sentences: int = 6
    words: tuple[int, int] = (3, 7)
    epochs: int = 6
    batch_size: int = 8
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    arch: AudioEncoderConfig = field(default_factory=_arch)

    def validate(self) -> None:
        for name in ("train_speakers", "heldout_speakers", "sentences", "heldout_sentences", "epochs",
                     "batch_size"):
            if int(getattr(self, name)) < 1:
                value = getattr(self, name)
                raise ConfigError(f"pretrain-encoder {name}: expected a positive integer, got {value!r}")
        lo, hi = self.words
        if not 1 <= lo <= hi:
            raise ConfigError(f"pretrain-encoder words: expected 1 <= min <= max, got {self.words!r}")
        if self.lr <= 0:
            raise ConfigError(f"pretrain-encoder lr: expected a positive number, got {self.lr!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["words"] = list(self.words)
        d["arch"] = {k: d["arch"][k] for k in (*ARCH_KEYS,)}
        return d

    def cache_key(self) -> str:
        """Hash of the data (settings and generator code), this package's code and the settings."""
        from talkbench.datasets.synthtalk.generate import GENERATOR_VERSION, source_digest

        from .encoder import code_digest

        blob = json.dumps({"config": self.to_dict(), "generator": [GENERATOR_VERSION, source_digest()],
                           "code": code_digest()}, sort_keys=True)
        return f"seed{self.seed}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


# every architecture and masking field that shapes the weights
ARCH_KEYS = ("n_mels", "conv_dim", "d_model", "n_layers", "n_heads", "dropout", "mask_time_prob",
             "mask_time_length")

PRESETS = {
    "default": {},
    # seconds on a CPU: for tests and smoke runs, not for use by methods
    "tiny": {"train_speakers": 3, "heldout_speakers": 2, "sentences": 3, "heldout_sentences": 1,
             "words": (2, 3), "epochs": 3, "batch_size": 3, "warmup_steps": 2,
             "arch": AudioEncoderConfig(kind="mel", pretrained=False, n_mels=40, conv_dim=32, d_model=32,
                                        n_layers=1, n_heads=2, dropout=0.0, mask_time_prob=0.05,
                                        mask_time_length=5)},
}


def preset_config(name: str, **overrides) -> PretrainConfig:
    if name not in PRESETS:
        raise ConfigError(f"pretrain-encoder preset: unknown {name!r}, expected one of {sorted(PRESETS)}")
    known = {f.name for f in fields(PretrainConfig)}
    bad = sorted(set(overrides) - known)
    if bad:
        raise ConfigError(f"pretrain-encoder: unknown setting(s) {bad}, expected some of {sorted(known)}")
    cfg = PretrainConfig(**{**PRESETS[name], **overrides})
    cfg.validate()
    return cfg
