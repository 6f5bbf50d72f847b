"""Methods on a mixture of datasets (datasets/mixture.py): built by ``build``, by what ``Method.mixture``
declares.

- ``"heads"``: the class takes the MixtureSpec itself (one head per member: FaceFormer's motion maps).
- ``"separate"``: a learning-free method (template, mean-motion) as :class:`PerMember`, one instance
  per member; nothing is shared, so its scores on each member equal its scores trained on that member.
- None: refused with one error naming the method and the datasets.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from talkbench.datasets.batch import Batch
from talkbench.datasets.spec import DatasetSpec, MixtureSpec
from talkbench.errors import ConfigError, TalkbenchError
from talkbench.methods.base import Method, Stage


def build(cls: type[Method], config, spec: DatasetSpec | MixtureSpec) -> Method:
    """``cls(config, spec)``; on a mixture as ``cls.mixture`` says (see the module docstring)."""
    if isinstance(spec, MixtureSpec):
        check(cls, list(spec.members))
        if cls.mixture == "separate":
            return PerMember(cls, config, spec)
    return cls(config, spec)


def check(cls: type[Method], members: Sequence[str]) -> None:
    """ConfigError when ``cls`` cannot train on a mixture of ``members`` (one dataset always passes)."""
    if len(members) < 2 or cls.mixture in ("heads", "separate"):
        return
    from talkbench.registry import METHODS  # late: the registry imports the methods

    able = [n for n in METHODS.names() if METHODS.static_attr(n, "mixture") in ("heads", "separate")]
    raise ConfigError(
        f"method '{cls.name}' cannot train on a mixture of datasets ({', '.join(members)}): it has "
        f"no head per dataset. Train it on one of them, or use a method that takes mixtures "
        f"({', '.join(able) or 'none installed'})"
    )


class MemberHeads:
    """``member`` of a method with ``mixture = "heads"`` (FaceFormer, UniTalker): built on a mixture
    (``mixture_spec`` set), ``_use(name)`` points its spec, target and head at the member within, and
    back on leaving; on one dataset, Method's ``member``. Put it before Method in the bases."""

    mixture_spec: MixtureSpec | None = None
    _active: str | None = None

    def _use(self, member: str | None) -> None:
        raise NotImplementedError

    @contextlib.contextmanager
    def member(self, name: str | None) -> Iterator[Method]:
        if name is None or self.mixture_spec is None:
            with super().member(name):
                yield self
            return
        previous = self._active
        self._use(name)
        try:
            yield self
        finally:
            self._use(previous)


class PerMember(Method):
    """A learning-free method on a mixture: one instance per member in ``members`` (a ModuleDict, so
    checkpoints carry every member's statistics); batches and predictions go to the member's."""

    def __init__(self, cls: type[Method], config, spec: MixtureSpec):
        super().__init__(config, spec)
        self.name = cls.name
        self.uses_speaker_id = cls.uses_speaker_id
        self.members = nn.ModuleDict({m: cls(config, s) for m, s in spec.members.items()})
        if any(stage.epochs > 0 for one in self.members.values() for stage in one.stages()):
            raise ConfigError(f"method '{cls.name}': mixture 'separate' is for methods that do not train")
        self.mixture_spec = spec
        self._active: str | None = None

    def stages(self) -> list[Stage]:
        return []

    def prepare(self, train_clips) -> None:
        """Each member's statistics from its own training clips (a MixtureView)."""
        for member, view in train_clips.views.items():
            self.members[member].prepare(view)

    @contextlib.contextmanager
    def member(self, name: str | None) -> Iterator[Method]:
        if name is None:
            yield self
            return
        previous = self._active, self.spec, self.target
        one = self._one(name)
        self._active, self.spec, self.target = name, one.spec, one.target
        try:
            yield self
        finally:
            self._active, self.spec, self.target = previous

    def _one(self, name: str | None = None) -> Method:
        name = self._active if name is None else name
        if name is None:
            raise TalkbenchError(
                f"method '{self.name}' on the mixture {self.mixture_spec.name}: say which member "
                "(method.member(name), or Batch.dataset)"
            )
        if name not in self.members:
            raise TalkbenchError(f"'{name}' is not a member of the mixture {self.mixture_spec.name}")
        return self.members[name]

    def loss(self, stage: str, batch: Batch) -> dict[str, torch.Tensor]:
        return self._one(batch.dataset).loss(stage, batch)

    @torch.no_grad()
    def predict(self, audio, template, condition=None) -> torch.Tensor:
        return self._one().predict(audio, template, condition)

    @torch.no_grad()
    def predict_conditions(self, audio, template, conditions) -> torch.Tensor:
        return self._one().predict_conditions(audio, template, conditions)

    @torch.no_grad()
    def predict_samples(self, audio, template, condition, seeds) -> torch.Tensor:
        return self._one().predict_samples(audio, template, condition, seeds)
