"""The frozen CNN's features cached per clip while training: a hit equals recomputation; misses
after a weight change, on other audio, with a trainable front end, in eval mode, or when disabled."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from test_audio_encoders import make_spec, tiny_cfg

from talkbench.audio.build import build_audio_encoder
from talkbench.audio.config import AudioEncoderConfig
from talkbench.audio.feature_cache import FrozenFeatureCache, clip_digest


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



# -- shared on disk: one computation per clip per frozen encoder, across runs and processes ---------
_SECOND_RUN = """
import sys
from pathlib import Path
import torch
from test_audio_encoders import make_spec
from test_frontend_cache import _batch, _counted
from talkbench.audio.build import build_audio_encoder
from talkbench.audio.config import AudioEncoderConfig
enc = build_audio_encoder(AudioEncoderConfig(kind="wav2vec2", name_or_path=sys.argv[1]), make_spec()).train()
calls = _counted(enc, Path(sys.argv[2]))
feats, _ = enc.cnn(*_batch())
torch.save(feats, sys.argv[3])
c = enc.front_end_cache
print(len(calls), c.misses, c.disk_hits, c.refused)
"""


def _counted(enc, directory: Path) -> list:
    """Give ``enc`` a cache in ``directory``; the list grows by one per CNN computation."""
    enc.front_end_cache = FrozenFeatureCache(directory=directory)
    calls: list = []
    enc.model.feature_extractor.register_forward_hook(lambda *_: calls.append(1))
    return calls


def test_a_second_run_in_another_process_reads_every_clip_from_disk(tmp_path):
    _encoder().model.save_pretrained(tmp_path / "w2v")  # the frozen checkpoint both runs load
    cfg = AudioEncoderConfig(kind="wav2vec2", name_or_path=str(tmp_path / "w2v"))
    first = build_audio_encoder(cfg, make_spec()).train()
    calls = _counted(first, tmp_path / "features")
    feats, _ = first.cnn(*_batch())
    assert len(calls) == 2 and first.front_end_cache.misses == 2  # one computation per clip
    tests = Path(__file__).parent
    args = [str(tmp_path / "w2v"), str(tmp_path / "features"), str(tmp_path / "feats.pt")]
    out = subprocess.run([sys.executable, "-c", _SECOND_RUN, *args], capture_output=True, text=True,
                         cwd=tests, env={**os.environ, "PYTHONPATH": str(tests)}, timeout=300)
    assert out.returncode == 0, out.stderr
    n_calls, misses, disk_hits, refused = map(int, out.stdout.split()[-4:])
    assert (n_calls, misses, disk_hits, refused) == (0, 0, 2, 0)
    assert torch.equal(torch.load(tmp_path / "feats.pt"), feats)  # bit for bit what the first computed


def test_the_disk_cache_refuses_stale_entries(tmp_path):
    enc = _encoder()
    calls = _counted(enc, tmp_path)
    audio, lengths = _batch()
    enc.cnn(audio, lengths)
    assert len(calls) == 2
    with torch.no_grad():  # other frozen weights (another checkpoint): another key, computed again
        next(enc.model.feature_extractor.parameters()).add_(0.5)
    enc.front_end_cache.clear()
    enc.cnn(audio, lengths)
    assert len(calls) == 4 and enc.front_end_cache.disk_hits == 0
    other = audio.clone()
    other[0, :100] += 0.1  # another clip: computed; the second clip is unchanged: read from disk
    enc.front_end_cache.clear()
    enc.cnn(other, lengths)
    assert len(calls) == 5 and enc.front_end_cache.disk_hits == 1
    assert len(list(tmp_path.rglob("*.safetensors"))) == 5
    # a file whose content no longer matches its recorded checksum is refused, recomputed, replaced
    victim = enc.front_end_cache.path(enc.cnn_digest(), clip_digest(other[0]))
    tensors = load_file(victim)
    with safe_open(str(victim), framework="pt") as f:
        meta = f.metadata()
    save_file({"features": tensors["features"] + 1.0}, victim, metadata=meta)
    enc.front_end_cache.clear()
    fresh, _ = enc.cnn(other, lengths)
    assert enc.front_end_cache.refused == 1 and len(calls) == 6
    torch.testing.assert_close(fresh[0, : tensors["features"].shape[0]], tensors["features"])
    enc.front_end_cache.clear()
    enc.cnn(other, lengths)  # the replaced file is trusted again
    assert len(calls) == 6 and enc.front_end_cache.refused == 1
    # a file recorded for another clip (copied over) is refused too
    victim.write_bytes(enc.front_end_cache.path(enc.cnn_digest(), clip_digest(other[1, :12000])).read_bytes())
    enc.front_end_cache.clear()
    enc.cnn(other, lengths)
    assert enc.front_end_cache.refused == 2 and len(calls) == 7
