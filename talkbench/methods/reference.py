"""Learning-free reference methods, the floor lines of every leaderboard.

- ``template``: the neutral template on every frame (zero motion).
- ``mean-motion``: the template plus the training set's mean displacement for the frame's phase
  (frame index mod the dataset's period), averaged over all training clips and frames of that phase.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from talkbench.datasets.batch import Batch
from talkbench.datasets.spec import DatasetSpec
from talkbench.errors import TalkbenchError
from talkbench.methods.base import Method, Stage


def _masked_mse(pred: torch.Tensor, batch: Batch) -> torch.Tensor:
    m = batch.mask[:, :, None, None].to(pred.dtype)
    sq = (pred - batch.vertices) ** 2 * m
    return sq.sum() / (m.sum() * pred.shape[2] * 3).clamp_min(1)


@dataclass
class TemplateConfig:
    """The template method has no hyperparameters."""


class TemplateMethod(Method):
    """Predicts the neutral template on every frame."""

    name = "template"
    Config = TemplateConfig
    uses_speaker_id = False

    def stages(self) -> list[Stage]:
        return []

    def predict_batch(self, batch: Batch) -> torch.Tensor:
        t = batch.vertices.shape[1]
        return batch.template[:, None].expand(-1, t, -1, -1)

    def loss(self, stage: str, batch: Batch) -> dict[str, torch.Tensor]:
        return {"loss": _masked_mse(self.predict_batch(batch), batch)}

    @torch.no_grad()
    def predict(
        self, audio: torch.Tensor, template: torch.Tensor, condition: int | None = None
    ) -> torch.Tensor:
        t = self.spec.frames_for_samples(int(audio.shape[-1]))  # the dataset's rule, as every method
        template = torch.as_tensor(template, dtype=torch.float32)
        return template[None].expand(t, -1, -1).clone()


@dataclass
class MeanMotionConfig:
    period: int | None = None  # frames per phase cycle; None = the dataset's period


class MeanMotionMethod(Method):
    """Template + the mean training displacement of the frame's phase (t mod period)."""

    name = "mean-motion"
    Config = MeanMotionConfig
    uses_speaker_id = False

    def __init__(self, config: MeanMotionConfig, spec: DatasetSpec):
        super().__init__(config, spec)
        period = config.period if config.period is not None else spec.period
        if period < 1:
            raise TalkbenchError(f"mean-motion.period must be >= 1, got {period}")
        self.period = int(period)
        # buffers, so checkpoints and state_dicts carry the statistics
        self.register_buffer("mean_offsets", torch.zeros(self.period, spec.n_vertices, 3))
        self.register_buffer("frames_per_phase", torch.zeros(self.period, dtype=torch.long))

    def stages(self) -> list[Stage]:
        return []

    def prepare(self, train_clips) -> None:
        """Accumulate per-phase displacement sums clip by clip (float64; never the corpus in RAM)."""
        v = self.spec.n_vertices
        sums = np.zeros((self.period, v, 3), np.float64)
        counts = np.zeros(self.period, np.int64)
        for clip in train_clips:
            verts = np.asarray(clip.vertices, dtype=np.float64)
            if verts.ndim != 3 or verts.shape[1:] != (v, 3):
                raise TalkbenchError(
                    f"mean-motion: clip {clip.name} has vertices {verts.shape}, expected (T, {v}, 3)"
                )
            disp = verts - np.asarray(clip.template, dtype=np.float64)[None]
            phase = np.arange(len(disp)) % self.period
            np.add.at(sums, phase, disp)
            counts += np.bincount(phase, minlength=self.period)
        if counts.sum() == 0:
            raise TalkbenchError("mean-motion: the training split has no frames to average")
        # a phase no clip reaches (clips shorter than the period) keeps zero displacement
        mean = sums / np.maximum(counts, 1)[:, None, None]
        self.mean_offsets.copy_(torch.from_numpy(mean.astype(np.float32)))
        self.frames_per_phase.copy_(torch.from_numpy(counts))

    def _check_prepared(self) -> None:
        if int(self.frames_per_phase.sum()) == 0:
            raise TalkbenchError(
                "mean-motion: no statistics yet; call prepare(train_clips) or load a checkpoint"
            )

    def predict_batch(self, batch: Batch) -> torch.Tensor:
        self._check_prepared()
        t = batch.vertices.shape[1]
        phase = torch.arange(t, device=self.mean_offsets.device) % self.period
        return batch.template[:, None] + self.mean_offsets[phase][None]

    def loss(self, stage: str, batch: Batch) -> dict[str, torch.Tensor]:
        return {"loss": _masked_mse(self.predict_batch(batch), batch)}

    @torch.no_grad()
    def predict(
        self, audio: torch.Tensor, template: torch.Tensor, condition: int | None = None
    ) -> torch.Tensor:
        self._check_prepared()
        t = self.spec.frames_for_samples(int(audio.shape[-1]))  # the dataset's rule, as every method
        template = torch.as_tensor(template, dtype=torch.float32, device=self.mean_offsets.device)
        phase = torch.arange(t, device=self.mean_offsets.device) % self.period
        return template[None] + self.mean_offsets[phase]
