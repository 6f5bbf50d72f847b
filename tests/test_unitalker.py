"""UniTalker (specs/unitalker.md): parameter counts at paper scale, identical outputs and losses to a
transcription of the released forward on identical weights (loaded through the importer), the PCA
head's reconstruction, the pivot identity, padded batches, and the tiny preset end to end."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from _unitalker_official import OfficialUniTalker, processor_input
from test_audio_encoders import TINY_HF

from talkbench.datasets.batch import collate
from talkbench.datasets.clip import Clip
from talkbench.datasets.spec import DatasetSpec
from talkbench.errors import ConfigError, TalkbenchError
from talkbench.methods.unitalker import UniTalker
from talkbench.methods.unitalker import official as ut_official
from talkbench.methods.unitalker.config import UniTalkerConfig
from talkbench.official_import import paper_model

D0_D7_IDENTITIES = 6 + 12 + 13 + 141 + 24 + 719 + 8 + 11 + 1  # dataset_config subjects + the pivot


def _spec(name="vocaset", n_vertices=5023, subjects=("a", "b", "c"), fps=30.0):
    return DatasetSpec(name=name, fps=fps, n_vertices=n_vertices, splits={}, train_subjects=subjects)


def _linear(i: int, o: int) -> int:
    return i * o + o


def _conv_block(c_in: int, c_out: int, k: int = 3) -> int:
    conv = c_in * c_out * k + c_out
    return conv + 2 * c_out + (conv if c_in != c_out else 0)  # + layer norm, + residual conv if widths differ


@pytest.mark.parametrize("preset, encoder, width, spec_figure, released_total", [
    ("paper-b", 94_381_936, 768, 95, 96_053_300),  # WavLMModel of microsoft/wavlm-base-plus
    ("paper-l", 315_438_720, 1024, 315, 317_175_620),  # Wav2Vec2Model of facebook/wav2vec2-large-xlsr-53
])
def test_parameter_counts_at_paper_scale(preset, encoder, width, spec_figure, released_total):
    with torch.device("meta"):  # shapes only: no memory, no weights, no download
        model = paper_model("unitalker", preset, [f"unitalker.n_identities={D0_D7_IDENTITIES}"],
                            spec=_spec(), dataset="vocaset")
    counts = model.parameter_counts()
    assert counts["audio_encoder"] == encoder
    assert abs(encoder / 1e6 - spec_figure) < 1.0  # the spec's ~95 M (B) / ~315 M (L)
    tcn = _conv_block(256 + 64, 256) + 2 * _conv_block(256, 256)
    assert counts["decoder"] == D0_D7_IDENTITIES * 64 + _linear(width, 256) + tcn
    assert counts["out_head_dict"] == _linear(256, 512)  # min(pca_dim 512, 15069)
    assert sum(b.numel() for b in model.pca_layer_dict.buffers()) == 512 * 15069 + 15069  # buffers only
    released = counts["audio_encoder"] + counts["decoder"] + sum(
        _linear(256, n) for n in ut_official.RELEASE_HEADS.values())
    assert released == released_total  # the D0-D7 file's parameters: encoder, decoder and six heads
    warmup, train = model.stages()
    assert (warmup.name, warmup.epochs, train.epochs) == ("warmup", 1, 99)
    cnn = sum(p.numel() for p in model.audio_encoder.model.feature_extractor.parameters())
    body = counts["decoder"] + counts["out_head_dict"]
    assert sum(p.numel() for _, p in model.named_trainable(warmup)) == body
    assert sum(p.numel() for _, p in model.named_trainable(train)) == counts["total"] - cnn


# -- tiny models of the real architecture ---------------------------------------------------------
def _tiny(spec, *sets) -> UniTalker:
    torch.manual_seed(0)
    overrides = ["unitalker.decoder_dim=16", "unitalker.identity_dim=8", "unitalker.pca_dim=12",
                 "unitalker.dropout=0.0", *sets]
    return paper_model("unitalker", "paper-b", overrides, spec=spec, encoder_overrides=TINY_HF,
                       dataset="vocaset")  # the config only; the model is built on ``spec``


def _clips(spec, n_frames=(20, 13), seed=5):
    g = torch.Generator().manual_seed(seed)
    template = np.random.default_rng(seed).normal(size=(spec.n_vertices, 3)).astype(np.float32)
    out = []
    for i, t in enumerate(n_frames):
        s = int(round(t / spec.fps * 16000))
        audio = torch.randn(s, generator=g).numpy()
        verts = template + 0.05 * torch.randn(t, spec.n_vertices, 3, generator=g).numpy()
        out.append(Clip(f"c{i}", spec.train_subjects[i % len(spec.train_subjects)], i, spec.fps, audio,
                        verts, template))
    return out


def _trained_looking(model: UniTalker, clips) -> UniTalker:
    """Random heads and identities (they start at zero) and a basis fitted on the clips."""
    model.prepare(clips)
    with torch.no_grad():
        for p in model.out_head_dict.parameters():
            p.normal_(0, 0.3)
        model.decoder.identity.weight.normal_(0, 1.0)
    return model.eval()


def test_outputs_and_losses_match_the_released_forward_through_the_importer(tmp_path):
    import transformers

    spec = _spec(n_vertices=30)
    clips = _clips(spec)
    ours = _trained_looking(_tiny(spec), clips)
    path = ut_official.save_official(ours, tmp_path / "UniTalker-B-D0-D7.pt", legacy_names=False)
    saved = torch.load(path, weights_only=True)
    conf = transformers.WavLMConfig(**TINY_HF)
    release = OfficialUniTalker(transformers.WavLMModel(conf), ours.n_identities, 16, 3, 8,
                                {"FLAME_5023_vertices": (12, 90)}, pca_dim=12)
    release.load_state_dict(saved, strict=True)  # the release's names and shapes, every key
    release.eval()
    fresh = UniTalker(ours.config, spec)
    fresh.load_state_dict(ut_official.import_checkpoint(fresh, path))
    fresh.eval()
    annot = "FLAME_5023_vertices"
    with torch.no_grad():
        for clip in clips:
            audio, template = processor_input(clip.audio), torch.from_numpy(clip.template).reshape(1, -1)
            # inference without an identity: the pivot, round(S / 16000 * fps) frames
            expected, _, _ = release(audio, template, None, None, annot, fps=spec.fps)
            got = fresh.predict(torch.from_numpy(clip.audio), torch.from_numpy(clip.template))
            torch.testing.assert_close(got.reshape(1, len(got), -1), expected, rtol=1e-4, atol=1e-5)
            # the training loss with the clip's own identity (pivot draws off)
            data = torch.from_numpy(clip.vertices).reshape(1, len(clip.vertices), -1)
            idx = torch.tensor([spec.speaker_index(clip.subject)])
            total, rec, pca = release.train_loss(audio, template, data, idx, annot)
            batch = collate([clip], spec.speaker_index)
            mine = fresh.loss("train", batch)
            torch.testing.assert_close(mine["vertices"], rec, rtol=1e-4, atol=1e-7)
            torch.testing.assert_close(mine["pca"], pca, rtol=1e-4, atol=1e-7)
            torch.testing.assert_close(mine["loss"], total, rtol=1e-4, atol=1e-7)


def test_import_reads_dims_from_shapes_drops_other_heads_and_takes_the_release_basis(tmp_path):
    spec = _spec(n_vertices=30)
    clips = _clips(spec)
    ours = _trained_looking(_tiny(spec, "unitalker.tcn_layers=2"), clips)
    path = ut_official.save_official(ours, tmp_path / "a.pt", with_pca=False)  # train.py's filter
    state = torch.load(path, weights_only=True)
    assert not any(k.startswith("pca_layer_dict") for k in state)
    assert any(k.endswith("pos_conv_embed.conv.weight_g") for k in state)  # the published names
    state["out_head_dict.BIWI_23370_vertices.weight"] = torch.zeros(7, 16)  # another dataset's head
    state["out_head_dict.BIWI_23370_vertices.bias"] = torch.zeros(7)
    torch.save(state, path)
    sets = ut_official.config_overrides(path)
    assert {"unitalker.n_identities=4", "unitalker.decoder_dim=16", "unitalker.tcn_layers=2",
            "unitalker.identity_dim=8", "unitalker.pca_dim=12", "unitalker.head_layers=1"} <= set(sets)
    fresh = UniTalker(UniTalkerConfig(audio=ours.config.audio, dropout=0.0, n_identities=4, decoder_dim=16,
                                      identity_dim=8, tcn_layers=2, pca_dim=12), spec)
    with pytest.raises(TalkbenchError, match="carries no PCA basis.*official_pca"):
        ut_official.import_checkpoint(fresh, path)
    basis = ours.pca_layer_dict["vocaset"]
    npz = tmp_path / "pca.npz"
    np.savez(npz, components_to_data=basis.feat_to_data.numpy(), original_data_mean=basis.data_bias.numpy(),
             data_components_mean=np.zeros(12), data_components_std=np.ones(12))
    fresh.config.official_pca = str(npz)
    fresh.load_state_dict(ut_official.import_checkpoint(fresh, path))
    fresh.eval()
    audio, template = torch.from_numpy(clips[0].audio), torch.from_numpy(clips[0].template)
    assert torch.equal(fresh.predict(audio, template), ours.predict(audio, template))
    other = UniTalker(fresh.config, _spec("multiface", 30))
    with pytest.raises(TalkbenchError, match="no head 'meshtalk_6172_vertices'.*BIWI_23370_vertices"):
        ut_official.import_checkpoint(other, path)


def test_pca_head_reconstructs_the_motion_within_the_basis_error():
    spec = _spec(n_vertices=20)
    rng = np.random.default_rng(0)
    template = rng.normal(size=(20, 3)).astype(np.float32)
    modes = rng.normal(size=(5, 60))
    clips = []
    for i in range(6):  # rank-5 motion plus a little noise
        t = 25
        offsets = rng.normal(size=(t, 5)) @ modes + 0.01 * rng.normal(size=(t, 60))
        clips.append(Clip(f"c{i}", "a", i, 30.0, np.zeros(8000, np.float32),
                          (template + offsets.reshape(t, 20, 3)).astype(np.float32), template))
    data = np.concatenate([c.vertices.reshape(25, -1) - template.reshape(1, -1) for c in clips])
    singular = np.linalg.svd(data - data.mean(0), compute_uv=False)
    for k in (5, 12):
        model = UniTalker(UniTalkerConfig(audio=_tiny(spec).config.audio, pca_dim=k), spec)
        model.prepare(clips)
        basis = model.pca_layer_dict["vocaset"]
        head = model.out_head_dict["vocaset"]
        assert head.out_features == k and not head.weight.any()  # zero-initialised
        x = torch.from_numpy(data)
        # the head's best output is the motion's coefficients; decoded, it is the motion up to the
        # energy the basis leaves out
        error = float((basis.decode(basis.encode(x)) - x).pow(2).mean())
        own = float((singular[k:] ** 2).sum() / data.size)
        assert error == pytest.approx(own, rel=1e-3, abs=1e-9)
        assert error < 1e-4 * float(x.pow(2).mean())
    # a basis no larger than the data's rank still decodes coefficients it encodes exactly
    torch.testing.assert_close(basis.encode(basis.decode(torch.ones(1, k))), torch.ones(1, k), atol=1e-4,
                               rtol=1e-4)


def test_pivot_identity_is_used_without_an_identity_and_for_unseen_speakers():
    spec = _spec(n_vertices=10)
    clips = _clips(spec)
    model = _trained_looking(_tiny(spec), clips)
    assert model.pivot == len(spec.train_subjects) == model.n_identities - 1
    audio, template = torch.from_numpy(clips[0].audio), torch.from_numpy(clips[0].template)
    none, pivot, first = model.predict_conditions(audio, template, [None, model.pivot, 0])
    assert torch.equal(none, pivot) and not torch.allclose(none, first)
    torch.testing.assert_close(model.predict(audio, template), none)
    torch.testing.assert_close(model.predict(audio, template, 0), first)  # batched conditions are exact
    speakers = torch.tensor([0, 2, -1])
    assert model.identities(speakers).tolist() == [0, 2, model.pivot]  # eval: no pivot draws
    model.train()
    model.config.pivot_prob = 1.0
    assert model.identities(speakers).tolist() == [model.pivot] * 3
    model.config.pivot_prob = 0.0
    assert model.identities(speakers).tolist() == [0, 2, model.pivot]


@pytest.mark.parametrize("decoder", ["conv", "transformer"])
def test_a_padded_batch_gives_each_clip_what_it_gives_alone(decoder):
    spec = _spec(n_vertices=10)
    clips = _clips(spec, (21, 12))
    model = _trained_looking(_tiny(spec, f"unitalker.decoder={decoder}", "unitalker.n_heads=2"), clips)
    with torch.no_grad():
        both = collate(clips, spec.speaker_index)
        hidden, frames = model.features(both.audio, both.audio_lengths, both.lengths, both.speaker)
        for b, clip in enumerate(clips):
            one = collate([clip], spec.speaker_index)
            alone, n = model.features(one.audio, one.audio_lengths, one.lengths, one.speaker)
            assert int(frames[b]) == int(n[0]) == len(clip.vertices)
            torch.testing.assert_close(hidden[b, : int(n[0])], alone[0], rtol=1e-4, atol=1e-5)


def test_blendshape_head_predicts_weights_with_a_vertex_space_loss_through_the_rig():
    from talkbench.datasets.rig import Rig

    channels = ("jawOpen", "mouthClose", "eyeBlinkLeft")
    rng = np.random.default_rng(1)
    rig = Rig(channels, {s: rng.normal(size=(3, 10, 3)).astype(np.float32) for s in ("a", "b")})
    spec = DatasetSpec(name="arkit", fps=30.0, n_vertices=10, splits={}, train_subjects=("a", "b"),
                       target="blendshapes", channels=channels, rig=rig)
    model = _tiny(spec)
    assert model.out_head_dict["arkit"].out_features == 3 and "arkit" not in model.pca_layer_dict
    clips = [dataclasses.replace(c, weights=rng.uniform(size=(len(c.vertices), 3)).astype(np.float32))
             for c in _clips(spec)]
    batch = collate(clips, spec.speaker_index)
    out = model.eval().loss("train", batch)
    # zero-initialised head: predictions are all-zero weights
    mask = batch.mask[..., None].float()
    w = (batch.weights ** 2 * mask).sum() / (mask.sum() * 3)
    basis = torch.from_numpy(np.mean([rig.deltas[s] for s in ("a", "b")], 0).reshape(3, -1))
    v = ((batch.weights @ basis) ** 2 * mask).sum() / (mask.sum() * 30)
    torch.testing.assert_close(out["weights"], w)
    torch.testing.assert_close(out["blendshape_vertices"], v)
    torch.testing.assert_close(out["loss"], 1e-4 * w + v)
    pred = model.predict(torch.from_numpy(clips[0].audio), torch.zeros(10, 3))
    assert pred.shape == (len(clips[0].vertices), 3)


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="unitalker.decoder"):
        UniTalkerConfig(decoder="lstm")
    with pytest.raises(ConfigError, match="pivot_prob"):
        UniTalkerConfig(pivot_prob=1.5)
    with pytest.raises(ConfigError, match="encoder_warmup_epochs"):
        UniTalkerConfig(epochs=1, encoder_warmup_epochs=2)
    with pytest.raises(ConfigError, match="interpolate_at"):
        UniTalker(UniTalkerConfig(audio={"kind": "wavlm", "pretrained": False, "hf_overrides": TINY_HF}),
                  _spec(n_vertices=4))


def test_tiny_preset_trains_and_scores(synthtalk_tiny):
    import mlflow

    from talkbench import pipeline
    from talkbench.config import load_config

    cfg = load_config("unitalker", preset="tiny", data_root=synthtalk_tiny)
    result = pipeline.run(cfg, progress=False)
    metrics = mlflow.MlflowClient(result.tracking_uri).get_run(result.run_id).data.metrics
    assert np.isfinite(metrics["test/lve"]), sorted(metrics)
    for term in ("warmup/train/loss", "train/train/loss", "train/train/vertices", "train/train/pca"):
        assert np.isfinite(metrics[term]), (term, sorted(metrics))


def test_bench_import_of_a_release_file_is_scored_with_its_licence(tmp_path):
    import mlflow
    from _paper_encoder import ENCODER
    from datasets_fakes import make_vocaset_like
    from test_import_cli import bench, encoder_set

    from talkbench import contract, load_model

    torch.manual_seed(0)
    model = paper_model("unitalker", "paper-b", [f"unitalker.n_identities={D0_D7_IDENTITIES}"],
                        encoder_overrides=ENCODER, dataset="vocaset")
    with torch.no_grad():  # a trained-looking head and basis
        model.out_head_dict["vocaset"].weight.normal_(0, 0.05)
        model.pca_layer_dict["vocaset"].feat_to_data.normal_(0, 0.01)
    path = ut_official.save_official(model.eval(), tmp_path / "UniTalker-B-D0-D7.pt")
    data = make_vocaset_like(tmp_path / "vocaset", seconds=1.0)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    args = ("import", "--method", "unitalker", "--checkpoint", str(path), "--preset", "paper-b",
            "--data-root", str(data), "--set", encoder_set("unitalker"), "--tracking-uri", uri)
    missing = bench(*args)
    assert missing.exit_code != 0 and "--dataset" in missing.output
    out = bench(*args, "--dataset", "vocaset")
    assert out.exit_code == 0, out.output
    run = mlflow.MlflowClient(uri).get_run(out.stdout.split()[1])
    assert run.data.tags[contract.Tag.LICENCE].startswith("Apache-2.0")
    assert contract.test_metric("lve") in run.data.metrics
    audio = torch.randn(16000, generator=torch.Generator().manual_seed(3))
    template = torch.randn(5023, 3, generator=torch.Generator().manual_seed(3))
    inputs = {"audio": audio.numpy(), "template": template.numpy()}
    got = load_model(run.info.run_id, uri).predict(None, inputs)
    np.testing.assert_allclose(got, model.predict(audio, template)[None].numpy(), atol=1e-5, rtol=0)


def test_tiny_preset_on_the_blendshape_variant_predicts_weights(tmp_path):
    import mlflow

    from talkbench import pipeline
    from talkbench.config import load_config
    from talkbench.datasets.synthtalk import generate

    root = generate(tmp_path / "blendshape", preset="tiny", seed=0, variant="blendshape")
    cfg = load_config("unitalker", dataset="synthtalk-blendshape", preset="tiny", data_root=root,
                      overrides=["eval.n_boot=20"])
    result = pipeline.run(cfg, tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", progress=False)
    metrics = mlflow.MlflowClient(result.tracking_uri).get_run(result.run_id).data.metrics
    assert 0 < metrics["test/bs_mse"] and 0 < metrics["test/lve"]  # weights, and meshes through the rig
    for term in ("train/train/weights", "train/train/blendshape_vertices"):
        assert np.isfinite(metrics[term]), (term, sorted(metrics))


def test_finetune_head_starts_encoder_and_decoder_from_a_file_and_the_new_head_from_zero(tmp_path):
    spec = _spec(n_vertices=30)
    source = _trained_looking(_tiny(spec, "unitalker.n_identities=6"), _clips(spec))
    path = ut_official.save_official(source, tmp_path / "UniTalker-B-D0-D7.pt")
    target_spec = _spec("multiface", n_vertices=12, subjects=("x", "y"))
    model = _tiny(target_spec, f"unitalker.finetune_head={path}")
    model.prepare(_clips(target_spec))
    mine, theirs = model.state_dict(), source.state_dict()
    for key in mine:
        if key.startswith("audio_encoder.") or (key.startswith("decoder.") and "identity" not in key):
            assert torch.equal(mine[key], theirs[key]), key
    # three rows (two subjects + pivot), each the file's pivot row
    assert torch.equal(model.decoder.identity.weight, theirs["decoder.identity.weight"][-1:].repeat(3, 1))
    assert not model.out_head_dict["multiface"].weight.any()
    assert model.pca_layer_dict["multiface"].feat_to_data.any()  # its own basis, fitted on its clips
    bad = tmp_path / "other.pt"
    torch.save({"obj_vector.weight": torch.zeros(2, 2)}, bad)
    other = _tiny(target_spec, f"unitalker.finetune_head={bad}")
    with pytest.raises(TalkbenchError, match="faceformer checkpoint, not unitalker"):
        other.prepare(_clips(target_spec))
