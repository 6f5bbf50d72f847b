"""CodeTalker-ND: CodeTalker whose quantiser draws each code from softmax(-||z - e||^2 / T) instead of
taking the nearest (the "Wild West" benchmark study's swapped quantizer.py; specs/stochastic-metrics.md
§5), a method that samples.

As the study ran it: temperature 2, one draw per token (k = 1), drawing on in stage-1 and stage-2
training as at test time (its quantiser's default ``sample=True``; ``nd_in_training=False`` draws at
test time only, a distinct config hash and so its own leaderboard row). Every quantisation draws, so
the released inference loop re-draws the whole prefix at each step, then once more for the output.

Decided where the sources are silent (spec: "not found"): stage 1 is retrained with the drawing
quantiser (the README swaps the file for the whole ND run); sample k of a clip draws from its own CPU
generator seeded ``sample_seed(run seed, clip, condition, k)``, one full inference per sample (a
batch of samples would round differently and flip draws near ties, so replays would not be
bit-identical); ``predict`` is sample seed 0, as FaceDiffuser's. Training draws from the global RNG
the engine seeds.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import torch

from talkbench.datasets.batch import Batch
from talkbench.errors import ConfigError
from talkbench.methods.base import sample_generator
from talkbench.methods.codetalker.config import CodeTalkerConfig
from talkbench.methods.codetalker.model import CodeTalker


@dataclass
class CodeTalkerNDConfig(CodeTalkerConfig):
    """CodeTalker's settings (preset key ``codetalker-nd``) plus the draw's."""

    nd_temperature: float = 2.0  # softmax(-d / T) over squared distances; -> 0 is the nearest code
    nd_in_training: bool = True  # draw in both training stages too (the study's default)

    def validate(self) -> None:
        super().validate()
        if not self.nd_temperature > 0:
            raise ConfigError(f"codetalker-nd.nd_temperature must be > 0, got {self.nd_temperature}")


class CodeTalkerND(CodeTalker):
    name: ClassVar[str] = "codetalker-nd"
    Config: ClassVar[type] = CodeTalkerNDConfig
    samples: ClassVar[bool] = True

    def __init__(self, config: CodeTalkerNDConfig, spec, **kwargs):
        super().__init__(config, spec, **kwargs)
        self.vqvae.quantizer.temperature = float(config.nd_temperature)

    @contextmanager
    def _drawing(self, on: bool, generator: torch.Generator | None = None) -> Iterator[None]:
        q = self.vqvae.quantizer
        before = q.sampling, q.generator
        q.sampling, q.generator = on, generator
        try:
            yield
        finally:
            q.sampling, q.generator = before

    def loss(self, stage: str, batch: Batch) -> dict[str, torch.Tensor]:
        with self._drawing(self.config.nd_in_training):
            return super().loss(stage, batch)

    def validation_loss(self, stage: str, batch: Batch) -> dict[str, torch.Tensor]:
        with self._drawing(self.config.nd_in_training):
            return super().validation_loss(stage, batch)

    @torch.no_grad()
    def predict_samples(
        self, audio: torch.Tensor, template: torch.Tensor, condition: int | None, seeds: Sequence[int]
    ) -> torch.Tensor:
        if len(seeds) == 0:
            raise ValueError("predict_samples needs at least one seed")
        out = []
        for seed in seeds:
            with self._drawing(True, sample_generator(seed)):
                out.append(super().predict_conditions(audio, template, [condition]))
        return torch.cat(out)

    @torch.no_grad()
    def predict_conditions(
        self, audio: torch.Tensor, template: torch.Tensor, conditions: Sequence[int | None],
        mode: str | None = None,
    ) -> torch.Tensor:
        """One sample (seed 0) per condition, so deterministic metrics apply to it too."""
        if len(conditions) == 0:
            raise ValueError("predict_conditions needs at least one condition")
        out = []
        for c in conditions:
            with self._drawing(True, sample_generator(0)):
                out.append(super().predict_conditions(audio, template, [c], mode))
        return torch.cat(out)
