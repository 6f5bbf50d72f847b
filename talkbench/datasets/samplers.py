"""Batch samplers: sequential, bucketed (by length), triplet (anchor, positive, negative).

Each yields lists of indices (triplet: lists of (anchor, positive, negative) index tuples). The order
of an epoch is a pure function of (seed, epoch), so resuming is ``set_epoch(epoch)``. With
``world_size > 1`` every rank computes the same global batch list and takes every world_size-th
batch (padded cyclically so all ranks run the same number of steps, like DistributedSampler).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from talkbench.errors import ConfigError


class BatchSampler:
    """Common part: validation, per-epoch RNG, sharding. Subclasses build the global batch list."""

    name = "base"

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ):
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ConfigError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        if len(self.lengths) == 0:
            raise ConfigError(f"{self.name} sampler: no clips to sample from")
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.epoch = 0
        self.cycle = 0  # a mixture's k-th pass over this member within one epoch (mixture.py)

    def set_epoch(self, epoch: int, cycle: int = 0) -> None:
        self.epoch = int(epoch)
        self.cycle = int(cycle)

    def _rng(self) -> np.random.Generator:
        key = [self.seed, self.epoch] if self.cycle == 0 else [self.seed, self.epoch, self.cycle]
        return np.random.default_rng(key)

    def _chunks(self, order: np.ndarray) -> list[list[int]]:
        n = len(order)
        stop = n - n % self.batch_size if self.drop_last else n
        return [order[i : i + self.batch_size].tolist() for i in range(0, stop, self.batch_size)]

    def global_batches(self) -> list[list]:
        raise NotImplementedError

    def _n_global(self) -> int:
        n = len(self.lengths)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __len__(self) -> int:
        return sharded_len(self._n_global(), self.world_size, self.drop_last)

    def __iter__(self) -> Iterator[list]:
        return iter(shard(self.global_batches(), self.rank, self.world_size, self.drop_last))


def sharded_len(n_global: int, world_size: int, drop_last: bool) -> int:
    """How many of ``n_global`` batches each rank runs (see :func:`shard`)."""
    if world_size == 1:
        return n_global
    return n_global // world_size if drop_last else -(-n_global // world_size)


def shard(batches: list, rank: int, world_size: int, drop_last: bool) -> list:
    """This rank's share of the global batch list: every world_size-th batch, the list cut (drop_last)
    or padded cyclically so that all ranks run the same number of steps."""
    if world_size == 1:
        return batches
    if drop_last:
        batches = batches[: len(batches) // world_size * world_size]
    elif len(batches) % world_size:
        pad = world_size - len(batches) % world_size
        batches = batches + [batches[i % len(batches)] for i in range(pad)]
    return batches[rank::world_size]


class SequentialSampler(BatchSampler):
    """Consecutive batches of the (shuffled, if shuffle) clip order."""

    name = "sequential"

    def global_batches(self) -> list[list[int]]:
        n = len(self.lengths)
        order = self._rng().permutation(n) if self.shuffle else np.arange(n)
        return self._chunks(order)


class BucketedSampler(BatchSampler):
    """Batches of similar length (little padding); with shuffle, random partners among equal lengths
    and a random batch order."""

    name = "bucketed"

    def global_batches(self) -> list[list[int]]:
        n = len(self.lengths)
        if not self.shuffle:
            return self._chunks(np.argsort(self.lengths, kind="stable"))
        rng = self._rng()
        perm = rng.permutation(n)
        order = perm[np.argsort(self.lengths[perm], kind="stable")]
        batches = self._chunks(order)
        return [batches[i] for i in rng.permutation(len(batches))]


class TripletSampler(BatchSampler):
    """Each anchor with a positive (same speaker, another sentence) and a negative (another speaker)."""

    name = "triplet"

    def __init__(
        self,
        lengths: Sequence[int],
        subjects: Sequence[str],
        sentences: Sequence[int],
        batch_size: int,
        **kwargs,
    ):
        super().__init__(lengths, batch_size, **kwargs)
        if len(subjects) != len(self.lengths) or len(sentences) != len(self.lengths):
            raise ConfigError("triplet sampler: subjects and sentences must have one entry per clip")
        self.subjects = np.asarray(subjects)
        self.sentences = np.asarray(sentences)
        if len(set(subjects)) < 2:
            raise ConfigError("triplet sampler needs clips of at least 2 speakers (for negatives)")
        self._positives: list[np.ndarray] = []
        self._negatives: list[np.ndarray] = []
        for i in range(len(self.lengths)):
            same = self.subjects == self.subjects[i]
            pos = np.flatnonzero(same & (self.sentences != self.sentences[i]))
            if len(pos) == 0:
                raise ConfigError(
                    f"triplet sampler: speaker '{self.subjects[i]}' has no clip of another sentence "
                    "to be a positive"
                )
            self._positives.append(pos)
            self._negatives.append(np.flatnonzero(~same))

    def global_batches(self) -> list[list[tuple[int, int, int]]]:
        rng = self._rng()
        n = len(self.lengths)
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        triples = np.empty((n, 3), dtype=np.int64)
        for row, a in enumerate(order):
            triples[row] = (a, rng.choice(self._positives[a]), rng.choice(self._negatives[a]))
        stop = n - n % self.batch_size if self.drop_last else n
        return [
            [tuple(int(x) for x in t) for t in triples[i : i + self.batch_size]]
            for i in range(0, stop, self.batch_size)
        ]


SAMPLERS = {"sequential": SequentialSampler, "bucketed": BucketedSampler, "triplet": TripletSampler}
