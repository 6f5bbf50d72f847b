"""SelfTalk (specs/selftalk.md): parameter counts at paper scale, the CTC and lip-feature terms on
constructed inputs, padded batches equal to single clips, the official checkpoint layout round trip,
and the tiny preset end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_audio_encoders import TINY_HF

from talkbench.datasets.spec import DatasetSpec
from talkbench.methods.selftalk import SelfTalk
from talkbench.methods.selftalk import official as st_official
from talkbench.methods.selftalk.config import SelfTalkConfig
from talkbench.methods.selftalk.model import ctc_loss, masked_mse
from talkbench.methods.selftalk.recognizer import greedy_targets
from talkbench.official_import import paper_model


def _spec(name="vocaset", n_vertices=5023, n_lips=254, alignment="interpolate", fps=30.0):
    return DatasetSpec(name=name, fps=fps, n_vertices=n_vertices, splits={}, train_subjects=("a",),
                       audio_alignment=alignment, regions={"lips": np.arange(n_lips)})


def _linear(i: int, o: int) -> int:
    return i * o + o


def _transformer_layer(d: int, ffn: int, cross: bool) -> int:
    attn = 4 * d * d + 4 * d  # in-projection (3d x d + 3d) and out-projection (d x d + d)
    return attn * (2 if cross else 1) + _linear(d, ffn) + _linear(ffn, d) + 2 * d * (3 if cross else 2)


@pytest.mark.parametrize("preset, dataset, v, lips, d, width", [
    ("paper-vocaset", "vocaset", 5023, 254, 512, 1024),
    ("paper-biwi", "biwi", 23370, 4996, 1024, 2048),
])
def test_parameter_counts_at_paper_scale(preset, dataset, v, lips, d, width):
    biwi = dataset == "biwi"
    spec = _spec(dataset, v, lips, "pairs" if biwi else "interpolate", 25.0 if biwi else 30.0)
    with torch.device("meta"):  # shapes only: no memory, no weights, no download
        model = paper_model("selftalk", preset, spec=spec)
    counts = model.parameter_counts()
    encoder, decoder = _transformer_layer(1024, 2048, False), _transformer_layer(1024, 2048, True)
    interpreter = 6 * encoder + 6 * decoder + 4 * 1024  # and the two final layer norms
    assert counts["transformer"] == interpreter == 126_005_248
    assert counts["transformer_decoder"] == _transformer_layer(d, 2 * d, True)
    assert counts["audio_feature_map"] == _linear(width, d)
    assert counts["vertice_map_r"] == _linear(d, 3 * v)
    assert counts["lip_map"] == _linear(3 * lips, 1024)
    assert counts["lm_head"] == _linear(1024, 33)
    # xlsr-53 large: Wav2Vec2Model, and Wav2Vec2ForCTC with its 33-token head
    assert counts["audio_encoder"] == 315_438_720
    assert counts["text_encoder"] == 315_438_720 + _linear(1024, 33)
    trainable = sum(p.numel() for _, p in model.named_trainable(model.stages()[0]))
    cnn = sum(p.numel() for p in model.audio_encoder.model.feature_extractor.parameters())
    assert trainable == counts["total"] - counts["text_encoder"] - cnn
    # the spec's figures: about 0.77 B (VOCASET) / 0.86 B (BIWI) in all, 0.45-0.54 B trainable
    assert abs(counts["total"] / 1e9 - (0.77 if dataset == "vocaset" else 0.86)) < 0.01
    assert 0.44e9 < trainable < 0.55e9


def test_greedy_targets_merge_repeats_drop_blanks_and_strip_delimiters():
    seq = [[0, 4, 5, 5, 0, 5, 4, 7, 7, 4, 0], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]]
    logits = torch.nn.functional.one_hot(torch.tensor(seq), 9).float()
    targets, lengths = greedy_targets(logits, torch.tensor([11, 11]), delimiter=4)
    assert lengths.tolist() == [4, 0]
    assert targets[0].tolist() == [5, 5, 4, 7]  # "a _ a" stays two tokens, edge delimiters stripped
    targets, lengths = greedy_targets(logits, torch.tensor([9, 11]), delimiter=None)
    assert targets[0, : lengths[0]].tolist() == [4, 5, 5, 4, 7]  # only the first 9 frames


def test_ctc_term_has_its_known_value_on_uniform_posteriors():
    k = 5
    logits = torch.zeros(2, 2, k)  # uniform over k tokens
    # one target token in T = 2 frames: the paths "aa", "_a", "a_" -> -log(3 / k^2)
    loss = ctc_loss(logits, torch.tensor([2, 2]), torch.tensor([[3], [2]]), torch.tensor([1, 1]))
    assert loss.item() == pytest.approx(2 * math.log(k) - math.log(3), rel=1e-5)
    # T = 1 frame, target of length 1: log k; a target longer than the input is zeroed
    one = ctc_loss(logits[:, :1], torch.tensor([1, 1]), torch.tensor([[1, 2], [1, 0]]), torch.tensor([2, 1]))
    assert one.item() == pytest.approx(math.log(k) / 2, rel=1e-5)  # mean of (0 zeroed, log k)


def test_lip_feature_term_is_the_mse_over_valid_frames():
    hidden = torch.randn(2, 6, 8)
    lengths = torch.tensor([6, 3])
    mask = torch.arange(6)[None] < lengths[:, None]
    shifted = hidden + 0.5
    shifted[1, 3:] = 100.0  # padding never counts
    assert masked_mse(shifted, hidden, mask).item() == pytest.approx(0.25, rel=1e-5)


def _tiny_hf_model(spec: DatasetSpec) -> SelfTalk:
    torch.manual_seed(0)
    overrides = ["selftalk.feature_dim=16", "selftalk.interpreter_heads=2", "selftalk.interpreter_layers=1",
                 "selftalk.interpreter_ffn=24", "selftalk.dropout=0.0", "selftalk.interpreter_dropout=0.0"]
    return paper_model("selftalk", "paper-vocaset", overrides, spec=spec, encoder_overrides=TINY_HF)


def _clips(spec, n_frames=(20, 13)):
    g = torch.Generator().manual_seed(5)
    out = []
    for t in n_frames:
        s = int(round(t / spec.fps * 16000))
        out.append((torch.randn(s, generator=g), torch.randn(t, spec.n_vertices, 3, generator=g) * 0.01))
    return out


def _batch(spec, clips):
    from talkbench.datasets.batch import collate
    from talkbench.datasets.clip import Clip

    template = np.zeros((spec.n_vertices, 3), np.float32)
    return collate([Clip(f"c{i}", "a", i, spec.fps, a.numpy(), v.numpy(), template)
                    for i, (a, v) in enumerate(clips)])


def test_a_padded_batch_gives_each_clip_what_it_gives_alone():
    spec = _spec(n_vertices=40, n_lips=6)
    model = _tiny_hf_model(spec).eval()
    clips = _clips(spec)
    with torch.no_grad():
        both = model.forward_train(_batch(spec, clips))
        for b, clip in enumerate(clips):
            alone = model.forward_train(_batch(spec, [clip]))
            t, r = int(alone["frames"][0]), int(alone["rate_len"][0])
            assert int(both["frames"][b]) == t and int(both["rate_len"][b]) == r
            torch.testing.assert_close(both["offsets"][b, :t], alone["offsets"][0], rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(both["lip_features"][b, :r], alone["lip_features"][0], rtol=1e-4,
                                       atol=1e-5)
            torch.testing.assert_close(both["hidden"][b, :r], alone["hidden"][0], rtol=1e-4, atol=1e-5)


def test_official_checkpoint_layout_round_trips_to_identical_outputs(tmp_path):
    spec = _spec(n_vertices=40, n_lips=6)
    model = _tiny_hf_model(spec)
    with torch.no_grad():  # a trained-looking head, so predictions are not the template
        model.vertice_map_r.weight.normal_(0, 0.01)
    path = st_official.save_official(model, tmp_path / "vocaset.pth")
    saved = torch.load(path, weights_only=True)
    prefixes = {k.split(".")[0] for k in saved}
    assert prefixes == {"audio_encoder", "text_encoder", "audio_feature_map", "transformer_decoder",
                        "vertice_map_r", "lip_map", "transformer", "lm_head"}
    assert "text_encoder.lm_head.weight" in saved and "transformer_decoder.layers.0.linear1.weight" in saved
    assert any(k.endswith("pos_conv_embed.conv.weight_g") for k in saved)  # the published names
    fresh = _tiny_hf_model(spec)
    torch.manual_seed(1)
    fresh.vertice_map_r.weight.data.zero_()
    fresh.load_state_dict(st_official.import_checkpoint(fresh, path))
    model.eval(), fresh.eval()
    audio = _clips(spec)[0][0]
    template = torch.zeros(spec.n_vertices, 3)
    assert torch.equal(model.predict(audio, template), fresh.predict(audio, template))
    batch = _batch(spec, _clips(spec))
    with torch.no_grad():
        assert torch.equal(model.loss("train", batch)["loss"], fresh.loss("train", batch)["loss"])


def test_config_rejects_bad_values():
    from talkbench.errors import ConfigError

    with pytest.raises(ConfigError, match="selftalk.feature_dim"):
        SelfTalkConfig(feature_dim=30, n_heads=4)
    with pytest.raises(ConfigError, match="lips"):
        SelfTalk(SelfTalkConfig(), DatasetSpec(name="x", fps=30, n_vertices=4, splits={}, train_subjects=()))


def test_tiny_preset_trains_and_scores(synthtalk_tiny):
    from talkbench import pipeline
    from talkbench.config import load_config

    cfg = load_config("selftalk", preset="tiny", data_root=synthtalk_tiny, overrides=["selftalk.epochs=1"])
    result = pipeline.run(cfg, progress=False)
    import mlflow

    metrics = mlflow.MlflowClient(result.tracking_uri).get_run(result.run_id).data.metrics
    assert np.isfinite(metrics["test/lve"]), sorted(metrics)
    for term in ("vertices", "velocity", "lip_features", "ctc"):  # each loss term is logged
        logged = [v for k, v in metrics.items() if k.endswith(f"/{term}")]
        assert logged and all(np.isfinite(logged)), (term, sorted(metrics))
