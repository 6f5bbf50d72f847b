"""Configuration: presets per dataset x method, --config files, checked dotted overrides, hashing."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import yaml

from talkbench import config as config_mod
from talkbench.config import RunConfig, available_presets, find_preset, load_config
from talkbench.errors import ConfigError
from talkbench.methods.base import Method
from talkbench.registry import METHODS


@dataclass
class Inner:
    kind: str = "mel"
    n_layers: int = 2
    overrides: dict = field(default_factory=dict)


@dataclass
class ToyConfig:
    lr: float = 1e-3
    epochs: int = 3
    trainable: tuple[str, ...] = ("*",)
    betas: tuple[float, float] = (0.9, 0.999)
    clip: float | None = None
    flag: bool = False
    inner: Inner = field(default_factory=Inner)


class Toy(Method):
    name = "toy-config"
    Config = ToyConfig


@pytest.fixture
def presets(tmp_path, monkeypatch):
    """A private preset folder for the toy method (and the real one for the reference methods)."""
    monkeypatch.setitem(METHODS._items, "toy-config", Toy)  # registered for this test only
    root = tmp_path / "presets"
    root.mkdir()
    for method in ("template", "mean-motion"):
        (root / method).symlink_to(config_mod.PRESET_DIR / method)
    toy = root / "toy-config"
    toy.mkdir()
    (toy / "synthtalk.yaml").write_text("toy-config:\n  epochs: 5\n  inner:\n    n_layers: 3\n")
    (toy / "paper.yaml").write_text("toy-config:\n  epochs: 100\n  lr: 1.0e-4\n")
    (toy / "paper-biwi.yaml").write_text("toy-config:\n  epochs: 200\n")
    (toy / "tiny.yaml").write_text("dataset:\n  preset: tiny\ntoy-config.epochs: 1\n")
    monkeypatch.setattr(config_mod, "PRESET_DIR", root)
    return toy


def test_defaults_and_default_preset_per_dataset(presets):
    cfg = load_config("toy-config")
    assert (cfg.preset, cfg.dataset.name, cfg.method_config.epochs) == ("synthtalk", "synthtalk", 5)
    assert cfg.method_config.inner.n_layers == 3 and cfg.method_config.inner.kind == "mel"
    assert isinstance(cfg.method_config, ToyConfig) and isinstance(cfg.method_config.inner, Inner)
    vocaset = load_config("toy-config", dataset="vocaset")
    assert (vocaset.preset, vocaset.method_config.epochs, vocaset.method_config.lr) == ("paper", 100, 1e-4)


def test_dataset_specific_preset_wins(presets):
    assert find_preset("toy-config", "paper", "biwi") == presets / "paper-biwi.yaml"
    assert find_preset("toy-config", "paper", "vocaset") == presets / "paper.yaml"
    assert load_config("toy-config", dataset="biwi").method_config.epochs == 200
    assert available_presets("toy-config") == ["paper", "paper-biwi", "synthtalk", "tiny"]


def test_tiny_preset_sets_the_dataset_preset(presets):
    cfg = load_config("toy-config", preset="tiny")
    assert cfg.dataset.options == {"preset": "tiny"} and cfg.method_config.epochs == 1  # dotted keys too
    for method in ("template", "mean-motion"):
        assert load_config(method, preset="tiny").dataset.effective_options()["preset"] == "tiny"
        assert load_config(method).dataset.effective_options()["preset"] == "small"
        assert load_config(method, dataset="vocaset").preset == "paper"


def test_layers_in_order_preset_file_set_arguments(presets, tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"seed": 3, "toy-config": {"epochs": 7, "lr": 0.5}, "device": "cpu"}))
    cfg = load_config("toy-config", config_file=path, overrides=["toy-config.epochs=9"], seed=11)
    assert (cfg.method_config.epochs, cfg.method_config.lr, cfg.seed, cfg.device) == (9, 0.5, 11, "cpu")
    cfg = load_config("toy-config", dataset="vocaset", data_root=tmp_path, device="cpu")
    assert cfg.dataset.root == str(tmp_path) and cfg.dataset.name == "vocaset"


def test_dataset_from_config_file_picks_the_preset(presets, tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("dataset:\n  name: biwi\n")
    cfg = load_config("toy-config", config_file=path)
    assert (cfg.dataset.name, cfg.preset, cfg.method_config.epochs) == ("biwi", "paper", 200)
    cfg = load_config("toy-config", overrides=["dataset.name=biwi"])
    assert cfg.method_config.epochs == 200


def test_override_values_are_typed(presets):
    cfg = load_config(
        "toy-config",
        overrides=[
            "toy-config.lr=1e-4",  # YAML 1.1 reads this as a string; a float field takes it
            "toy-config.trainable=[decoder., head.]",
            "toy-config.betas=[0.5, 0.9]",
            "toy-config.clip=null",
            "toy-config.flag=true",
            "toy-config.inner.overrides.num_hidden_layers=2",  # free-form dicts take any key
            "train.selection=val",
        ],
    )
    mc = cfg.method_config
    assert mc.lr == 1e-4 and mc.trainable == ("decoder.", "head.") and mc.betas == (0.5, 0.9)
    assert mc.clip is None and mc.flag is True and mc.inner.overrides == {"num_hidden_layers": 2}
    assert cfg.train.selection == "val"
    assert load_config("toy-config", overrides=["toy-config.clip=2"]).method_config.clip == 2.0


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("toy-config.epoch=3", r"unknown config key 'toy-config.epoch'.*Did you mean: toy-config.epochs\?"),
        ("trian.num_workers=2", r"unknown config key 'trian.num_workers'.*Did you mean: train\?"),
        ("toy-config.inner.n_layer=1", r"Did you mean: toy-config.inner.n_layers\?"),
        ("memorytalker.memory_slots=16", r"settings of method 'toy-config' go under 'toy-config.'"),
        ("toy-config.epochs=three", r"'toy-config.epochs' expects int, got 'three'"),
        ("toy-config.epochs=2.5", r"'toy-config.epochs' expects int"),
        ("toy-config.flag=1", r"'toy-config.flag' expects bool"),
        ("toy-config.betas=[1, 2, 3]", r"at most 2 items"),
        ("toy-config.epochs=null", r"null is not allowed"),
        ("device=gpu", r"'device' expects one of 'auto', 'cpu', 'cuda'"),
        ("train.selection=test", r"'train.selection' expects one of 'val', 'last' or null"),
        ("seed.x=1", r"'seed' is a value, not a section"),
        ("method=faceformer", r"'method' cannot be changed"),
        ("novalue", r"expected KEY=VALUE"),
    ],
)
def test_bad_overrides_are_one_clear_error(presets, override, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_config("toy-config", overrides=[override])
    assert f"--set {override}" in str(info.value) and "\n" not in str(info.value)


def test_bad_files_and_names(presets, tmp_path):
    with pytest.raises(ConfigError, match="unknown preset 'papr'.*Did you mean: paper"):
        load_config("toy-config", preset="papr")
    with pytest.raises(ConfigError, match="unknown method 'toy-confg'.*Did you mean: toy-config"):
        load_config("toy-confg")
    with pytest.raises(ConfigError, match=r"config file .*missing.yaml does not exist"):
        load_config("toy-config", config_file=tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("toy-config: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml is not valid YAML"):
        load_config("toy-config", config_file=bad)
    typo = tmp_path / "typo.yaml"
    typo.write_text("toy-config:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError, match=r"config file .*typo.yaml: unknown config key 'toy-config.lrr'"):
        load_config("toy-config", config_file=typo)
    (presets / "broken.yaml").write_text("train:\n  num_workers: many\n")
    with pytest.raises(ConfigError, match=r"preset .*broken.yaml: 'train.num_workers' expects int"):
        load_config("toy-config", preset="broken")


def test_roundtrip_flatten_and_yaml(presets, tmp_path):
    cfg = load_config("toy-config", overrides=["toy-config.inner.overrides.a=1", "seed=4"])
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    path = cfg.save(tmp_path / "config.yaml")
    assert RunConfig.load(path) == cfg
    flat = cfg.flatten()
    assert flat["toy-config.inner.overrides.a"] == 1 and flat["toy-config.betas"] == "[0.9, 0.999]"
    assert flat["dataset.name"] == "synthtalk" and flat["seed"] == 4 and flat["train.selection"] is None
    assert all(not isinstance(v, dict | list | tuple) for v in flat.values())
    with pytest.raises(ConfigError, match="unknown config key 'toy-config.bogus'"):
        RunConfig.from_dict({**cfg.to_dict(), "toy-config": {"bogus": 1}})


def test_config_hash_is_what_changes_results(presets, tmp_path):
    a = load_config("toy-config", seed=0)
    assert len(a.config_hash()) == 16 and a.config_hash() == load_config("toy-config").config_hash()
    # repeats of one experiment: seed, where it ran, where the data is, speed and bookkeeping
    same = [
        load_config("toy-config", seed=1),
        load_config("toy-config", device="cpu"),
        load_config("toy-config", data_root=tmp_path),
        load_config(
            "toy-config",
            overrides=[
                "train.num_workers=4",
                "train.log_every=5",
                "train.checkpoint_every=1",
                "eval.render_clips=0",
                "eval.save_predictions=false",
                "dataset.options.audio_cache_mb=64",
            ],
        ),
    ]
    assert {c.config_hash() for c in same} == {a.config_hash()}
    other = [
        ["toy-config.lr=0.1"],
        ["toy-config.inner.n_layers=4"],
        ["dataset.options.preset=tiny"],
        ["dataset.style_coupling=0"],
        ["precision=fp32"],
        ["eval.n_boot=10"],
        ["train.selection=val"],
    ]
    hashes = {load_config("toy-config", overrides=o).config_hash() for o in other}
    assert len(hashes) == len(other) and a.config_hash() not in hashes
    assert a.config_hash() != load_config("toy-config", dataset="vocaset").config_hash()
    assert a.config_hash() != load_config("toy-config", preset="tiny").config_hash()


def test_config_hash_survives_a_new_field_with_a_neutral_default(presets, monkeypatch):
    before = load_config("toy-config", overrides=["toy-config.lr=0.1"])

    @dataclass
    class ToyConfigV2(ToyConfig):
        new_knob: int = 7  # a later version's field; 7 keeps the old behaviour
        new_section: Inner = field(default_factory=Inner)

    monkeypatch.setattr(Toy, "Config", ToyConfigV2)
    after = load_config("toy-config", overrides=["toy-config.lr=0.1"])
    assert isinstance(after.method_config, ToyConfigV2) and after.to_dict() != before.to_dict()
    assert after.config_hash() == before.config_hash()
    assert RunConfig.from_dict(before.to_dict()).config_hash() == before.config_hash()  # saved before
    changed = load_config("toy-config", overrides=["toy-config.lr=0.1", "toy-config.new_knob=8"])
    assert changed.config_hash() != before.config_hash()
    nested = load_config("toy-config", overrides=["toy-config.lr=0.1", "toy-config.new_section.n_layers=9"])
    assert nested.config_hash() != before.config_hash()


def test_reference_methods_resolve_with_their_shipped_presets():
    cfg = load_config("mean-motion", overrides=["mean-motion.period=12"])
    assert cfg.method_config.period == 12 and cfg.to_dict()["mean-motion"] == {"period": 12}
    assert load_config("template", preset="tiny").to_dict()["template"] == {}
    for method in ("template", "mean-motion"):
        assert {"paper", "synthtalk", "tiny"} <= set(available_presets(method))
