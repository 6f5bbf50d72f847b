"""CodeTalker hyperparameters (nested under the key ``codetalker`` in a run config), with every
stage and inference setting so that ``--set codetalker.<key>=...`` reaches it; presets override
the defaults per dataset."""

from __future__ import annotations

from dataclasses import dataclass, field

from talkbench.errors import ConfigError
from talkbench.methods.codetalker.incremental import REFRESH

CHOICES = {
    "pe_quirk": ("constant", "fixed"),
    "attn_scale_quirk": ("hidden", "head_dim"),
    "inference": ("exact", "fast", "incremental"),
    "incremental_refresh": REFRESH,
    "first_token": ("style", "mapped"),
    "vq_schedule": ("constant", "step", "cosine"),
    "val_conditions": ("all", "first"),
}


@dataclass
class CodeTalkerConfig:
    """Hyperparameters (preset key ``codetalker``). Defaults = VOCASET as released (spec §3)."""

    # stage 1 VQ-VAE
    hidden: int = 1024
    vq_layers: int = 6
    vq_heads: int = 8
    vq_ffn: int = 1536
    face_groups: int = 16  # H (BIWI 8)
    code_dim: int = 64  # C (BIWI 128)
    n_codes: int = 256
    kernel: int = 5
    io_linears: bool = False  # BIWI: True
    reverse_bias: bool = True  # BIWI: False
    pe_dropout: float = 0.1
    block_dropout: float = 0.0
    beta: float = 0.25
    quant_weight: float = 1.0
    pe_quirk: str = "constant"
    attn_scale_quirk: str = "hidden"
    # stage 2 predictor
    d_model: int = 1024
    n_heads: int = 4
    ffn: int = 2048
    n_layers: int = 6  # BIWI 12
    dropout: float = 0.1
    first_token: str = "style"  # inference's first token: style only (released) | vertice_map(0) + style
    motion_weight: float = 1.0
    reg_weight: float = 1.0
    # unit change of the offsets seen by the networks (1 = the dataset's unit, as released; 1000 =
    # metres to millimetres); losses are in these units. Millimetre-sized motion in metres sits at
    # Adam's step-noise level for the short schedules of the CPU presets.
    motion_scale: float = 1.0
    audio: dict = field(default_factory=lambda: {"kind": "wav2vec2"})
    # inference
    inference: str = "exact"  # exact: released quadratic loop | fast: cached predictor + windowed decode
    fast_window: int = 32
    # incremental: cached predictor + one-frame VQ decode against a cache (incremental.py); the cache
    # is rebuilt by a full prefix decode at prefix lengths 1, 2, 4, ... (doubling) | never | every step
    incremental_refresh: str = "doubling"
    # ... and at each of the first N steps (those frames decoded as `exact` does, O(N^2) once per clip:
    # a young cache is the stalest; trained SynthTalk models' LVE against exact: 3.0 % -> 1.9 % apart)
    incremental_exact_frames: int = 16
    batch_conditions: bool = True  # predict every training condition of a clip in one pass
    val_conditions: str = "all"  # unseen validation speakers: average over all training styles | first
    # optimisation
    vq_epochs: int = 200
    vq_lr: float = 1e-4
    vq_batch_size: int = 1
    vq_weight_decay: float = 0.01  # AdamW default, used by the released code
    vq_schedule: str = "step"  # BIWI: constant
    vq_step_size: int = 20
    vq_gamma: float = 0.5
    pred_epochs: int = 100
    pred_lr: float = 1e-4
    pred_batch_size: int = 1
    sampler: str = "bucketed"

    def validate(self) -> None:
        for key, allowed in CHOICES.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(
                    f"codetalker.{key} must be one of {', '.join(allowed)}, got '{getattr(self, key)}'"
                )
        if self.face_groups * self.code_dim != self.hidden and not self.io_linears:
            raise ConfigError(
                f"codetalker.face_groups x codetalker.code_dim ({self.face_groups} x {self.code_dim}) "
                f"must equal codetalker.hidden ({self.hidden}) unless codetalker.io_linears is true"
            )
        if not self.motion_scale > 0:
            raise ConfigError(f"codetalker.motion_scale must be > 0, got {self.motion_scale}")
        if self.fast_window < 1:
            raise ConfigError(f"codetalker.fast_window must be >= 1, got {self.fast_window}")
        if self.incremental_exact_frames < 0:
            raise ConfigError(
                f"codetalker.incremental_exact_frames must be >= 0, got {self.incremental_exact_frames}"
            )
