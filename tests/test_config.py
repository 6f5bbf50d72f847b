"""Configuration: presets per dataset x method, --config files, checked dotted overrides, hashing."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from talkbench.config import RunConfig, available_presets, find_preset, load_config
from talkbench.config import sources as config_sources
from talkbench.config.schema import EvalConfig
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
        (root / method).symlink_to(config_sources.PRESET_DIR / method)
    toy = root / "toy-config"
    toy.mkdir()
    (toy / "synthtalk.yaml").write_text("toy-config:\n  epochs: 5\n  inner:\n    n_layers: 3\n")
    (toy / "paper.yaml").write_text("toy-config:\n  epochs: 100\n  lr: 1.0e-4\n")
    (toy / "paper-biwi.yaml").write_text("toy-config:\n  epochs: 200\n")
    (toy / "tiny.yaml").write_text("dataset:\n  preset: tiny\ntoy-config.epochs: 1\n")
    monkeypatch.setattr(config_sources, "PRESET_DIR", root)
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


# -- shipped presets, 0.1.0 configs ---------------------------------------------------------------
FIXTURES = Path(__file__).parent / "fixtures"
SNAPSHOT = json.loads((FIXTURES / "presets_resolved_f6fa659.json").read_text())
OLD_CONFIGS = FIXTURES / "configs_0_1_0"
OLD_HASHES = json.loads((OLD_CONFIGS / "hashes.json").read_text())["config_hash"]


# deliberate changes since the snapshot, per (method, preset): dotted key -> value now
# issue 14: the synthtalk presets load the SynthTalk-pretrained encoder instead of a mel encoder from scratch
CHANGED_SINCE_SNAPSHOT = {
    (m, "synthtalk"): {f"{m}.audio.kind": "synthtalk"} for m in ("faceformer", "codetalker", "memorytalker")
}
# CodeTalker's audio settings are a mapping: the frozen CNN is spelt out (the other two had it by default)
CHANGED_SINCE_SNAPSHOT["codetalker", "synthtalk"]["codetalker.audio.freeze_cnn"] = True


def _with_changes(config: dict, changes: dict) -> dict:
    out = json.loads(json.dumps(config))
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = out
        for k in parents:
            node = node[k]
        node[leaf] = value
    return out


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


@pytest.mark.parametrize("key", sorted(SNAPSHOT))
def test_shipped_presets_resolve_as_before_the_refactor(key):
    """Every preset x dataset resolved by f6fa659 (before pydantic, dataset options and ``base:``):
    the same values; keys added to the schema since hold their defaults; the same run identity."""
    method, preset, dataset = key.split("/")
    old = _with_changes(SNAPSHOT[key]["config"], CHANGED_SINCE_SNAPSHOT.get((method, preset), {}))
    new = load_config(method, dataset=dataset, preset=preset)
    old_ds = old["dataset"]
    assert (new.dataset.name, new.dataset.root) == (old_ds["name"], old_ds["root"])
    if dataset == "synthtalk":  # the only loader that read them
        effective = new.dataset.effective_options()
        assert {k: effective[k] for k in ("preset", "seed", "style_coupling")} == {
            k: old_ds[k] for k in ("preset", "seed", "style_coupling")
        }
    else:
        assert new.dataset.options == {}
    old_flat = _flat({k: v for k, v in old.items() if k != "dataset"})
    new_flat = _flat({k: v for k, v in new.to_dict().items() if k != "dataset"})
    assert {k: new_flat.get(k, "<missing>") for k in old_flat} == old_flat
    added = set(new_flat) - set(old_flat)
    defaults = dataclasses.asdict(type(new.method_config)()) if new.method_config is not None else {}
    # added evaluation settings (eval.speed_clip_s) hold their schema defaults too
    defaults_flat = {**_flat(defaults, f"{method}."), **_flat(dataclasses.asdict(EvalConfig()), "eval.")}
    assert {k: new_flat[k] for k in added} == {k: defaults_flat.get(k) for k in added}
    assert new.config_hash() == RunConfig.from_dict(old).config_hash()
    assert RunConfig.from_dict(SNAPSHOT[key]["config"]).legacy_hashes["config_hash"] == SNAPSHOT[key]["hash"]


def test_paper_presets_share_their_common_lines():
    for method in ("faceformer", "codetalker", "memorytalker"):
        biwi = find_preset(method, "paper", "biwi")
        assert yaml.safe_load(biwi.read_text())["base"] == "paper-vocaset"
        layers = config_sources.preset_layers(biwi)
        assert [src for _, src in layers] == [
            f"preset {find_preset(method, 'paper', 'vocaset')}",
            f"preset {biwi}",
        ]


@pytest.mark.parametrize("preset,dataset", [("tiny", "synthtalk"), ("synthtalk", "synthtalk"),
                                            ("paper", "vocaset"), ("paper", "biwi")])
def test_codetalker_nd_presets_are_codetalkers_with_its_section_renamed(preset, dataset):
    """``base: codetalker/<stem>``: another method's preset file, its section read as this method's."""
    ct = load_config("codetalker", preset=preset, dataset=dataset)
    nd = load_config("codetalker-nd", preset=preset, dataset=dataset)
    shared = dataclasses.asdict(ct.method_config)
    nd_values = dataclasses.asdict(nd.method_config)
    assert {k: nd_values[k] for k in shared} == shared
    defaults = dataclasses.asdict(type(nd.method_config)())
    assert {k: v for k, v in nd_values.items() if k not in shared} == {k: defaults[k] for k in nd_values
                                                                       if k not in shared}
    assert (nd.dataset, nd.eval, nd.train) == (ct.dataset, ct.eval, ct.train)
    layers = config_sources.preset_layers(find_preset("codetalker-nd", preset, dataset))
    assert [src for _, src in layers][-1] == f"preset {find_preset('codetalker-nd', preset, dataset)}"
    assert all("codetalker" not in layer for layer, _ in layers)  # renamed in every layer, bases too


def test_preset_inheritance_order_and_errors(presets):
    (presets / "common.yaml").write_text("toy-config:\n  epochs: 50\n  lr: 0.5\n")
    (presets / "paper.yaml").write_text("base: common\ntoy-config:\n  epochs: 100\n")
    (presets / "paper-biwi.yaml").write_text("base: paper\ntoy-config.inner.n_layers: 7\n")
    cfg = load_config("toy-config", dataset="biwi")
    assert (cfg.method_config.epochs, cfg.method_config.lr, cfg.method_config.inner.n_layers) == (100, 0.5, 7)
    assert load_config("toy-config", dataset="biwi", overrides=["toy-config.lr=0.1"]).method_config.lr == 0.1
    (presets / "common.yaml").write_text("base: paper-biwi\n")
    with pytest.raises(ConfigError, match=r"makes a cycle \(paper-biwi -> paper -> common -> paper-biwi\)"):
        load_config("toy-config", dataset="biwi")
    (presets / "paper.yaml").write_text("base: comon\n")
    with pytest.raises(
        ConfigError, match=r"paper.yaml: 'base: comon' names no preset file.*Did you mean: common"
    ):
        load_config("toy-config", dataset="vocaset")
    (presets / "paper.yaml").write_text("base: common\ntoy-config:\n  epochs: many\n")
    (presets / "common.yaml").write_text("toy-config:\n  lr: 0.5\n")
    with pytest.raises(ConfigError, match=r"preset .*paper.yaml: 'toy-config.epochs' expects int"):
        load_config("toy-config", dataset="vocaset")


@pytest.mark.parametrize("name", sorted(OLD_HASHES))
def test_configs_saved_by_0_1_0_load_as_the_same_run(name):
    method = name.removesuffix("-tiny")
    old = RunConfig.load(OLD_CONFIGS / f"{name}.yaml")
    today = load_config(method, preset="tiny")
    assert old.method_config == today.method_config and old.dataset.effective_options() == (
        today.dataset.effective_options()
    )
    assert old.config_hash() == today.config_hash()
    assert old.legacy_hashes["config_hash"] == OLD_HASHES[name]  # its runs' tag, for matching them
    assert OLD_HASHES[name] in old.known_hashes() and today.config_hash() in old.known_hashes()
    # saved again by today's code: the new layout, the same identity
    again = RunConfig.from_dict(old.to_dict())
    assert "preset" not in again.to_dict()["dataset"] and again.config_hash() == old.config_hash()


def test_canonical_key_spells_the_dataset_shorthand_as_runs_log_it():
    from talkbench.config import canonical_key

    assert canonical_key("dataset.style_coupling") == "dataset.options.style_coupling"
    assert canonical_key("dataset.options.style_coupling") == "dataset.options.style_coupling"
    assert canonical_key("dataset.name") == "dataset.name"
    assert canonical_key("memorytalker.stage2") == "memorytalker.stage2"


def test_params_log_the_dataset_options_that_made_generated_data(presets, tmp_path):
    """MLflow params: generated data (no root) logs every loader option, defaults included, so a run
    at the default style coupling shows 0.8 next to one at 0; with a root the options made nothing."""
    params = load_config("toy-config").params()
    assert params["dataset.options.style_coupling"] == 0.8 and params["dataset.options.preset"] == "small"
    assert "dataset.options" not in params
    assert load_config("toy-config", overrides=["dataset.style_coupling=0"]).params()[
        "dataset.options.style_coupling"] == 0.0
    rooted = load_config("toy-config", data_root=tmp_path).params()
    assert not any(k.startswith("dataset.options.") for k in rooted)


def test_dataset_options_are_checked_against_the_loader(presets, tmp_path):
    cfg = load_config("toy-config", dataset="biwi", overrides=["dataset.options.preprocessing=facexhubert"])
    assert cfg.dataset.options == {"preprocessing": "facexhubert"}
    assert cfg.flatten()["dataset.options.preprocessing"] == "facexhubert"
    # dataset.X is shorthand for dataset.options.X (README, sweeps: dataset.style_coupling=0)
    cfg = load_config("toy-config", overrides=["dataset.style_coupling=0"])
    assert cfg.dataset.options == {"style_coupling": 0.0} and isinstance(
        cfg.dataset.options["style_coupling"], float
    )
    path = tmp_path / "run.yaml"
    path.write_text("dataset:\n  name: biwi\n  options:\n    preprocessing: codetalker\n")
    assert load_config("toy-config", config_file=path).dataset.options == {"preprocessing": "codetalker"}
    cases = [
        (
            "biwi",
            "dataset.options.preprocesing=x",
            r"unknown config key 'dataset.options.preprocesing'.*"
            r"Did you mean: dataset.options.preprocessing\?.*Options of 'biwi': preprocessing",
        ),
        ("synthtalk", "dataset.style_couplng=0", r"Did you mean: dataset.style_coupling\?"),
        ("synthtalk", "dataset.nmae=biwi", r"Did you mean: dataset.name\?"),
        ("vocaset", "dataset.preset=tiny", r"'preset' is not an option of dataset 'vocaset'"),
        ("synthtalk", "dataset.style_coupling=high", r"'dataset.options.style_coupling' expects float"),
    ]
    for dataset, override, message in cases:
        with pytest.raises(ConfigError, match=message) as info:
            load_config("toy-config", dataset=dataset, overrides=[override])
        assert f"--set {override}" in str(info.value)
    # a preset's option for another dataset is skipped (tiny.yaml's SynthTalk 'preset: tiny' on VOCASET)
    assert load_config("toy-config", dataset="vocaset", preset="tiny").dataset.options == {}


def test_0_1_0_checkpoint_fingerprints_are_accepted_for_0_1_0_configs():
    old_fp = json.loads((OLD_CONFIGS / "fingerprints.json").read_text())["fingerprint"]
    for name, fingerprint in old_fp.items():
        old = RunConfig.load(OLD_CONFIGS / f"{name}.yaml")
        assert old.legacy_hashes["fingerprint"] == fingerprint  # what its 0.1.0 checkpoints carry
        assert old.resumes(fingerprint) and old.resumes(old.training_fingerprint())
        today = load_config(name.removesuffix("-tiny"), preset="tiny")
        assert today.training_fingerprint() == old.training_fingerprint() and not today.resumes(fingerprint)
        assert not old.resumes(old_fp["faceformer-tiny" if name != "faceformer-tiny" else "codetalker-tiny"])


def test_training_fingerprint_covers_training_only(presets):
    a = load_config("toy-config")
    same = load_config("toy-config", device="cpu", overrides=["eval.n_boot=5", "train.num_workers=2"])
    assert same.training_fingerprint() == a.training_fingerprint()
    assert load_config("toy-config", seed=1).training_fingerprint() != a.training_fingerprint()
    assert load_config("toy-config", overrides=["toy-config.lr=2"]).training_fingerprint() != (
        a.training_fingerprint()
    )


def test_a_method_without_the_default_preset_runs_and_is_labelled_on_its_defaults(presets):
    (presets / "synthtalk.yaml").unlink()
    cfg = load_config("toy-config")
    assert cfg.preset == "defaults" and cfg.method_config.epochs == 3  # ToyConfig's own default
    explicit = load_config("toy-config", preset="defaults", dataset="biwi")  # asked for by name too
    assert explicit.preset == "defaults" and explicit.method_config.epochs == 3
