"""Official checkpoints: our weights saved in the official naming and file layout load back exactly;
files of another method, another preset or with a missing key fail with one line naming them."""

from __future__ import annotations

import sys

import pytest
import torch
from _paper_encoder import ENCODER

from talkbench import official_import
from talkbench.errors import TalkbenchError
from talkbench.methods import official as common
from talkbench.methods.codetalker import official as ct_official
from talkbench.methods.faceformer import official as ff_official
from talkbench.methods.memorytalker import official as mt_official

PRESETS = ("paper-vocaset", "paper-biwi")
# CodeTalker at its paper structure (io linears, output bias, layer counts) with narrow widths
SMALL_CODETALKER = [
    "codetalker.hidden=64",
    "codetalker.vq_ffn=32",
    "codetalker.d_model=32",
    "codetalker.ffn=32",
    "codetalker.n_codes=16",
    "codetalker.code_dim=4",  # VOCASET: 16 groups x 4 = hidden 64; BIWI maps 64 -> 8 x 4 by its io linears
]


def build(method: str, preset: str, seed: int, overrides=()):
    torch.manual_seed(seed)
    model = official_import.paper_model(method, preset, overrides=overrides, encoder_overrides=ENCODER)
    # zero-initialised output heads would make every prediction the template: give them signal
    head = {
        "faceformer": lambda m: m.vertice_map_r.weight,
        "codetalker": lambda m: m.predictor.feat_map.weight,
        "memorytalker": lambda m: m.output_proj.weight,
    }[method](model)
    torch.nn.init.normal_(head, std=0.05)
    if method == "memorytalker":
        model.stylized.fill_(True)  # a stage-2 model predicts through the style branch
    return model.eval()


def predict(model, seed: int = 3) -> torch.Tensor:
    audio = torch.randn(16000, generator=torch.Generator().manual_seed(seed))
    template = torch.randn(model.spec.n_vertices, 3, generator=torch.Generator().manual_seed(seed))
    if model.name == "codetalker":
        return model.predict_conditions(audio, template, [1], mode="fast")
    return model.predict(audio, template, 1 if model.uses_speaker_id else None)


def save(model, tmp_path):
    """(checkpoint, vqvae) written as the official code writes them."""
    if model.name == "codetalker":
        return ct_official.save_official(model, tmp_path / "model.pth.tar", tmp_path / "vqvae.pth.tar")
    converter = common.converter(model.name)
    return converter.save_official(model, tmp_path / "model.pth"), None


def round_trip(method: str, preset: str, tmp_path, overrides=()) -> None:
    original = build(method, preset, seed=0, overrides=overrides)
    expected = predict(original)
    weights = {k: v.clone() for k, v in original.state_dict().items()}
    checkpoint, vqvae = save(original, tmp_path)
    del original  # paper-size models: never two copies plus a checkpoint in memory
    fresh = build(method, preset, seed=1, overrides=overrides)
    state = common.converter(method).import_checkpoint(fresh, checkpoint, vqvae=vqvae)
    fresh.load_state_dict(state)  # strict: every key of ours is there, nothing else
    assert set(state) == set(weights)
    assert all(torch.equal(state[k], weights[k]) for k in weights)
    assert torch.equal(predict(fresh), expected)


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("method", ["faceformer", "memorytalker"])
def test_round_trip_paper_presets(method, preset, tmp_path):
    round_trip(method, preset, tmp_path)


@pytest.mark.parametrize("preset", PRESETS)
def test_round_trip_codetalker_paper_structure(preset, tmp_path):
    round_trip("codetalker", preset, tmp_path, overrides=SMALL_CODETALKER)


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
def test_round_trip_codetalker_paper_size(preset, tmp_path):
    round_trip("codetalker", preset, tmp_path)


def test_official_file_layouts(tmp_path):
    ff = build("faceformer", "paper-vocaset", 0)
    bare = torch.load(ff_official.save_official(ff, tmp_path / "ff.pth"), weights_only=True)
    assert "obj_vector.weight" in bare and "PPE.pe" in bare
    assert "audio_encoder.encoder.pos_conv_embed.conv.weight_g" in bare  # the published files' naming
    assert any(k.startswith("transformer_decoder.layers.0.self_attn.in_proj_weight") for k in bare)
    ct = build("codetalker", "paper-biwi", 0, SMALL_CODETALKER)
    stage2, stage1 = ct_official.save_official(ct, tmp_path / "s2.pth.tar", tmp_path / "s1.pth.tar")
    s2 = torch.load(stage2, weights_only=True)["state_dict"]
    s1 = torch.load(stage1, weights_only=True)["state_dict"]
    assert not any(k.startswith("autoencoder.") for k in s2) and "learnable_style_emb.weight" in s2
    qkv = s1["encoder.encoder_transformer.net.2.fn.fn.to_qkv.weight"]  # block 1's attention
    block = ct.vqvae.encoder.transformer.blocks[1]
    assert torch.equal(qkv, torch.cat([block.attn.q.weight, block.attn.k.weight, block.attn.v.weight]))
    assert torch.equal(s1["encoder.encoder_transformer.net.3.fn.fn.l1.weight"], block.mlp[0].weight)
    assert "encoder.encoder_linear_embedding_post.weight" in s1  # BIWI's io linears
    assert "decoder.vertice_map_reverse.bias" not in s1  # BIWI: no output bias


def one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def test_missing_key_names_key_and_file(tmp_path):
    model = build("faceformer", "paper-vocaset", 0)
    path = ff_official.save_official(model, tmp_path / "vocaset.pth")
    state = torch.load(path, weights_only=True)
    del state["vertice_map.weight"]
    torch.save(state, path)
    with pytest.raises(TalkbenchError) as err:
        ff_official.import_checkpoint(model, path)
    text = one_line(err)
    assert str(path) in text and "missing keys 1 (vertice_map.weight)" in text
    state["extra.weight"] = torch.zeros(1)
    torch.save({"state_dict": state, "epoch": 3}, path)  # the other official layout
    with pytest.raises(TalkbenchError, match=r"missing keys 1 .*unexpected keys 1 \(extra.weight\)"):
        ff_official.import_checkpoint(model, path)


def test_other_method_and_other_preset_fail(tmp_path):
    ff = build("faceformer", "paper-vocaset", 0)
    mt = build("memorytalker", "paper-vocaset", 0)
    mt_path = mt_official.save_official(mt, tmp_path / "memorytalker.pth")
    with pytest.raises(TalkbenchError) as err:
        ff_official.import_checkpoint(ff, mt_path)
    assert "memorytalker.pth: this is a memorytalker checkpoint, not faceformer" in one_line(err)
    ff_path = ff_official.save_official(ff, tmp_path / "faceformer.pth")
    with pytest.raises(TalkbenchError) as err:
        mt_official.import_checkpoint(mt, ff_path)
    assert "this is a faceformer checkpoint" in one_line(err)
    biwi = build("faceformer", "paper-biwi", 0)
    with pytest.raises(TalkbenchError) as err:
        ff_official.import_checkpoint(biwi, ff_path)
    text = one_line(err)
    assert "shapes differ" in text and "vertice_map.weight (64, 15069) vs (128, 70110)" in text


def test_codetalker_files_in_the_wrong_place(tmp_path):
    model = build("codetalker", "paper-vocaset", 0, SMALL_CODETALKER)
    stage2, stage1 = ct_official.save_official(model, tmp_path / "s2.pth.tar", tmp_path / "s1.pth.tar")
    with pytest.raises(TalkbenchError, match="has no VQ-VAE .* --vqvae"):
        ct_official.import_checkpoint(model, stage2)
    with pytest.raises(TalkbenchError, match="stage-1 \\(VQ-VAE\\) checkpoint; pass the stage-2 file"):
        ct_official.import_checkpoint(model, stage1, vqvae=stage2)
    state = torch.load(stage1, weights_only=True)
    del state["state_dict"]["quantize.embedding.weight"]
    torch.save(state, stage1)
    with pytest.raises(TalkbenchError) as err:
        ct_official.import_checkpoint(model, stage2, vqvae=stage1)
    assert "s1.pth.tar: does not fit the VQ-VAE" in one_line(err)
    assert "missing keys 1 (quantize.embedding.weight)" in str(err.value)


def test_memorytalker_stage1_file_needs_a_stage1_model(tmp_path):
    stage1 = build("memorytalker", "paper-vocaset", 0, ["memorytalker.stage2=false"])
    path = mt_official.save_official(stage1, tmp_path / "checkpoint_100.pth")
    assert mt_official.overrides_for(path) == ["memorytalker.stage2=false"]
    full = build("memorytalker", "paper-vocaset", 1)
    with pytest.raises(TalkbenchError, match="stage-1 checkpoint .* memorytalker.stage2=false"):
        mt_official.import_checkpoint(full, path)
    state = mt_official.import_checkpoint(stage1, path)
    assert not bool(state["stylized"])


def test_unreadable_and_unknown_files(tmp_path):
    model = build("faceformer", "paper-vocaset", 0)
    bad = tmp_path / "notes.pth"
    bad.write_text("not a checkpoint")
    with pytest.raises(TalkbenchError, match="notes.pth: not a loadable PyTorch checkpoint"):
        ff_official.import_checkpoint(model, bad)
    with pytest.raises(TalkbenchError, match="no such file"):
        ff_official.import_checkpoint(model, tmp_path / "absent.pth")
    with pytest.raises(TalkbenchError, match="no official checkpoint format for method 'mean-motion'"):
        common.converter("mean-motion")
    with pytest.raises(TalkbenchError, match="expected one of paper-vocaset, paper-biwi"):
        official_import.dataset_of("paper")


def test_a_plugin_ships_its_importer_beside_its_method(tmp_path, monkeypatch):
    """``<plugin package>/official.py`` with import_checkpoint: found for the plugin's method."""
    from talkbench.registry import METHODS
    from talkbench.scaffold import write_plugin

    write_plugin("kit-official", tmp_path)
    (tmp_path / "talkbench_kit_official" / "official.py").write_text(
        "LICENCE = 'CC BY-NC 4.0'\n\ndef import_checkpoint(model, checkpoint, vqvae=None):\n    return {}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import talkbench_kit_official

    METHODS.register("kit-official", talkbench_kit_official.KitOfficial)
    try:
        module = common.converter("kit-official")
        assert module.__name__ == "talkbench_kit_official.official" and module.LICENCE == "CC BY-NC 4.0"
    finally:
        METHODS.unregister("kit-official")
        for name in [m for m in sys.modules if m.startswith("talkbench_kit_official")]:
            del sys.modules[name]
