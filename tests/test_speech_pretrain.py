"""The SynthTalk-pretrained speech encoder: disjoint speakers, frame labels, tiny pretraining end to end
(loss, cache, MLflow run), loading into methods' audio encoders, the text-logit head weights, the CLI."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from talkbench.audio.build import build_audio_encoder
from talkbench.audio.config import AudioEncoderConfig
from talkbench.audio.mel import MelEncoder
from talkbench.audio.synthtalk import CNN_MODULES, load_checkpoint, phoneme_head_weights
from talkbench.cli import app
from talkbench.datasets.spec import DatasetSpec
from talkbench.datasets.synthtalk import PRESETS, speaker
from talkbench.datasets.synthtalk.speakers import make_speaker
from talkbench.errors import ConfigError
from talkbench.speech_pretrain import data
from talkbench.speech_pretrain.cache import EXPERIMENT, ensure_pretrained_encoder
from talkbench.speech_pretrain.config import PretrainConfig, preset_config
from talkbench.speech_pretrain.encoder import PhonemeEncoder
from talkbench.speech_pretrain.train import PER_METRIC
from talkbench.tracking import Tracker

SPEC30 = DatasetSpec(name="unit", fps=30, n_vertices=12, splits={}, train_subjects=("s0", "s1"))


def _tiny_audio_cfg(**kw) -> AudioEncoderConfig:
    arch = preset_config("tiny").arch
    fields = {k: getattr(arch, k) for k in ("n_mels", "conv_dim", "d_model", "n_layers", "n_heads")}
    return AudioEncoderConfig(kind="synthtalk", dropout=0.0, **{**fields, **kw})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Tiny pretraining (seconds), made once in a home of its own (other tests of the session may have
    cached the same encoder); returns (result, the tracker it logged to)."""
    home = tmp_path_factory.mktemp("pretrain_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TALKBENCH_HOME", str(home))
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home}/mlflow.db")
        tracker = Tracker()
        yield ensure_pretrained_encoder(preset_config("tiny"), tracker=tracker), tracker


# -- data ---------------------------------------------------------------------------------------


def test_generator_speakers_come_from_seed_1_index_streams():
    # the disjointness argument rests on how the generator draws speakers: check it still does so
    for seed, index in ((0, 0), (3, 11)):
        rng = np.random.default_rng(np.random.SeedSequence([seed, 1, index]))
        ours = make_speaker(rng, "x", "extra", 0.8)
        assert ours.latent == speaker(seed, index, 0.8).latent


def test_pretraining_speakers_are_disjoint_from_every_benchmark_speaker():
    cfg = PretrainConfig()
    held = range(data.HELDOUT_OFFSET, data.HELDOUT_OFFSET + cfg.heldout_speakers)
    numbers = [*range(cfg.train_speakers), *held]
    # structural: benchmark streams are [seed, 1, index]; ours have SPEAKER_TAG (not 1) in that place
    assert all(data.speaker_entropy(cfg.seed, n)[1] != 1 for n in numbers)
    assert data.SPEAKER_TAG not in range(1, 7)  # the generator's own stream purposes
    ours = {data.pretrain_speaker(cfg.seed, n).latent for n in numbers}
    assert len(ours) == len(numbers)
    n_max = max(p.n_speakers for p in PRESETS.values())
    bench = {speaker(seed, i, 0.8).latent for seed in range(10) for i in range(n_max)}
    assert not ours & bench
    names = {data.pretrain_speaker(cfg.seed, n).name for n in numbers}
    assert not any(name.startswith("SynthTalk_S") for name in names)
    # held-out pretraining speakers are not training speakers of the encoder either
    assert max(range(cfg.train_speakers)) < data.HELDOUT_OFFSET


def test_frame_labels_have_the_encoders_frame_count_and_follow_the_sound():
    u = data.utterance(0, 5, 0, (4, 5))
    n = torch.tensor([len(u.audio)])
    model = PhonemeEncoder(preset_config("tiny").arch).eval()
    _, out_len = model(torch.from_numpy(u.audio)[None], n)
    assert int(out_len[0]) == len(u.labels)
    for k in (400, 401, 719, 720, 16000, 16321):
        frames = torch.div(MelEncoder.frames_100hz(torch.tensor(k)) - 1, 2, rounding_mode="floor") + 1
        assert data.n_frames_50hz(k) == int(frames)
    # energy of the 20 ms around each frame centre: vowels are loud, silence is quiet
    centres = 320 * np.arange(len(u.labels)) + 200
    energy = np.array([np.mean(u.audio[max(0, c - 160): c + 160] ** 2) for c in centres])
    vowel = np.isin(u.labels, [data.PHONEMES.index(v) for v in "aeiou"])
    sil = u.labels == data.PHONEMES.index("sil")
    assert vowel.any() and sil.any()
    assert np.median(energy[vowel]) > 20 * np.median(energy[sil])


def test_bad_settings_name_the_option():
    with pytest.raises(ConfigError, match="epochs"):
        preset_config("tiny", epochs=0)
    with pytest.raises(ConfigError, match="unknown setting"):
        preset_config("tiny", epoch=3)
    with pytest.raises(ConfigError, match="preset"):
        preset_config("huge")


# -- pretraining, cache, tracking -----------------------------------------------------------------


def test_tiny_pretraining_learns_and_is_logged(tiny):
    result, tracker = tiny
    assert not result.cached and result.path.is_file()
    losses = result.meta["losses"]
    assert losses[-1] < losses[0]
    run = tracker.get_run(result.meta["run_id"])
    assert run.info.experiment_id == tracker.ensure_experiment(EXPERIMENT)
    assert run.info.status == "FINISHED"
    assert run.data.metrics[PER_METRIC] == pytest.approx(result.meta[PER_METRIC])
    assert 0.0 <= run.data.metrics[PER_METRIC] <= 1.0
    assert run.data.params["epochs"] == "3"
    assert "encoder/encoder.pt" in tracker.list_artifacts(result.meta["run_id"], "encoder")
    history = tracker.metric_history(result.meta["run_id"], "pretrain/loss")
    assert list(history["step"]) == [0, 1, 2]


def test_second_call_is_a_cache_hit_without_a_new_run(tiny):
    result, tracker = tiny
    runs_before = len(tracker.search_runs(EXPERIMENT))
    again = ensure_pretrained_encoder(preset_config("tiny"), tracker=tracker)
    assert again.cached and again.path == result.path
    assert again.meta["run_id"] == result.meta["run_id"]
    assert len(tracker.search_runs(EXPERIMENT)) == runs_before
    # another setting is another key
    assert preset_config("tiny", seed=1).cache_key() != preset_config("tiny").cache_key()


# -- loading into methods ------------------------------------------------------------------------


def test_pretrained_encoder_loads_with_a_frozen_cnn(tiny):
    result, _ = tiny
    enc = build_audio_encoder(_tiny_audio_cfg(name_or_path=str(result.path)), SPEC30)
    state = load_checkpoint(str(result.path))["encoder"]
    for name, tensor in enc.state_dict().items():
        assert torch.equal(tensor, state[name]), name
    for name, p in enc.named_parameters():
        assert p.requires_grad == (name.split(".")[0] not in CNN_MODULES), name
    prefixes = enc.trainable_prefixes()
    assert not any(n.startswith(prefixes) for n, _ in enc.named_parameters() if n.startswith(CNN_MODULES))
    assert any("encoder.layers.0" in n for n, _ in enc.named_parameters() if n.startswith(prefixes))
    # audio -> motion-rate features, gradients reach the transformer but not the CNN
    audio = torch.randn(2, 16000)
    feats, lengths = enc(audio, torch.tensor([16000, 12000]), torch.tensor([30, 22]))
    assert feats.shape[:2] == (2, 30) and lengths.tolist() == [30, 22]
    feats.sum().backward()
    assert enc.conv1.weight.grad is None and enc.projection.weight.grad is not None


def test_unfrozen_and_random_variants():
    enc = build_audio_encoder(_tiny_audio_cfg(pretrained=False, freeze_cnn=False), SPEC30)
    assert enc.trainable_prefixes() == ("",) and enc.checkpoint is None
    assert all(p.requires_grad for p in enc.parameters())


def test_faceformer_trains_all_but_the_cnn(tiny):
    from talkbench.methods.faceformer.config import FaceFormerConfig
    from talkbench.methods.faceformer.model import FaceFormer

    result, _ = tiny
    audio = _tiny_audio_cfg(name_or_path=str(result.path))
    model = FaceFormer(FaceFormerConfig(feature_dim=16, dropout=0.0, audio=audio), SPEC30)
    trainable = {n for n, _ in model.named_trainable(model.stages()[0])}
    assert "audio.conv1.weight" not in trainable and "audio.projection.weight" in trainable
    state = load_checkpoint(str(result.path))["encoder"]
    assert torch.equal(model.audio.encoder.layers[0].linear1.weight, state["encoder.layers.0.linear1.weight"])


def test_loading_errors_name_the_option(tiny):
    result, _ = tiny
    with pytest.raises(ConfigError, match="audio.d_model=64"):
        build_audio_encoder(_tiny_audio_cfg(name_or_path=str(result.path), d_model=64), SPEC30)
    with pytest.raises(ConfigError, match="nowhere"):
        build_audio_encoder(_tiny_audio_cfg(name_or_path="/nowhere/encoder.pt"), SPEC30)
    # the default encoder is not made in tests: the error says how to make it
    with pytest.raises(ConfigError, match="bench pretrain-encoder"):
        build_audio_encoder(dataclasses.replace(_tiny_audio_cfg(), name_or_path="synthtalk"), SPEC30)


def test_phoneme_head_weights_for_a_text_logit_head(tiny):
    result, _ = tiny
    head = load_checkpoint(str(result.path))["head"]
    w, b = phoneme_head_weights(32, str(result.path))
    n = len(data.PHONEMES)
    assert w.shape == (32, head["weight"].shape[1]) and b.shape == (32,)
    assert torch.equal(w[:n], head["weight"]) and torch.equal(b[:n], head["bias"])
    assert torch.all(w[n:] == 0) and torch.all(b[n:] < head["bias"].min())
    with pytest.raises(ConfigError, match="memory_slots"):
        phoneme_head_weights(8, str(result.path))


# -- command -------------------------------------------------------------------------------------


def test_cli_reports_the_cached_encoder(tiny):
    result, _ = tiny
    out = CliRunner().invoke(app, ["pretrain-encoder", "--preset", "tiny"])
    assert out.exit_code == 0, out.output
    assert "cached" in out.output and str(result.path) in out.output and "phoneme error" in out.output
    bad = CliRunner().invoke(app, ["pretrain-encoder", "--preset", "huge"])
    assert bad.exit_code == 2 and "preset" in bad.output


def test_memorytalker_text_head_from_the_encoder(tiny):
    from talkbench.datasets.spec import Split
    from talkbench.methods.memorytalker.config import MemoryTalkerConfig
    from talkbench.methods.memorytalker.model import MemoryTalker

    result, _ = tiny
    spec = DatasetSpec(name="fake", fps=30.0, n_vertices=12, splits={"train": Split(("A", "B"))},
                       train_subjects=("A", "B"), regions={"lips": np.array([1, 2, 3])})

    def build(init: str, **audio) -> MemoryTalker:
        cfg = MemoryTalkerConfig(audio=_tiny_audio_cfg(name_or_path=str(result.path), **audio),
                                 memory_slots=32, feature_dim=16, n_heads=2, ffn_dim=32, style_channels=16,
                                 style_out_dim=24, style_dense_blocks=2, text_head_init=init)
        return MemoryTalker(cfg, spec)

    w, b = phoneme_head_weights(32, str(result.path))
    model = build("encoder")
    assert torch.equal(model.lm_head.weight, w) and torch.equal(model.lm_head.bias, b)
    assert not torch.equal(build("random").lm_head.weight, w)
    with pytest.raises(ConfigError, match="text_head_init"):
        MemoryTalkerConfig(text_head_init="phonemes").validate()
    with pytest.raises(ConfigError, match="audio.kind 'synthtalk'"):
        MemoryTalkerConfig(text_head_init="encoder").validate()


def test_ensure_for_audio_only_acts_on_the_default_synthtalk_encoder(tiny):
    from talkbench.speech_pretrain.cache import ensure_for_audio

    result, _ = tiny
    assert ensure_for_audio(AudioEncoderConfig(kind="mel")) is None
    assert ensure_for_audio(_tiny_audio_cfg(pretrained=False)) is None
    assert ensure_for_audio(_tiny_audio_cfg(name_or_path=str(result.path))) is None


@pytest.mark.slow
def test_pretraining_is_deterministic_for_a_seed(tiny):
    from talkbench.speech_pretrain.train import pretrain, torch_threads

    result, _ = tiny
    with torch_threads(1):
        model, figures = pretrain(preset_config("tiny"))
    state = load_checkpoint(str(result.path))
    for name, tensor in model.encoder.state_dict().items():
        assert torch.equal(tensor, state["encoder"][name]), name
    assert figures[PER_METRIC] == result.meta[PER_METRIC]
