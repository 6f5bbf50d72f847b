"""The method registry: built-in names, "did you mean" errors, and third-party entry points."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from talkbench.errors import ConfigError
from talkbench.registry import METHODS, Registry

BUILT_IN = {"template", "mean-motion", "faceformer", "codetalker", "memorytalker"}


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
            """
        )
    )
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
        try:
            METHODS.get("acmee")
            hint = ""
        except Exception as exc:
            hint = str(exc)
        print(json.dumps({"names": names, "early": imported_early, "cls": cls.__module__ + ":" + cls.__name__,
                          "width": cfg.method_config.width, "preset": cfg.preset, "hint": hint}))
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
    assert out["width"] == 8 and out["preset"] == "synthtalk"  # no preset files: the Config defaults
    assert "Did you mean: acme" in out["hint"]
    # and nothing leaked into this interpreter
    assert "acme" not in METHODS.names()
