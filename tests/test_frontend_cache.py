"""The frozen CNN's features cached per clip while training: a hit equals recomputation; misses
after a weight change, on other audio, with a trainable front end, in eval mode, or when disabled."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from test_audio_encoders import make_spec, tiny_cfg

from talkbench.audio.build import build_audio_encoder


def _encoder(kind="wav2vec2", norm=None, **kw):
    torch.manual_seed(0)
    cfg = tiny_cfg(kind, **kw)
    if norm is not None:
        cfg.hf_overrides["feat_extract_norm"] = norm
    return build_audio_encoder(cfg, make_spec()).train()


def _batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 16000, generator=g), torch.tensor([16000, 12000])


@pytest.mark.parametrize("kind, norm", [("wav2vec2", "group"), ("hubert", "layer")])
def test_hit_equals_recomputation(kind, norm):
    enc = _encoder(kind, norm)
    ref = _encoder(kind, norm, cache_frozen_cnn=False)
    ref.load_state_dict(enc.state_dict())
    audio, lengths = _batch()
    first, n1 = enc.cnn(audio, lengths)
    second, n2 = enc.cnn(audio, lengths)
    cache = enc.front_end_cache
    assert (cache.misses, cache.hits) == (2, 2)
    recomputed, n3 = ref.cnn(audio, lengths)
    assert torch.equal(first, second) and torch.equal(n1, n3) and torch.equal(n2, n3)
    for b, n in enumerate(n3.tolist()):  # valid frames as the uncached path computes them
        torch.testing.assert_close(second[b, :n], recomputed[b, :n], rtol=1e-5, atol=1e-6)
    outs = []
    for model in (enc, ref):  # training forward (SpecAugment, dropout) from the same random state
        torch.manual_seed(2)
        np.random.seed(2)
        outs.append(model(audio, lengths)[0])
    h_cached, h_ref = outs
    torch.testing.assert_close(h_cached, h_ref, rtol=1e-5, atol=1e-6)


def test_misses_after_a_weight_change_and_on_other_audio():
    enc = _encoder()
    audio, lengths = _batch()
    enc.cnn(audio, lengths)
    with torch.no_grad():
        next(enc.model.feature_extractor.parameters()).mul_(1.5)  # as an optimizer step would
    changed, _ = enc.cnn(audio, lengths)
    assert enc.front_end_cache.hits == 0
    fresh = _encoder(cache_frozen_cnn=False)
    fresh.load_state_dict(enc.state_dict())
    torch.testing.assert_close(changed, fresh.cnn(audio, lengths)[0], rtol=1e-5, atol=1e-6)
    enc.cnn(audio + 0.01, lengths)  # augmented audio: another key
    assert enc.front_end_cache.hits == 0


@pytest.mark.parametrize("case", ["trainable", "eval", "disabled"])
def test_bypassed(case):
    enc = _encoder(freeze_cnn=case != "trainable", cache_frozen_cnn=case != "disabled")
    if case == "eval":
        enc.eval()
    audio, lengths = _batch()
    enc.cnn(audio, lengths)
    enc.cnn(audio, lengths)
    cache = enc.__dict__.get("front_end_cache")
    assert cache is None or cache.hits + cache.misses == 0


def test_cache_not_pickled_nor_in_the_state_dict():
    enc = _encoder()
    enc.cnn(*_batch())
    copy = pickle.loads(pickle.dumps(enc.front_end_cache))
    assert copy.misses == 0 and not copy._items and enc.front_end_cache._items
    assert not any("cache" in k for k in enc.state_dict())
