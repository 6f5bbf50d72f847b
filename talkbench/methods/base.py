"""The Method interface: a method is an nn.Module with a Config, ordered Stages, losses and predict()."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from talkbench.datasets.batch import Batch
from talkbench.datasets.spec import DatasetSpec, MixtureSpec
from talkbench.datasets.targets import VERTICES
from talkbench.errors import TalkbenchError


@dataclass
class Stage:
    """One training stage.

    ``trainable`` lists parameter-name prefixes that train in this stage (``("*",)`` = all); every
    other parameter is frozen (requires_grad False) for the stage. ``sampler`` is one of
    ``sequential``, ``bucketed``, ``triplet``. ``epochs == 0`` skips the stage.
    """

    name: str
    epochs: int
    lr: float
    trainable: tuple[str, ...] = ("*",)
    sampler: str = "bucketed"
    batch_size: int = 1
    optimizer: str = "adam"  # adam | adamw
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: str = "constant"  # constant | step | cosine
    step_size: int = 1
    gamma: float = 1.0
    grad_clip: float | None = None
    # "val": keep the epoch with the lowest validation loss; "last": keep the last epoch
    selection: str = "last"
    # on a mixture: member -> passes over its training clips per epoch (default 1), each pass also
    # multiplying its draw weight, as concatenating the dataset that many times does (UniTalker's
    # per-dataset duplication); ignored on one dataset
    repeats: dict[str, int] = field(default_factory=dict)


@dataclass
class Diagnostic:
    """A method's own look at its trained model, logged at evaluation beside the metrics: ``content``
    (JSON-able) as the artifact ``eval/<name>.json``, ``metrics`` as ``diagnostic/<key>``."""

    name: str
    content: dict
    metrics: dict[str, float] = field(default_factory=dict)


def output_target(method: type, spec: DatasetSpec) -> str:
    """What ``method`` predicts on ``spec``'s dataset: its target if the method can produce it, else
    vertices; an error when it can produce neither."""
    target = getattr(spec, "target", VERTICES)
    if target in method.targets:
        return target
    if VERTICES in method.targets and spec.n_vertices > 0:
        return VERTICES
    raise TalkbenchError(
        f"method '{method.name}' predicts {', '.join(method.targets)}; dataset '{spec.name}' gives {target}"
        + (" without meshes" if spec.n_vertices == 0 else "")
    )


class Method(nn.Module):
    """Base class of every method.

    Subclasses set ``name``, ``Config`` (a dataclass), ``uses_speaker_id``, and implement
    ``stages``, ``loss`` and ``predict`` (``predict_conditions`` loops over it unless overridden
    where conditions batch exactly). The engine owns loops, devices, precision and checkpoints.

    ``targets`` lists what it can predict (datasets/targets.py). Built on a dataset, it predicts
    ``self.target``: the dataset's target when it can produce it, else vertices (a vertex method on a
    blendshape dataset animates its meshes). Predicting blendshapes, ``predict`` returns weights
    (T, K) in ``spec.channels`` order and ``predict_conditions`` (C, T, K).
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type] = type(None)
    uses_speaker_id: ClassVar[bool] = False
    # presets this method ships (file stems under talkbench/presets/<name>/)
    presets: ClassVar[tuple[str, ...]] = ("paper", "synthtalk", "tiny")
    # True for methods that draw a different animation per noise seed (FaceDiffuser); scored with
    # N samples per clip (specs/stochastic-metrics.md), deterministic ones with N = 1
    samples: ClassVar[bool] = False
    targets: ClassVar[tuple[str, ...]] = (VERTICES,)
    # how it trains on a mixture of datasets (datasets/mixture.py, methods/mixture.py): "heads" = one
    # model with a head per member, built from MixtureSpec.members, each batch routed by Batch.dataset
    # and ``member``; "separate" = learning-free, its statistics per member; None = one dataset only
    mixture: ClassVar[str | None] = None

    def __init__(self, config, spec: DatasetSpec | MixtureSpec):
        super().__init__()
        self.config = config
        self.spec = spec
        # of a mixture: each member's (``member`` sets spec and target to the member's)
        self.target = None if isinstance(spec, MixtureSpec) else output_target(type(self), spec)

    @contextlib.contextmanager
    def member(self, name: str | None) -> Iterator[Method]:
        """Within, the method acts on mixture member ``name``: its spec, target, head and speaker
        conditions (predict and loss as on that dataset alone). None, or a method on one dataset:
        nothing changes. Methods with ``mixture`` set override it."""
        if name is not None and not isinstance(self.spec, MixtureSpec):
            raise TalkbenchError(
                f"method '{self.name}' was built on one dataset, not on a mixture with '{name}'"
            )
        yield self

    # -- training -------------------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        raise NotImplementedError

    def prepare(self, train_clips) -> None:
        """Called once before the first stage with the training clips (an iterable of Clip).

        Learning-free methods compute their statistics here; most methods do nothing.
        """

    def begin_stage(self, stage: Stage) -> None:
        """Called when a stage starts (after freezing), e.g. to load a frozen sub-model's state."""

    def loss(self, stage: str, batch: Batch) -> dict[str, torch.Tensor]:
        """Losses for one batch: a dict with a scalar ``loss`` plus named components (all logged)."""
        raise NotImplementedError

    def validation_loss(self, stage: str, batch: Batch) -> dict[str, torch.Tensor]:
        """Loss used for validation and model selection; defaults to ``loss`` in eval mode."""
        return self.loss(stage, batch)

    # -- inference ------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(
        self, audio: torch.Tensor, template: torch.Tensor, condition: int | None = None
    ) -> torch.Tensor:
        """Animate one clip: audio (S,) float32 at 16 kHz, template (V, 3) -> vertices (T, V, 3).

        ``condition`` is a training-speaker index for methods with ``uses_speaker_id``. The frame
        count is the one the audio's length gives at the dataset's fps (the official rule).
        """
        raise NotImplementedError

    @torch.no_grad()
    def predict_conditions(
        self, audio: torch.Tensor, template: torch.Tensor, conditions: Sequence[int | None]
    ) -> torch.Tensor:
        """Animate one clip once per condition: audio (S,), template (V, 3) -> (C, T, V, 3).

        The default loops over ``predict``; methods whose conditions batch exactly override it.
        The pipeline calls this once per clip, so no method needs to cache predictions.
        """
        if len(conditions) == 0:
            raise ValueError("predict_conditions needs at least one condition (None for audio-only)")
        return torch.stack([self.predict(audio, template, c) for c in conditions])

    @torch.no_grad()
    def predict_samples(
        self, audio: torch.Tensor, template: torch.Tensor, condition: int | None, seeds: Sequence[int]
    ) -> torch.Tensor:
        """Animate one clip once per seed: audio (S,), template (V, 3) -> (N, T, V, 3).

        Sample k depends on ``seeds[k]`` alone (a generator per sample, see :func:`sample_seed`), never
        on N, the order of the seeds or the batch. A deterministic method predicts once and returns
        that prediction N times as a view (no N-fold cost); scoring asks it for one seed.
        """
        if len(seeds) == 0:
            raise ValueError("predict_samples needs at least one seed")
        one = self.predict(audio, template, condition)
        return one[None].expand(len(seeds), *one.shape)

    @torch.no_grad()
    def predict_condition_samples(
        self,
        audio: torch.Tensor,
        template: torch.Tensor,
        conditions: Sequence[int | None],
        seeds: Sequence[Sequence[int]],
    ) -> torch.Tensor:
        """``predict_samples`` under each condition with its seeds (the same N each): (C, N, T, V, 3).
        The default loops; methods override it to encode the audio once for all conditions."""
        return torch.stack([self.predict_samples(audio, template, c, s) for c, s in zip(conditions, seeds)])

    def diagnostics(self, train_clips, eval_clips) -> list[Diagnostic]:
        """Method-specific diagnostics of the trained model (e.g. MemoryTalker's speaker retrieval by
        style), computed after the evaluation from the training and evaluation clips (iterables of
        Clip, loaded only if iterated); none by default."""
        return []

    # -- helpers --------------------------------------------------------------------------------
    def named_trainable(self, stage: Stage) -> Iterator[tuple[str, nn.Parameter]]:
        for name, p in self.named_parameters():
            if any(pref == "*" or name.startswith(pref) for pref in stage.trainable):
                yield name, p

    def parameter_counts(self) -> dict[str, int]:
        """Parameter counts per top-level child module plus the total."""
        counts = {name: sum(p.numel() for p in m.parameters()) for name, m in self.named_children()}
        counts["total"] = sum(p.numel() for p in self.parameters())
        return counts

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")


def sample_seed(run_seed: int, clip: str, condition: int | str | None, index: int) -> int:
    """The seed of sample ``index`` of ``clip`` under ``condition`` in a run seeded ``run_seed``.

    A hash (the first 8 bytes of SHA-256, as a non-negative int63) of the four values, so a sample's
    seed does not depend on which clips, conditions or other samples were drawn before it, on N or
    on the batch (the reference codes seed once per script, which makes sample k depend on clip order).
    """
    key = f"{int(run_seed)}\x1f{clip}\x1f{'' if condition is None else condition}\x1f{int(index)}"
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") >> 1


def sample_seeds(run_seed: int, clip: str, condition: int | str | None, n: int) -> tuple[int, ...]:
    """The seeds of samples 0..n-1 of ``clip`` under ``condition`` (:func:`sample_seed` each)."""
    return tuple(sample_seed(run_seed, clip, condition, k) for k in range(n))


def sample_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A local generator for one sample (global RNG state is never used for sampling)."""
    return torch.Generator(device=device).manual_seed(int(seed))
