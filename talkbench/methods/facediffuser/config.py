"""FaceDiffuser hyperparameters (specs/facediffuser.md §2, §4, §5). Defaults are the released VOCASET
settings (latent and GRU 256, T = 1000); the BIWI release uses 512 / 512 and T = 500."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from talkbench.audio.config import AudioEncoderConfig
from talkbench.errors import ConfigError

HUBERT_BASE = "facebook/hubert-base-ls960"
LICENCE = (
    "CC BY-NC 4.0 (FaceDiffuser, Stan et al. 2023): "
    "the released code and checkpoints are non-commercial"
)
# sampler ids (recorded with every result): the released full ancestral chain is the reference
_SAMPLER = re.compile(r"^(ancestral|ddim-(?P<k>\d+)|trunc-(?P<skip>\d+))$")


def _hubert() -> AudioEncoderConfig:
    # the release freezes the CNN, the feature projection and transformer layers 0 and 1
    return AudioEncoderConfig(kind="hubert", name_or_path=HUBERT_BASE, frozen_layers=2)


@dataclass
class FaceDiffuserConfig:
    """``sampler``: ``ancestral`` (the release's ``p_sample_loop`` over all ``diff_steps``),
    ``ddim-K`` (K respaced steps, ``eta`` 0 = deterministic given x_T) or ``trunc-k`` (ProbTalk3D's
    ``skip_timesteps=k`` DDIM chain from t = T - k - 1, eta 0: only to reproduce its numbers)."""

    latent_dim: int = 256  # 512 BIWI
    gru_dim: int = 256  # 512 BIWI
    gru_layers: int = 2
    gru_dropout: float = 0.3
    diff_steps: int = 1000  # 500 for the released BIWI weights; fixes time_mlp's width
    loss: Literal["huber", "mse"] = "huber"  # the release's HuberLoss (delta 1); mse as a variant
    sampler: str = "ancestral"
    eta: float = 0.0
    # the N samples of a clip as one batch (equal to one at a time up to float rounding: the GRU's and
    # the Conv1d's kernels round differently per batch size); False: one at a time, so a sample is
    # bit-identical whatever N and the order of the seeds
    batch_samples: bool = True
    # the single stage: Adam 1e-4, batch 1, the last epoch (the release tests its max_epoch file)
    epochs: int = 50
    lr: float = 1e-4
    batch_size: int = 1
    batch_sampler: Literal["sequential", "bucketed"] = "sequential"
    selection: Literal["val", "last"] = "last"
    audio: AudioEncoderConfig = field(default_factory=_hubert)

    def __post_init__(self) -> None:
        if isinstance(self.audio, dict):
            self.audio = AudioEncoderConfig(**self.audio)
        if self.diff_steps < 2:
            raise ConfigError(f"facediffuser.diff_steps {self.diff_steps}: expected at least 2")
        self.sampler_steps()  # validates
        if not 0.0 <= self.eta <= 1.0:
            raise ConfigError(f"facediffuser.eta {self.eta}: expected 0..1")
        for key, allowed in (("loss", ("huber", "mse")), ("batch_sampler", ("sequential", "bucketed")),
                             ("selection", ("val", "last"))):
            if getattr(self, key) not in allowed:
                raise ConfigError(f"facediffuser.{key} '{getattr(self, key)}', expected one of {allowed}")

    def sampler_steps(self) -> tuple[str, int]:
        """(kind, K) of ``sampler``: ancestral -> diff_steps; ddim-K -> K; trunc-k -> the skip k."""
        m = _SAMPLER.match(self.sampler)
        if m is None:
            raise ConfigError(
                f"facediffuser.sampler '{self.sampler}', expected 'ancestral', 'ddim-K' or 'trunc-k'"
            )
        if m["k"] is not None:
            k = int(m["k"])
            if not 1 <= k <= self.diff_steps:
                raise ConfigError(f"facediffuser.sampler '{self.sampler}': K must be 1..{self.diff_steps}")
            return "ddim", k
        if m["skip"] is not None:
            k = int(m["skip"])
            if not 0 <= k < self.diff_steps:
                raise ConfigError(
                    f"facediffuser.sampler '{self.sampler}': k must be 0..{self.diff_steps - 1}"
                )
            return "trunc", k
        return "ancestral", self.diff_steps

    @property
    def sampler_id(self) -> str:
        """What produced the samples, e.g. ``ancestral-1000``, ``ddim-50-eta0``, ``trunc-900``."""
        kind, k = self.sampler_steps()
        if kind == "ancestral":
            return f"ancestral-{self.diff_steps}"
        if kind == "ddim":
            return f"ddim-{k}-eta{self.eta:g}"
        return f"trunc-{k}"
