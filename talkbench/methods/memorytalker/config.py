"""MemoryTalker hyperparameters (nested under the key ``memorytalker`` in a run config).

Defaults are the released VOCASET values (spec §2.5, §3.4); presets override them per dataset.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from talkbench.audio.config import AudioEncoderConfig
from talkbench.errors import ConfigError


def _hubert_base() -> AudioEncoderConfig:
    # HuBERT-base as released: frozen CNN, SpecAugment p=0.05 span 10 stays on in train mode
    return AudioEncoderConfig(
        kind="hubert",
        name_or_path="facebook/hubert-base-ls960",
        pretrained=True,
        freeze_cnn=True,
        mask_time_prob=0.05,
        mask_time_length=10,
    )


@dataclass
class MemoryTalkerConfig:
    audio: AudioEncoderConfig = field(default_factory=_hubert_base)
    # -- memory / decoder (spec §2.2, §2.3) -----------------------------------------------------
    memory_slots: int = 32  # n; also the size of the "text logits" head (vocab_size in the release)
    feature_dim: int = 96  # c
    kappa: float = 16.0  # softmax scaling of key and value addressing
    n_heads: int = 4
    ffn_dim: int = 192
    n_layers: int = 1
    dropout: float = 0.1  # decoder layer and PPE dropout (PyTorch default as released)
    final_dropout: float = 0.1  # before the logits head (HuBERT's final_dropout)
    # text-logit head init: random (as released) | encoder (the phoneme head of the SynthTalk-pretrained
    # encoder, audio.kind synthtalk: the logits that address the memory start as phoneme posteriors)
    text_head_init: str = "random"
    motion_dropout: float = 0.0  # E_m dropout (0.1 in an older BIWI version)
    # -- style branch (spec §3.1) ---------------------------------------------------------------
    style_n_mels: int = 80
    style_channels: int = 128
    style_bank_size: int = 8
    style_kernel: int = 5
    style_subsample: tuple[int, ...] = (1, 2, 1, 2, 1, 2)
    style_dense_blocks: int = 6
    style_out_dim: int = 256
    # multiplies the dB log-mel before E_s; 1.0 = the release (raw dB, tens of units: at init f_s is
    # large, sigmoid saturates and w_s is O(100), far from the w = 1 the frozen decoder learned with)
    style_input_scale: float = 1.0
    # release: to_scale as initialised (xavier, no bias), so stage 2 starts from w_s of random sign and
    # size (SynthTalk preset, seeds 0-5: mean w_s -0.21, 1.06, -1.05, -3.1, -4.1, -8.7): the frozen
    # decoder first sees a negated or rescaled memory. unit: before training, to_scale is rescaled so
    # w_s averages 1 over the training clips (E_s does not train in stage 1: this is stage 2's start)
    style_weight_init: str = "release"
    # -- ablation switches ----------------------------------------------------------------------
    memory: bool = True  # False: no memory, no motion encoder; the decoder query is built from f_txt only
    stage2: bool = True  # False: memorizing only (the animating stage is absent)
    style_input: str = "audio"  # audio | none (the style encoder sees silence: a speaker-free control)
    # released stage 2 keeps frozen modules in train mode (SpecAugment, layerdrop, dropout stay on)
    frozen_train_mode: bool = True
    # -- losses (Eq 11, Eq 17; the release hard-codes lambda1 = lambda2 = 0.01) ----------------
    triplet_margin: float = 5.0  # README command (argparse default 1.0 since ff7d9da)
    w_velocity: float = 1.0
    w_mem: float = 0.01  # lambda1 on L_mem
    w_align: float = 0.01  # lambda1 on L_align
    w_lip: float = 0.01  # lambda2 on L_lip
    w_style: float = 0.01  # lambda2 on L_style
    # -- stages ---------------------------------------------------------------------------------
    memorizing_epochs: int = 100
    memorizing_lr: float = 1e-4
    memorizing_batch_size: int = 1
    animating_epochs: int = 100
    animating_lr: float = 5e-5
    animating_batch_size: int = 1
    grad_clip: float | None = None
    selection: str = "last"  # last (as released) | val (validation subjects, never test)

    def validate(self) -> None:
        """Raise ConfigError naming the option on an invalid value."""
        positive = (
            "memory_slots",
            "feature_dim",
            "n_heads",
            "ffn_dim",
            "n_layers",
            "style_channels",
            "style_out_dim",
            "memorizing_batch_size",
            "animating_batch_size",
        )
        for key in positive:
            if getattr(self, key) <= 0:
                raise ConfigError(f"memorytalker.{key} must be > 0, got {getattr(self, key)}")
        if self.feature_dim % self.n_heads:
            raise ConfigError(
                f"memorytalker.feature_dim ({self.feature_dim}) must be divisible by "
                f"memorytalker.n_heads ({self.n_heads})"
            )
        if self.style_input not in ("audio", "none"):
            raise ConfigError(f"memorytalker.style_input must be 'audio' or 'none', got '{self.style_input}'")
        if self.text_head_init not in ("random", "encoder"):
            raise ConfigError(
                f"memorytalker.text_head_init must be 'random' or 'encoder', got '{self.text_head_init}'"
            )
        if self.text_head_init == "encoder" and self.audio.kind != "synthtalk":
            raise ConfigError(
                "memorytalker.text_head_init 'encoder' needs memorytalker.audio.kind 'synthtalk' (the "
                f"encoder with a phoneme head), got '{self.audio.kind}'"
            )
        if self.style_weight_init not in ("release", "unit"):
            raise ConfigError(
                f"memorytalker.style_weight_init must be 'release' or 'unit', got '{self.style_weight_init}'"
            )
        if self.selection not in ("last", "val"):
            raise ConfigError(f"memorytalker.selection must be 'last' or 'val', got '{self.selection}'")
        for key in ("memorizing_epochs", "animating_epochs"):
            if getattr(self, key) < 0:
                raise ConfigError(f"memorytalker.{key} must be >= 0, got {getattr(self, key)}")
        for key in ("kappa", "triplet_margin", "w_velocity", "w_mem", "w_align", "w_lip", "w_style"):
            if getattr(self, key) < 0:
                raise ConfigError(f"memorytalker.{key} must be >= 0, got {getattr(self, key)}")
