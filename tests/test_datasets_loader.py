"""Samplers and make_loader: coverage, determinism in (seed, epoch), bucketing, triplets, sharding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets_fakes import make_synthlike

from talkbench.datasets import Batch, load_dataset, make_loader
from talkbench.datasets.samplers import BucketedSampler, SequentialSampler, TripletSampler
from talkbench.errors import ConfigError

LENGTHS = np.random.default_rng(0).integers(20, 200, size=37)


@pytest.fixture(scope="module")
def train(tmp_path_factory):
    root = make_synthlike(tmp_path_factory.mktemp("loader") / "d", sentences=5)
    return load_dataset("synthtalk", root=root).split("train")


def _flat(batches):
    return [i for b in batches for i in b]


@pytest.mark.parametrize("cls", [SequentialSampler, BucketedSampler])
def test_each_epoch_covers_every_clip_once(cls):
    s = cls(LENGTHS, batch_size=5, seed=3)
    for epoch in range(3):
        s.set_epoch(epoch)
        batches = list(s)
        assert sorted(_flat(batches)) == list(range(37))
        assert len(batches) == len(s) == 8
    s = cls(LENGTHS, batch_size=5, seed=3, drop_last=True)
    assert len(list(s)) == len(s) == 7 and all(len(b) == 5 for b in s)


@pytest.mark.parametrize("cls", [SequentialSampler, BucketedSampler])
def test_order_is_a_pure_function_of_seed_and_epoch(cls):
    a, b = cls(LENGTHS, 4, seed=1), cls(LENGTHS, 4, seed=1)
    a.set_epoch(5)
    list(b)  # b has run epoch 0 already: resuming at epoch 5 must not depend on history
    b.set_epoch(5)
    assert list(a) == list(b)
    b.set_epoch(6)
    assert list(a) != list(b)
    assert list(cls(LENGTHS, 4, seed=2)) != list(cls(LENGTHS, 4, seed=1))


def test_bucketing_reduces_padding():
    def padding(sampler):
        return sum(int(LENGTHS[b].max() * len(b) - LENGTHS[b].sum()) for b in sampler)

    bucketed, sequential = BucketedSampler(LENGTHS, 6, seed=0), SequentialSampler(LENGTHS, 6, seed=0)
    assert padding(bucketed) < 0.25 * padding(sequential)
    # the batch order is shuffled, not sorted by length
    firsts = [LENGTHS[b[0]] for b in bucketed]
    assert firsts != sorted(firsts)
    # without shuffle: sorted by length, sequential keeps dataset order
    assert _flat(BucketedSampler(LENGTHS, 6, shuffle=False)) == np.argsort(LENGTHS, kind="stable").tolist()
    assert _flat(SequentialSampler(LENGTHS, 6, shuffle=False)) == list(range(37))


def test_triplets():
    subjects = ["A"] * 4 + ["B"] * 3 + ["C"] * 2
    sentences = [1, 2, 3, 4, 1, 2, 2, 5, 6]
    s = TripletSampler(np.full(9, 10), subjects, sentences, batch_size=4, seed=0)
    seen = set()
    for epoch in range(20):
        s.set_epoch(epoch)
        triples = _flat(list(s))
        assert sorted(t[0] for t in triples) == list(range(9))
        for a, p, n in triples:
            assert subjects[p] == subjects[a] and sentences[p] != sentences[a]
            assert subjects[n] != subjects[a]
            seen.add((a, p, n))
    assert len(seen) > 40  # positives and negatives vary across epochs
    with pytest.raises(ConfigError, match="speaker 'C' has no clip of another sentence"):
        TripletSampler(np.full(3, 10), ["A", "A", "C"], [1, 2, 1], batch_size=2)
    with pytest.raises(ConfigError, match="at least 2 speakers"):
        TripletSampler(np.full(2, 10), ["A", "A"], [1, 2], batch_size=2)


@pytest.mark.parametrize("world_size", [2, 3])
def test_sharding_splits_batches_across_ranks(world_size):
    shards = [
        list(BucketedSampler(LENGTHS, 4, seed=7, rank=r, world_size=world_size)) for r in range(world_size)
    ]
    assert len({len(s) for s in shards}) == 1  # every rank runs the same number of steps
    assert len(shards[0]) == len(BucketedSampler(LENGTHS, 4, rank=0, world_size=world_size))
    covered = set(_flat([b for s in shards for b in s]))
    assert covered == set(range(37))
    with pytest.raises(ConfigError, match="rank must be in"):
        SequentialSampler(LENGTHS, 4, rank=2, world_size=2)


def test_make_loader_yields_batches(train):
    loader = make_loader(train, sampler="bucketed", batch_size=4, seed=0)
    assert len(loader) == 4
    names = []
    for batch in loader:
        assert isinstance(batch, Batch)
        assert batch.vertices.shape[:2] == batch.mask.shape and batch.vertices.shape[2:] == (30, 3)
        assert torch.equal(batch.mask.sum(1), batch.lengths)
        for i, name in enumerate(batch.names):
            ref = next(r for r in train.refs if r.name == name)
            assert int(batch.lengths[i]) == ref.n_frames
            assert int(batch.speaker[i]) == train.spec.speaker_index(ref.subject) >= 0
            assert int(batch.audio_lengths[i]) == round(ref.n_frames / 30 * 16000)
        names += batch.names
    assert sorted(names) == sorted(r.name for r in train.refs)


def test_make_loader_resume_by_set_epoch(train):
    a = make_loader(train, sampler="sequential", batch_size=3, seed=5)
    b = make_loader(train, sampler="sequential", batch_size=3, seed=5)
    a.set_epoch(2)
    b.set_epoch(2)
    assert [x.names for x in a] == [x.names for x in b]
    b.set_epoch(3)
    assert [x.names for x in a] != [x.names for x in b]


def test_make_loader_triplet_batches(train):
    loader = make_loader(train, sampler="triplet", batch_size=4, seed=0)
    batch = next(iter(loader))
    assert batch.positive is not None and batch.negative is not None
    assert len(batch.positive) == len(batch.negative) == len(batch) == 4
    for i in range(4):
        assert batch.positive.subjects[i] == batch.subjects[i]
        assert batch.positive.names[i] != batch.names[i]
        assert batch.negative.subjects[i] != batch.subjects[i]


def test_make_loader_with_a_worker_process_matches_in_process(train):
    serial = [b.names for b in make_loader(train, batch_size=5, seed=1)]
    parallel = make_loader(train, batch_size=5, seed=1, num_workers=1)
    batches = list(parallel)
    assert [b.names for b in batches] == serial
    # persistent workers: a later epoch's order still follows the sampler in this process
    reference = make_loader(train, batch_size=5, seed=1)
    parallel.set_epoch(1)
    reference.set_epoch(1)
    assert [b.names for b in parallel] == [b.names for b in reference] != serial
    direct = next(iter(make_loader(train, batch_size=5, seed=1)))
    assert torch.equal(batches[0].vertices, direct.vertices) and torch.equal(batches[0].audio, direct.audio)


def test_make_loader_errors(train):
    with pytest.raises(ConfigError, match="unknown sampler 'buckets'. Did you mean: bucketed"):
        make_loader(train, sampler="buckets")
    with pytest.raises(ConfigError, match="split 'train': .*no clip of another sentence"):
        make_loader(train.subset([0, 5]), sampler="triplet", batch_size=2)
    with pytest.raises(ConfigError, match="batch_size must be >= 1"):
        make_loader(train, batch_size=0)
    with pytest.raises(ConfigError, match="has no clips"):
        make_loader(train.subset([]))
