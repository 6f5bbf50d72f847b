"""The loader on real generated SynthTalk (the `synthtalk_tiny` fixture) and on the default cache path."""

from __future__ import annotations

import json

import numpy as np

from talkbench.datasets import load_dataset, make_loader


def test_tiny_loads_with_the_spec_of_its_json(synthtalk_tiny):
    ds = load_dataset("synthtalk", root=synthtalk_tiny)
    meta = json.loads((synthtalk_tiny / "synthtalk.json").read_text())
    spec = ds.spec
    assert list(spec.splits) == ["train", "val", "test"]
    for name, entry in meta["split"].items():
        assert spec.splits[name].subjects == tuple(entry["subjects"])
        assert spec.splits[name].sentences == tuple(entry["sentences"])
    assert spec.train_subjects == tuple(meta["train_subjects"])
    assert spec.n_vertices == meta["n_vertices"] and (spec.fps, spec.stride) == (30, 2)
    assert set(meta["regions"]) <= set(spec.regions)
    assert not set(spec.regions["lips"].tolist()) & set(spec.regions["upper_face"].tolist())
    assert spec.faces.shape[1] == 3 and spec.faces.max() < spec.n_vertices
    assert spec.meta["style_coupling"] == meta["style_coupling"]
    for split in spec.splits:
        view = ds.split(split)
        assert len(view) > 0 and set(view.subjects) == set(spec.splits[split].subjects)
    test = ds.split("test")
    assert all(spec.splits["test"].sentences[0] <= r.sentence for r in test.refs)
    clip = test[0]
    raw = np.load(synthtalk_tiny / "vertices_npy" / f"{clip.name}.npy")
    np.testing.assert_array_equal(clip.vertices, raw.reshape(len(raw), -1, 3)[::2][: clip.n_frames])
    assert len(clip.audio) == round(clip.n_frames / 30 * 16000)
    # motion is not static: the lips move more than the template noise
    lips = spec.regions["lips"]
    assert np.ptp(clip.vertices[:, lips], axis=0).max() > 1e-3


def test_tiny_batches_with_every_sampler(synthtalk_tiny):
    train = load_dataset("synthtalk", root=synthtalk_tiny).split("train")
    for sampler in ("sequential", "bucketed", "triplet"):
        batch = next(iter(make_loader(train, sampler=sampler, batch_size=4, seed=0)))
        assert batch.vertices.shape[0] == 4 and (batch.speaker >= 0).all()
        assert (batch.positive is not None) == (sampler == "triplet")


def test_default_root_is_the_generated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TALKBENCH_HOME", str(tmp_path))
    ds = load_dataset("synthtalk", preset="tiny", seed=0)
    assert tmp_path in ds.root.parents and ds.spec.meta["preset"] == "tiny"
    stamp = (ds.root / "synthtalk.json").stat().st_mtime_ns
    again = load_dataset("synthtalk", preset="tiny", seed=0)
    assert again.root == ds.root and (again.root / "synthtalk.json").stat().st_mtime_ns == stamp  # reused
    assert again.spec.digest == ds.spec.digest
