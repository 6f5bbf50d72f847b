"""``dataset.train_fraction``: a seeded, speaker-stratified, nested share of the training clips; the
other splits untouched; part of the config's identity only when set; bad values refused by name."""

from __future__ import annotations

from collections import Counter

import pytest

from talkbench.config import load_config
from talkbench.errors import ConfigError


def _cfg(root, *sets, method="mean-motion"):
    return load_config(method, dataset="synthtalk", preset="tiny", data_root=root, overrides=list(sets))


def _names(view) -> list[str]:
    return [r.name for r in view.refs]


def test_a_fraction_keeps_a_share_of_every_speaker_nested_and_seeded(synthtalk_tiny):
    full = _cfg(synthtalk_tiny).dataset.load()
    per_speaker = Counter(r.subject for r in full.split("train").refs)
    loaded = {f: _cfg(synthtalk_tiny, f"dataset.train_fraction={f}").dataset.load() for f in (0.1, 0.25, 0.5)}
    for f, data in loaded.items():
        kept = Counter(r.subject for r in data.split("train").refs)
        assert set(kept) == set(per_speaker)  # no speaker loses all of its clips
        assert all(kept[s] == max(1, int(f * n + 0.5)) for s, n in per_speaker.items()), (f, kept)
        for split in ("val", "test"):
            assert _names(data.split(split)) == _names(full.split(split))
    small, mid, half = (set(_names(loaded[f].split("train"))) for f in (0.1, 0.25, 0.5))
    assert small <= mid <= half < set(_names(full.split("train")))  # nested: one curve, not three draws
    # the same clips whatever the run seed (runs at one fraction pair up); another subset seed, others
    again = _cfg(synthtalk_tiny, "dataset.train_fraction=0.5", "seed=7").dataset.load()
    assert _names(again.split("train")) == _names(loaded[0.5].split("train"))
    other = _cfg(synthtalk_tiny, "dataset.train_fraction=0.5", "dataset.train_fraction_seed=1").dataset.load()
    assert _names(other.split("train")) != _names(loaded[0.5].split("train"))


def test_the_default_leaves_the_hash_and_a_fraction_changes_it(synthtalk_tiny):
    base = _cfg(synthtalk_tiny)
    assert _cfg(synthtalk_tiny, "dataset.train_fraction=1.0").config_hash() == base.config_hash()
    assert _cfg(synthtalk_tiny, "dataset.train_fraction_seed=0").config_hash() == base.config_hash()
    half = _cfg(synthtalk_tiny, "dataset.train_fraction=0.5")
    assert half.config_hash() != base.config_hash()
    assert half.identity()["dataset.train_fraction"] == 0.5
    assert half.params()["dataset.train_fraction"] == 0.5 and base.params()["dataset.train_fraction"] == 1.0


@pytest.mark.parametrize("value", ["0", "-0.5", "1.5", "half"])
def test_bad_fractions_are_refused_naming_the_option(synthtalk_tiny, value):
    with pytest.raises(ConfigError, match="dataset.train_fraction") as err:
        _cfg(synthtalk_tiny, f"dataset.train_fraction={value}")
    assert len(str(err.value).splitlines()) == 1


def test_a_mixture_takes_the_fraction_of_each_member(synthtalk_tiny, tmp_path):
    from talkbench.datasets.synthtalk import generate
    from talkbench.pipeline import train_clips_tag

    t2 = generate(tmp_path / "t2", preset="tiny", seed=0, variant="topology2")
    roots = f"{synthtalk_tiny},{t2}"

    def loaded(*sets):
        return load_config("unitalker", dataset="synthtalk,synthtalk-topology2", preset="tiny",
                           data_root=roots, overrides=list(sets)).dataset.load()

    full, half = loaded(), loaded("dataset.train_fraction=0.5")
    counts = {m: len(d.split("train")) for m, d in half.members.items()}
    assert counts == {m: len(d.split("train")) // 2 for m, d in full.members.items()}
    assert train_clips_tag(half) == ",".join(f"{m}={n}" for m, n in counts.items())
