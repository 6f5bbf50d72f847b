"""The method registry: built-in names, "did you mean" errors, and third-party entry points."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from talkbench.errors import ConfigError
from talkbench.registry import METHODS, Registry, RegistryWarning

BUILT_IN = {"template", "mean-motion", "faceformer", "codetalker", "memorytalker", "selftalk", "facediffuser",
            "unitalker"}


def test_built_in_names_are_registered():
    assert BUILT_IN <= set(METHODS.names())


def test_unknown_name_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"unknown method 'memorytalkr'\. Did you mean: memorytalker"):
        METHODS.get("memorytalkr")
    with pytest.raises(ConfigError, match=r"unknown method 'zzz'\. Available: .*template"):
        METHODS.get("zzz")


def test_lazy_strings_resolve_on_first_use():
    reg = Registry("thing")
    reg.register("path", "pathlib:PurePosixPath")
    assert reg._items["path"] == "pathlib:PurePosixPath"
    from pathlib import PurePosixPath

    assert reg.get("path") is PurePosixPath


def test_third_party_method_arrives_through_the_entry_point_group(tmp_path):
    """A tiny installed distribution (a *.dist-info on sys.path) declaring talkbench.methods."""
    site = tmp_path / "site"
    pkg = site / "acme_talk"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        textwrap.dedent(
            """
            from dataclasses import dataclass
            from talkbench.methods.base import Method, Stage

            @dataclass
            class AcmeConfig:
                width: int = 4

            class AcmeMethod(Method):
                name = "acme"
                Config = AcmeConfig
                presets = ()

                def stages(self):
                    return [Stage("main", 1, 1e-3)]

                def loss(self, stage, batch):
                    raise NotImplementedError

                def predict(self, audio, template, condition=None):
                    raise NotImplementedError
            """
        )
    )
    # the plugin ships its own presets: <top-level package>/presets/<method>/
    (pkg / "presets" / "acme").mkdir(parents=True)
    (pkg / "presets" / "acme" / "tiny.yaml").write_text("dataset:\n  preset: tiny\nacme:\n  width: 2\n")
    dist = site / "acme_talk-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-talk\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[talkbench.methods]\nacme = acme_talk:AcmeMethod\n")
    (dist / "RECORD").write_text("")
    script = textwrap.dedent(
        """
        import json, sys
        from talkbench.registry import METHODS
        names = METHODS.names()
        imported_early = "acme_talk" in sys.modules  # entry points stay lazy until asked for
        cls = METHODS.get("acme")
        from talkbench.config import load_config
        cfg = load_config("acme", overrides=["acme.width=8"])
        from talkbench.config import available_presets
        tiny = load_config("acme", preset="tiny")
        try:
            METHODS.get("acmee")
            hint = ""
        except Exception as exc:
            hint = str(exc)
        print(json.dumps({"names": names, "early": imported_early, "cls": cls.__module__ + ":" + cls.__name__,
                          "width": cfg.method_config.width, "preset": cfg.preset, "hint": hint,
                          "presets": available_presets("acme"),
                          "tiny": [tiny.preset, tiny.method_config.width, tiny.dataset.options]}))
        """
    )
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "acme" in out["names"] and BUILT_IN <= set(out["names"])
    assert out["early"] is False
    assert out["cls"] == "acme_talk:AcmeMethod"
    # no 'synthtalk' preset in the plugin: the Config defaults, and the run says so
    assert out["width"] == 8 and out["preset"] == "defaults"
    assert out["presets"] == ["tiny"] and out["tiny"] == ["tiny", 2, {"preset": "tiny"}]
    assert "Did you mean: acme" in out["hint"]
    # and nothing leaked into this interpreter
    assert "acme" not in METHODS.names()


def test_a_duplicate_name_is_an_error():
    reg = Registry("thing")
    reg.register("a", "pathlib:PurePosixPath")
    with pytest.raises(ConfigError, match=r"thing 'a' is already registered \('pathlib:PurePosixPath'\)"):
        reg.register("a", "pathlib:Path")
    with pytest.raises(ConfigError, match="already registered"):
        reg.register("a")(dict)  # as a decorator too
    with pytest.raises(ConfigError, match=r"method 'template' is already registered"):
        METHODS.register("template", "talkbench.methods.reference:MeanMotionMethod")
    reg.unregister("a")  # replacing on purpose: remove first
    reg.register("a", "pathlib:Path")
    from pathlib import Path

    assert reg.get("a") is Path


def test_a_target_that_is_not_a_method_is_refused():
    class NotAMethod:
        pass

    with pytest.raises(ConfigError, match=r"method 'bogus': .*NotAMethod' is not a subclass of .*Method"):
        METHODS.register("bogus", NotAMethod)
    assert "bogus" not in METHODS
    # a lazy string is checked when it is resolved, and stays refused
    METHODS.register("lazy-bogus", "pathlib:PurePosixPath")
    try:
        for _ in range(2):
            with pytest.raises(ConfigError, match=r"'pathlib:PurePosixPath' is not a subclass"):
                METHODS.get("lazy-bogus")
    finally:
        METHODS.unregister("lazy-bogus")
    assert METHODS.get("template").__name__ == "TemplateMethod"  # built-ins pass the check


def _install_plugin(site, group: str, name: str, value: str, dist: str = "acme-plugin") -> None:
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n{name} = {value}\n")
    (info / "RECORD").write_text("")


def test_a_plugin_shadowed_by_a_built_in_is_a_warning_naming_both(tmp_path, monkeypatch):
    group = "talkbench.test_shadowing"
    _install_plugin(tmp_path, group, "path", "acme_paths:Path")
    _install_plugin(tmp_path, group, "extra", "pathlib:PurePath", dist="other-plugin")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("thing", entry_point_group=group)
    reg.register("path", "pathlib:PurePosixPath")
    with pytest.warns(RegistryWarning) as caught:
        names = reg.names()
    assert names == ["extra", "path"] and len(caught) == 1
    text = str(caught[0].message)
    assert "'path'" in text and "acme_paths:Path" in text and "acme-plugin" in text
    assert "pathlib:PurePosixPath" in text  # the built-in that wins
    from pathlib import PurePath, PurePosixPath

    assert reg.get("path") is PurePosixPath and reg.get("extra") is PurePath


def test_datasets_are_registered_like_methods(tmp_path, monkeypatch):
    from talkbench.datasets import DATASETS, load_dataset
    from talkbench.datasets.registry import loader_options

    assert {"synthtalk", "vocaset", "biwi"} <= set(DATASETS.names())
    assert list(loader_options("biwi")) == ["preprocessing", "audio_cache_mb"]
    with pytest.raises(ConfigError, match=r"unknown dataset 'vocset'\. Did you mean: vocaset"):
        load_dataset("vocset")
    with pytest.raises(ConfigError, match=r"unknown option 'preprocesing' for dataset 'biwi'.*preprocessing"):
        load_dataset("biwi", root=tmp_path, preprocesing="facexhubert")
    with pytest.raises(ConfigError, match=r"dataset 'x': .* is not a loader function"):
        DATASETS.register("x", 42)


def test_a_method_missing_a_hook_is_refused_at_registration_naming_it():
    from talkbench.methods.base import Method, Stage

    class NoPredict(Method):
        name = "no-predict"

        def stages(self):
            return [Stage("main", 1, 1e-3)]

        def loss(self, stage, batch):
            return {}

    with pytest.raises(ConfigError, match=r"method 'no-predict': .*NoPredict' does not implement predict \("):
        METHODS.register("no-predict", NoPredict)
    assert "no-predict" not in METHODS

    class Bare(Method):
        name = "bare"

    with pytest.raises(ConfigError, match=r"does not implement stages, loss, predict"):
        METHODS.register("bare", Bare)


def test_a_plugin_that_fails_to_import_is_named_and_the_others_still_load(tmp_path, monkeypatch):
    group = "talkbench.test_broken"
    (tmp_path / "broken_talk.py").write_text("import no_such_dependency_xyz\n")
    _install_plugin(tmp_path, group, "broken", "broken_talk:Broken", dist="broken-talk")
    _install_plugin(tmp_path, group, "fine", "pathlib:PurePath", dist="fine-talk")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("thing", entry_point_group=group)
    reg.register("builtin", "pathlib:PurePosixPath")
    assert reg.names() == ["broken", "builtin", "fine"]  # listing imports nothing
    for _ in range(2):  # it stays lazy, so it fails the same way each time
        with pytest.raises(ConfigError) as caught:
            reg.get("broken")
        text = str(caught.value)
        assert "thing 'broken'" in text and "broken_talk:Broken" in text and "broken-talk" in text
        assert "ModuleNotFoundError: No module named 'no_such_dependency_xyz'" in text
    from pathlib import PurePath, PurePosixPath

    assert reg.get("fine") is PurePath and reg.get("builtin") is PurePosixPath
