"""make_loader: a split view + a batch sampler -> a torch DataLoader of Batch, resumable by set_epoch."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Mapping

from torch.utils.data import DataLoader, Dataset

from talkbench.datasets.batch import Batch, collate
from talkbench.datasets.prepared import SplitView
from talkbench.datasets.samplers import SAMPLERS, BatchSampler, TripletSampler
from talkbench.errors import ConfigError


class _ClipDataset(Dataset):
    """Index -> Clip; an (anchor, positive, negative) index tuple -> a tuple of clips."""

    def __init__(self, view: SplitView):
        self.view = view

    def __len__(self) -> int:
        return len(self.view)

    def __getitem__(self, index):
        if isinstance(index, tuple):
            return tuple(self.view[i] for i in index)
        return self.view[index]


class _Collate:
    """Picklable collate (worker processes under spawn) that also builds triplet batches."""

    def __init__(self, speaker_index: Callable[[str], int] | None):
        self.speaker_index = speaker_index

    def __call__(self, items: list) -> Batch:
        if isinstance(items[0], tuple):
            anchors, positives, negatives = zip(*items)
            batch = collate(anchors, self.speaker_index)
            batch.positive = collate(positives, self.speaker_index)
            batch.negative = collate(negatives, self.speaker_index)
            return batch
        return collate(items, self.speaker_index)


class ClipLoader:
    """Iterable of Batch. The order of an epoch depends only on (seed, epoch): resume = set_epoch."""

    def __init__(self, view: SplitView, sampler: BatchSampler, loader: DataLoader):
        self.view = view
        self.sampler = sampler
        self._loader = loader

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[Batch]:
        return iter(self._loader)

    def __repr__(self) -> str:
        return (
            f"ClipLoader({self.view!r}, sampler={self.sampler.name}, batch_size={self.sampler.batch_size}, "
            f"batches={len(self)})"
        )


def make_loader(
    split_view: SplitView,
    sampler: str = "bucketed",
    batch_size: int = 8,
    seed: int = 0,
    shuffle: bool = True,
    num_workers: int = 0,
    pin_memory: bool = False,
    speaker_index: Callable[[str], int] | None = None,
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool = False,
    repeats: Mapping[str, int] | None = None,
):
    """Batches of a split. ``speaker_index`` defaults to the dataset spec's (one-hot order, -1 unseen).
    A mixture's view (datasets/mixture.py) gets a MixtureLoader: each member's batches by weight, and
    ``repeats`` passes over a member per epoch (default 1; one dataset ignores it)."""
    common = dict(seed=seed, shuffle=shuffle, rank=rank, world_size=world_size, drop_last=drop_last)
    if hasattr(split_view, "make_loader"):  # a view that interleaves its own loaders (a MixtureView)
        return split_view.make_loader(sampler, batch_size, num_workers=num_workers, pin_memory=pin_memory,
                                      repeats=repeats, **common)  # fmt: skip
    batch_sampler = make_batch_sampler(split_view, sampler, batch_size, **common)
    loader = clip_data_loader(split_view, batch_sampler, num_workers, pin_memory, speaker_index)
    return ClipLoader(split_view, batch_sampler, loader)


def make_batch_sampler(split_view: SplitView, sampler: str, batch_size: int, **common) -> BatchSampler:
    """The named sampler over a split's clips (``common``: seed, shuffle, rank, world_size, drop_last)."""
    if sampler not in SAMPLERS:
        close = difflib.get_close_matches(str(sampler), SAMPLERS, n=1, cutoff=0.5)
        hint = f" Did you mean: {close[0]}?" if close else ""
        raise ConfigError(f"unknown sampler '{sampler}'.{hint} Available: {', '.join(SAMPLERS)}")
    if len(split_view) == 0:
        raise ConfigError(f"split '{split_view.name}' of {split_view.dataset.root} has no clips to load")
    try:
        if sampler == "triplet":
            refs = split_view.refs
            return TripletSampler(
                split_view.lengths,
                [r.subject for r in refs],
                [r.sentence for r in refs],
                batch_size,
                **common,
            )
        return SAMPLERS[sampler](split_view.lengths, batch_size, **common)
    except ConfigError as exc:
        raise ConfigError(f"split '{split_view.name}': {exc}") from exc


def clip_data_loader(
    split_view: SplitView,
    batch_sampler,
    num_workers: int = 0,
    pin_memory: bool = False,
    speaker_index: Callable[[str], int] | None = None,
) -> DataLoader:
    """A DataLoader of Batch over a split, its batches (index lists) from ``batch_sampler``."""
    if speaker_index is None:
        speaker_index = split_view.spec.speaker_index
    return DataLoader(
        _ClipDataset(split_view),
        batch_sampler=batch_sampler,
        collate_fn=_Collate(speaker_index),
        num_workers=num_workers,
        pin_memory=pin_memory,
        # workers keep their decoded-audio cache across epochs (the sampler still runs in this process)
        persistent_workers=num_workers > 0,
    )
