"""Each encoder family of the speech layer on a tiny random-initialised config of its real architecture:
built from a local folder and from the local Hugging Face cache (never the network), a missing model
named with where to put it, the layer it returns, what it freezes, and the CTC head of a fine-tuned one."""

from __future__ import annotations

import shutil

import pytest
import torch
from test_audio_encoders import TINY_HF, make_spec

from talkbench.audio.build import build_audio_encoder, encoder_class
from talkbench.audio.config import KINDS, AudioEncoderConfig
from talkbench.audio.hubert import HUBERT
from talkbench.audio.huggingface import ctc_head_weights
from talkbench.errors import ConfigError

HF_KINDS = ("wav2vec2", "hubert", "wavlm")


def _cfg(kind: str, **kw) -> AudioEncoderConfig:
    return AudioEncoderConfig(kind=kind, pretrained=False, hf_overrides=dict(TINY_HF), **kw)


def _audio():
    g = torch.Generator().manual_seed(3)
    return torch.randn(2, 16000, generator=g), torch.tensor([16000, 11000])


def _save_tiny(kind: str, folder, ctc: bool = False):
    torch.manual_seed(0)
    enc = build_audio_encoder(_cfg(kind), make_spec())
    model = enc.model
    if ctc:
        import transformers

        cls = getattr(transformers, enc.family.ctc_class)
        conf = model.config
        conf.vocab_size = 7
        model = cls(conf)
    model.save_pretrained(folder)
    return enc


@pytest.mark.parametrize("kind", HF_KINDS)
def test_each_family_builds_from_a_local_folder_with_the_same_outputs(kind, tmp_path):
    made = _save_tiny(kind, tmp_path / kind)
    cfg = AudioEncoderConfig(kind=kind, name_or_path=str(tmp_path / kind))
    loaded = build_audio_encoder(cfg, make_spec())
    assert type(loaded) is encoder_class(kind) and loaded.family.kind == kind
    audio, lengths = _audio()
    made.eval(), loaded.eval()
    with torch.no_grad():
        (a, la), (b, lb) = made(audio, lengths), loaded(audio, lengths)
    assert torch.equal(a, b) and torch.equal(la, lb)
    assert a.shape == (2, 29, TINY_HF["hidden_size"])  # int(49 / 50 * 30) frames
    assert (a[1, int(lb[1]):] == 0).all()  # padding frames stay zero


def test_a_checkpoint_name_is_read_from_the_local_hugging_face_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    snapshot = cache / "models--tiny--w2v" / "snapshots" / "0123abcd"
    _save_tiny("wav2vec2", snapshot)
    (cache / "models--tiny--w2v" / "refs").mkdir(parents=True)
    (cache / "models--tiny--w2v" / "refs" / "main").write_text("0123abcd")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = build_audio_encoder(AudioEncoderConfig(kind="wav2vec2", name_or_path="tiny/w2v"), make_spec())
    assert enc.out_dim == TINY_HF["hidden_size"]
    shutil.rmtree(cache / "models--tiny--w2v")
    with pytest.raises(ConfigError) as err:
        build_audio_encoder(AudioEncoderConfig(kind="wav2vec2", name_or_path="tiny/w2v"), make_spec())
    text = str(err.value)
    assert "huggingface-cli download tiny/w2v" in text and str(cache) in text
    assert "audio.name_or_path" in text and "facebook/wav2vec2-base-960h" in text  # the known ones


def test_unknown_kind_names_the_known_ones():
    with pytest.raises(ConfigError, match="wavlm"):
        build_audio_encoder(AudioEncoderConfig(kind="whisper"), make_spec())
    assert set(KINDS) == {"mel", "wav2vec2", "hubert", "wavlm", "synthtalk"}


@pytest.mark.parametrize("kind", HF_KINDS)
def test_layer_k_is_that_hidden_state_and_the_last_layer_is_the_default(kind):
    torch.manual_seed(0)
    last = build_audio_encoder(_cfg(kind), make_spec()).eval()
    audio, lengths = _audio()
    outs = {}
    for layer in (0, 1, 2):
        enc = build_audio_encoder(_cfg(kind, layer=layer), make_spec()).eval()
        enc.load_state_dict(last.state_dict())
        with torch.no_grad():
            outs[layer] = enc(audio, lengths)[0]
        assert enc.declaration()["layer"] == f"hidden_states[{layer}]"
    with torch.no_grad():
        default = last(audio, lengths)[0]
    assert not torch.allclose(outs[0], outs[1])
    torch.testing.assert_close(outs[2], default)  # post-norm (base) architectures: the last layer's output
    with pytest.raises(ConfigError, match="audio.layer 3"):
        build_audio_encoder(_cfg(kind, layer=3), make_spec())


def test_frozen_parts_are_declared_and_only_the_rest_trains():
    enc = build_audio_encoder(_cfg("hubert", frozen_layers=1), make_spec())
    decl = enc.declaration()
    assert decl["feature_rate_hz"] == 50 and decl["output_rate_hz"] == 30 and decl["layer"] == "last"
    frozen = set(decl["frozen"])
    grads = {n for n, p in enc.named_parameters() if not p.requires_grad}
    assert frozen == grads  # what it declares is what it freezes
    assert any(n.startswith("model.feature_extractor.") for n in frozen)
    assert any(n.startswith("model.feature_projection.") for n in frozen)
    assert any(n.startswith("model.encoder.layers.0.") for n in frozen)
    assert not any(n.startswith("model.encoder.layers.1.") for n in frozen)
    pairs = build_audio_encoder(_cfg("wavlm"), make_spec(fps=25, alignment="pairs"))
    assert pairs.declaration()["output_rate_hz"] == 50  # two audio frames per motion frame
    with pytest.raises(ConfigError, match="frozen_layers 5"):
        build_audio_encoder(_cfg("hubert", frozen_layers=5), make_spec())


def test_the_ctc_head_of_a_fine_tuned_checkpoint(tmp_path):
    _save_tiny("hubert", tmp_path / "ft", ctc=True)
    cfg = AudioEncoderConfig(kind="hubert", name_or_path=str(tmp_path / "ft"))
    weight, bias = ctc_head_weights(HUBERT, cfg)
    assert weight.shape == (7, TINY_HF["hidden_size"]) and bias.shape == (7,)
    enc = build_audio_encoder(cfg, make_spec())  # the same checkpoint as a plain encoder
    assert enc.out_dim == weight.shape[1]


def test_mel_and_synthtalk_encoders_declare_what_they_freeze():
    mel = build_audio_encoder(AudioEncoderConfig(kind="mel", n_mels=40, conv_dim=16, d_model=16, n_layers=1,
                                                 n_heads=2), make_spec())
    assert mel.declaration()["frozen"] == [] and mel.declaration()["layer"] == "last"
    cfg = AudioEncoderConfig(kind="synthtalk", pretrained=False, n_mels=40, conv_dim=16, d_model=16,
                             n_layers=1, n_heads=2)
    synth = build_audio_encoder(cfg, make_spec())
    frozen = synth.declaration()["frozen"]
    assert frozen and all(n.split(".")[0] in ("conv1", "conv2") for n in frozen)
    assert set(frozen) == {n for n, p in synth.named_parameters() if not p.requires_grad}
