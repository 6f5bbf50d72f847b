"""Training on a mixture of datasets: ``bench run --dataset a,b --set dataset.weights=[1,2]``.

A mixture is several registered datasets trained on together; each member keeps its own spec
(topology, regions, target, speakers, splits) and is scored on its own test split.

- :class:`talkbench.datasets.spec.MixtureSpec` is what a method sees: ``members`` (name ->
  DatasetSpec, in the order given), ``weights`` (name -> relative sampling weight, default 1 each),
  ``train_subjects`` as ``member:subject``. A method that trains on mixtures builds one head per
  member from ``spec.members`` and routes each batch by ``Batch.dataset`` (FaceFormer does; a later
  UniTalker keys its heads the same way). Methods declare it with ``Method.mixture``
  (``methods/mixture.py``).
- :class:`MixtureDataset` is the loaded mixture: ``members`` (name -> PreparedDataset), ``spec``,
  ``split(name)`` -> a :class:`MixtureView` of the members that have that split.
- Batches come from one member at a time (topologies differ, so no padded tensor holds two):
  :class:`MixtureSampler` draws the member of each batch with probability weight / sum(weights) and
  takes that member's next batch from its own sampler (bucketed, sequential, triplet), starting a
  new pass over the member (a fresh order) when it runs out. An epoch has as many batches as one
  pass over every member; its order is a pure function of (seed, epoch), so resuming mid-epoch is
  replaying it (as for one dataset). Speaker indices in a batch are the member's own.
- ``repeats`` (a stage's ``Stage.repeats``: UniTalker's ``unitalker.duplicate``) makes an epoch hold
  that many passes over a member and multiplies its weight as much, as concatenating the member's
  clips that many times would.

Configuration: ``dataset.name`` lists the members (``a,b``); ``dataset.weights`` one weight per
member in that order; ``dataset.root`` one root per member (``root_a,root_b``, empty for a generated
one) or none; ``dataset.options`` go to every member whose loader takes them. A run on a mixture logs
to the experiment ``a+b`` (:func:`mixture_name`), tags the members and weights, and logs each
member's test metrics as ``test/<member>/<metric>``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from talkbench.datasets.samplers import shard, sharded_len
from talkbench.datasets.spec import MixtureSpec, mixture_name
from talkbench.errors import ConfigError

# a stream of the mixture's own RNG, apart from the members' ([seed, epoch] and [seed, epoch, cycle])
_MIX_STREAM = 0x6D6978


def weights_of(members: Sequence[str], weights: Sequence[float] | None) -> dict[str, float]:
    """Member -> weight (1 each when None); ConfigError naming ``dataset.weights`` when they do not fit."""
    if weights is None:
        return {m: 1.0 for m in members}
    if len(weights) != len(members):
        raise ConfigError(
            f"dataset.weights: {len(weights)} weight(s) for {len(members)} datasets ({', '.join(members)}); "
            "give one per dataset, in the order of --dataset"
        )
    if any(not np.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise ConfigError(
            f"dataset.weights: expected non-negative numbers, not all zero; got {list(weights)}"
        )
    return {m: float(w) for m, w in zip(members, weights)}


class MixtureView:
    """One split of every member that has it: ``views`` (member -> SplitView), their ``weights``."""

    def __init__(self, name: str, views: Mapping, weights: Mapping[str, float]):
        self.name = name
        self.views = dict(views)
        self.weights = {m: weights[m] for m in self.views}

    def __len__(self) -> int:
        return sum(len(v) for v in self.views.values())

    def __iter__(self):
        for view in self.views.values():
            yield from view

    def make_loader(self, sampler: str = "bucketed", batch_size: int = 8, **kwargs) -> MixtureLoader:
        """``datasets.make_loader`` of this view: :func:`make_mixture_loader`."""
        return make_mixture_loader(self, sampler, batch_size, **kwargs)

    def __repr__(self) -> str:
        return f"MixtureView({self.name!r}, {', '.join(f'{m}: {len(v)}' for m, v in self.views.items())})"


class MixtureDataset:
    """The loaded members of a mixture (see the module docstring)."""

    def __init__(self, members: Mapping, weights: Mapping[str, float]):
        self.members = dict(members)
        self.spec = MixtureSpec({m: d.spec for m, d in self.members.items()}, dict(weights))

    @property
    def name(self) -> str:
        return self.spec.name

    def split(self, name: str) -> MixtureView:
        """The members' ``name`` split; KeyError when no member has it."""
        views = {m: d.split(name) for m, d in self.members.items() if name in d.spec.splits}
        if not views:
            raise KeyError(f"no member of the mixture {self.name} has a split '{name}'")
        return MixtureView(name, views, self.spec.weights)

    def __repr__(self) -> str:
        return f"MixtureDataset({', '.join(f'{m}: {w:g}' for m, w in self.spec.weights.items())})"


def load_mixture(
    members: Sequence[str],
    weights: Sequence[float] | None = None,
    roots: Sequence[str | None] | None = None,
    options: Mapping | None = None,
) -> MixtureDataset:
    """Load every member (``roots`` one per member, None: generated/cached); each gets the ``options``
    its loader takes."""
    from talkbench.datasets import load_dataset
    from talkbench.datasets.registry import loader_options

    if len(set(members)) != len(members) or len(members) < 2:
        raise ConfigError(f"--dataset {','.join(members)}: a mixture lists two or more different datasets")
    roots = list(roots) if roots is not None else [None] * len(members)
    if len(roots) != len(members):
        raise ConfigError(
            f"--data-root: {len(roots)} root(s) for {len(members)} datasets ({', '.join(members)}); give one "
            "per dataset, comma separated (empty for a generated one)"
        )
    w = weights_of(members, weights)
    options = dict(options or {})
    loaded = {}
    for member, root in zip(members, roots):
        own = {k: v for k, v in options.items() if k in loader_options(member)}
        loaded[member] = load_dataset(member, root=root or None, **own)
    return MixtureDataset(loaded, w)


class MixtureSampler:
    """Per batch a member drawn by weight, and that member's next batch (see the module docstring).

    Yields ``(member, indices)``; ``set_epoch`` as the single-dataset samplers. Under DDP the global
    schedule is sharded like theirs (``samplers.shard``)."""

    name = "mixture"

    def __init__(
        self,
        samplers: Mapping,
        weights: Mapping[str, float],
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        repeats: Mapping[str, int] | None = None,
    ):
        self.samplers = dict(samplers)
        self.members = list(self.samplers)
        unknown = sorted(set(repeats or {}) - set(self.members))
        if unknown:
            raise ConfigError(f"repeats for {', '.join(unknown)}: not members of this mixture "
                              f"({', '.join(self.members)})")
        self.repeats = {m: int((repeats or {}).get(m, 1)) for m in self.members}
        w = np.array([weights[m] * self.repeats[m] for m in self.members], np.float64)
        self.p = w / w.sum()
        self.seed, self.rank, self.world_size, self.drop_last = int(seed), rank, world_size, drop_last
        self.epoch = 0
        self.batch_size = max(s.batch_size for s in self.samplers.values())

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _n_global(self) -> int:
        return sum(self.repeats[m] * s._n_global() for m, s in self.samplers.items())

    def __len__(self) -> int:
        return sharded_len(self._n_global(), self.world_size, self.drop_last)

    def global_batches(self) -> list[tuple[str, list]]:
        rng = np.random.default_rng([self.seed, self.epoch, _MIX_STREAM])
        picks = rng.choice(len(self.members), size=self._n_global(), p=self.p)
        streams = {m: self._stream(m) for m in self.members}
        return [(self.members[i], next(streams[self.members[i]])) for i in picks]

    def _stream(self, member: str) -> Iterator[list]:
        """The member's batches, pass after pass (pass k of epoch e: its sampler at (e, k))."""
        sampler = self.samplers[member]
        cycle = 0
        while True:
            sampler.set_epoch(self.epoch, cycle)
            yield from sampler.global_batches()
            cycle += 1

    def __iter__(self) -> Iterator[tuple[str, list]]:
        return iter(shard(self.global_batches(), self.rank, self.world_size, self.drop_last))


class _Scheduled:
    """A member DataLoader's batch sampler: the batches the mixture schedule gives that member."""

    def __init__(self):
        self.batches: list[list] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class MixtureLoader:
    """Iterable of Batch, each from one member (``batch.dataset`` names it), in the sampler's order."""

    def __init__(self, view: MixtureView, sampler: MixtureSampler, loaders: Mapping, queues: Mapping):
        self.view = view
        self.sampler = sampler
        self._loaders = dict(loaders)
        self._queues = dict(queues)

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        schedule = list(self.sampler)
        for member, queue in self._queues.items():
            queue.batches = [idx for m, idx in schedule if m == member]
        iterators = {m: iter(loader) for m, loader in self._loaders.items() if self._queues[m].batches}
        for member, _ in schedule:
            batch = next(iterators[member])
            batch.dataset = member
            yield batch

    def __repr__(self) -> str:
        return f"MixtureLoader({self.view!r}, batches={len(self)})"


def make_mixture_loader(
    view: MixtureView,
    sampler: str = "bucketed",
    batch_size: int = 8,
    seed: int = 0,
    shuffle: bool = True,
    num_workers: int = 0,
    pin_memory: bool = False,
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool = False,
    repeats: Mapping[str, int] | None = None,
) -> MixtureLoader:
    """``make_loader`` for a :class:`MixtureView`: per member its sampler, speaker index and
    DataLoader, interleaved by a :class:`MixtureSampler` with the view's weights (and ``repeats``)."""
    from talkbench.datasets.loader import clip_data_loader, make_batch_sampler

    loaders, queues, samplers = {}, {}, {}
    for member, member_view in view.views.items():
        # each member's full batch list: the mixture shards the interleaved schedule across ranks
        samplers[member] = make_batch_sampler(member_view, sampler, batch_size, seed=seed, shuffle=shuffle)
        queues[member] = _Scheduled()
        loaders[member] = clip_data_loader(member_view, queues[member], num_workers, pin_memory)
    mix = MixtureSampler(samplers, view.weights, seed, rank, world_size, drop_last, repeats)
    return MixtureLoader(view, mix, loaders, queues)


__all__ = [
    "MixtureDataset",
    "MixtureLoader",
    "MixtureSampler",
    "MixtureView",
    "load_mixture",
    "make_mixture_loader",
    "mixture_name",
    "weights_of",
]
