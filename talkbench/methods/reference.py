"""Learning-free reference methods, the floor lines of every leaderboard.

- ``template``: the neutral template on every frame (zero motion).
- ``mean-motion``: the template plus the training set's mean displacement for the frame's phase
  (frame index mod the dataset's period), averaged over all training clips and frames of that phase.

Both predict blendshape weights too: the neutral is all-zero weights, and mean-motion's displacement
is then the mean weight vector of the phase.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from talkbench.datasets.batch import Batch
from talkbench.datasets.spec import DatasetSpec
from talkbench.datasets.targets import BLENDSHAPES, VERTICES
from talkbench.errors import TalkbenchError
from talkbench.methods.base import Method, Stage


def _masked_mse(pred: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Mean squared error over valid frames, of vertices (B, T, V, 3) or weights (B, T, K)."""
    target = batch.vertices if pred.ndim == 4 else batch.weights
    m = batch.mask.reshape(*batch.mask.shape, *([1] * (pred.ndim - 2))).to(pred.dtype)
    sq = (pred - target) ** 2 * m
    return sq.sum() / (m.sum() * pred[0, 0].numel()).clamp_min(1)


@dataclass
class TemplateConfig:
    """The template method has no hyperparameters."""


class TemplateMethod(Method):
    """Predicts the neutral template on every frame."""

    name = "template"
    Config = TemplateConfig
    uses_speaker_id = False
    targets = (VERTICES, BLENDSHAPES)
    mixture = "separate"  # on a mixture: its own per member (methods/mixture.py)

    def stages(self) -> list[Stage]:
        return []

    def predict_batch(self, batch: Batch) -> torch.Tensor:
        t = batch.vertices.shape[1]
        if self.target == BLENDSHAPES:
            return torch.zeros_like(batch.weights)
        return batch.template[:, None].expand(-1, t, -1, -1)

    def loss(self, stage: str, batch: Batch) -> dict[str, torch.Tensor]:
        return {"loss": _masked_mse(self.predict_batch(batch), batch)}

    @torch.no_grad()
    def predict(
        self, audio: torch.Tensor, template: torch.Tensor, condition: int | None = None
    ) -> torch.Tensor:
        t = self.spec.frames_for_samples(int(audio.shape[-1]))  # the dataset's rule, as every method
        template = torch.as_tensor(template, dtype=torch.float32)
        if self.target == BLENDSHAPES:
            return torch.zeros(t, len(self.spec.channels), device=template.device)
        return template[None].expand(t, -1, -1).clone()


@dataclass
class MeanMotionConfig:
    period: int | None = None  # frames per phase cycle; None = the dataset's period


class MeanMotionMethod(Method):
    """Template + the mean training displacement of the frame's phase (t mod period)."""

    name = "mean-motion"
    Config = MeanMotionConfig
    uses_speaker_id = False
    targets = (VERTICES, BLENDSHAPES)
    mixture = "separate"  # on a mixture: its own per member (methods/mixture.py)

    def __init__(self, config: MeanMotionConfig, spec: DatasetSpec):
        super().__init__(config, spec)
        period = config.period if config.period is not None else spec.period
        if period < 1:
            raise TalkbenchError(f"mean-motion.period must be >= 1, got {period}")
        self.period = int(period)
        # buffers, so checkpoints and state_dicts carry the statistics
        shape = (len(spec.channels),) if self.target == BLENDSHAPES else (spec.n_vertices, 3)
        self.register_buffer("mean_offsets", torch.zeros(self.period, *shape))
        self.register_buffer("frames_per_phase", torch.zeros(self.period, dtype=torch.long))

    def stages(self) -> list[Stage]:
        return []

    def prepare(self, train_clips) -> None:
        """Accumulate per-phase displacement sums clip by clip (float64; never the corpus in RAM)."""
        shape = tuple(self.mean_offsets.shape[1:])
        sums = np.zeros((self.period, *shape), np.float64)
        counts = np.zeros(self.period, np.int64)
        for clip in train_clips:
            what = "weights" if self.target == BLENDSHAPES else "vertices"
            disp = np.asarray(getattr(clip, what), dtype=np.float64)
            if disp.shape[1:] != shape:
                want = ", ".join(map(str, shape))
                raise TalkbenchError(
                    f"mean-motion: clip {clip.name} has {what} {disp.shape}, expected (T, {want})"
                )
            if self.target == VERTICES:  # a blendshape neutral is all-zero weights
                disp = disp - np.asarray(clip.template, np.float64)[None]
            phase = np.arange(len(disp)) % self.period
            np.add.at(sums, phase, disp)
            counts += np.bincount(phase, minlength=self.period)
        if counts.sum() == 0:
            raise TalkbenchError("mean-motion: the training split has no frames to average")
        # a phase no clip reaches (clips shorter than the period) keeps zero displacement
        mean = sums / np.maximum(counts, 1).reshape(-1, *([1] * len(shape)))
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
        if self.target == BLENDSHAPES:
            return self.mean_offsets[phase][None].expand(len(batch), -1, -1)
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
        if self.target == BLENDSHAPES:
            return self.mean_offsets[phase].clone()
        return template[None] + self.mean_offsets[phase]
