"""CodeTalker-ND (specs/stochastic-metrics.md §5): each code drawn from softmax(-d / T); as T -> 0 it is
CodeTalker's nearest code; samples differ across seeds and replay bit for bit per seed, whatever N
and order; drawing in training is the study's default; CodeTalker itself is untouched."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from test_codetalker import V, make_batch, make_model, small_config, small_spec
from torch import nn

from talkbench.config import load_config
from talkbench.errors import ConfigError
from talkbench.methods.codetalker import VectorQuantizer
from talkbench.methods.codetalker.nd import CodeTalkerND, CodeTalkerNDConfig
from talkbench.registry import METHODS


def make_nd(seed: int = 0, **kw) -> CodeTalkerND:
    """The same weights as test_codetalker.make_model(seed) (same construction order)."""
    base = dataclasses.asdict(small_config())
    torch.manual_seed(seed)
    model = CodeTalkerND(CodeTalkerNDConfig(**{**base, **kw}), small_spec())
    nn.init.normal_(model.predictor.feat_map.weight, std=0.3)
    return model.eval()


def test_draws_follow_the_softmax_over_negative_squared_distances():
    torch.manual_seed(0)
    q = VectorQuantizer(n_codes=4, dim=2)
    z = torch.zeros(4000, 2)
    q.sampling, q.temperature = True, 2.0
    q.generator = torch.Generator().manual_seed(3)
    counts = torch.bincount(q.choose(z), minlength=4).float() / len(z)
    probs = torch.softmax(-q.distances(z[:1])[0] / 2.0, dim=0)
    assert torch.allclose(counts, probs, atol=0.03)
    q.sampling = False
    assert torch.equal(q.choose(z), q.nearest(z))  # off: the nearest code


@pytest.mark.parametrize("mode", ["exact", "fast", "incremental"])
def test_temperature_to_zero_is_codetalkers_nearest_code(mode):
    audio, template = torch.randn(8000), torch.randn(V, 3)
    nearest = make_model(inference=mode).predict(audio, template, condition=1)
    cold = make_nd(inference=mode, nd_temperature=1e-12).predict_samples(audio, template, 1, [5, 6])
    assert torch.equal(cold[0], nearest) and torch.equal(cold[1], nearest)
    warm = make_nd(inference=mode).predict_samples(audio, template, 1, [5])
    assert not torch.allclose(warm[0], nearest, atol=1e-4)


def test_samples_differ_across_seeds_and_replay_whatever_n_and_order():
    model = make_nd()
    audio, template = torch.randn(8000), torch.randn(V, 3)
    a = model.predict_samples(audio, template, 0, [11, 22, 33])
    b = model.predict_samples(audio, template, 0, [33, 11])
    assert torch.equal(a[0], b[1]) and torch.equal(a[2], b[0])
    assert not torch.allclose(a[0], a[1], atol=1e-4)
    torch.manual_seed(123)  # the global RNG plays no part at test time
    assert torch.equal(model.predict_samples(audio, template, 0, [22])[0], a[1])
    assert torch.equal(model.predict(audio, template, 0), model.predict_samples(audio, template, 0, [0])[0])
    assert model.predict_conditions(audio, template, [0, 2]).shape == (2, len(a[0]), V, 3)


def test_training_draws_by_default_and_not_with_nd_in_training_false():
    batch = make_batch()
    plain = make_model().train()
    drawing = make_nd().train()
    test_time_only = make_nd(nd_in_training=False).train()
    torch.manual_seed(0)
    ref = plain.loss("vqvae", batch)["loss"]
    torch.manual_seed(0)
    assert torch.equal(test_time_only.loss("vqvae", batch)["loss"], ref)
    torch.manual_seed(0)
    assert not torch.equal(drawing.loss("vqvae", batch)["loss"], ref)
    assert not drawing.vqvae.quantizer.sampling  # switched off again after the loss


def test_registered_as_its_own_method_with_presets():
    assert METHODS.get("codetalker-nd") is CodeTalkerND and CodeTalkerND.samples
    assert not METHODS.get("codetalker").samples
    cfg = load_config("codetalker-nd", preset="tiny")
    assert cfg.method_config.nd_temperature == 2.0 and cfg.method_config.nd_in_training
    plain = load_config("codetalker", preset="tiny")
    shared = {f.name for f in dataclasses.fields(plain.method_config)}
    assert {k: getattr(cfg.method_config, k) for k in shared} == dataclasses.asdict(plain.method_config)
    assert cfg.config_hash() != plain.config_hash()
    with pytest.raises(ConfigError, match="nd_temperature must be > 0"):
        CodeTalkerNDConfig(nd_temperature=0.0).validate()
