"""A CLI that answers at once: listing commands import neither torch nor the methods."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import _mlflow_store
import pytest
from typer.testing import CliRunner

from talkbench import cli
from talkbench.registry import Registry

_migrated_db = _mlflow_store._migrated_db
store_uri = _mlflow_store.store_uri

HEAVY = ("torch", "talkbench.methods", "talkbench.pipeline", "transformers")

_PROBE = textwrap.dedent(
    """
    import json, sys
    HEAVY = json.loads(sys.argv[2])
    sys.argv = ["bench", *json.loads(sys.argv[1])]
    from talkbench.cli import main
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code or 0
    print("\\nPROBE " + json.dumps({"code": code, "heavy": [m for m in HEAVY if m in sys.modules]}))
    """
)


def _probe(*args: str) -> dict:
    """Run `bench <args>` in a fresh interpreter; its exit code and which heavy modules it imported."""
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(list(args)), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    line = [x for x in out.stdout.splitlines() if x.startswith("PROBE ")]
    assert line, out.stdout + out.stderr
    return json.loads(line[-1][len("PROBE ") :])


def test_import_and_help_need_no_torch():
    assert _probe("--help") == {"code": 0, "heavy": []}


def test_methods_lists_without_building_models():
    result = _probe("methods")
    assert result == {"code": 0, "heavy": []}


def test_leaderboard_needs_no_torch(store_uri):
    assert _probe("leaderboard", "--tracking-uri", store_uri)["heavy"] == []


def test_report_up_to_its_data_needs_no_torch(store_uri):
    result = _probe("report", "--dataset", "synthtalk", "--tracking-uri", store_uri, "--no-log")
    assert result == {"code": 2, "heavy": []}  # no runs to report on: a one-line error, no torch


def test_static_table_matches_what_modules_register():
    registered = {}
    for module in cli.COMMAND_MODULES:
        for name, cmd in cli.module_commands(module).items():
            registered[name] = (module, cmd)
    assert set(cli.COMMANDS) == set(registered)
    for name, (module, _help) in cli.COMMANDS.items():
        assert registered[name][0] == module, name


def test_help_lists_every_command_and_a_command_runs():
    result = CliRunner().invoke(cli.app, ["--help"])
    assert result.exit_code == 0
    for name in cli.COMMANDS:
        assert name in result.stdout
    assert CliRunner().invoke(cli.app, ["data", "--help"]).exit_code == 0


def test_unknown_command_suggests():
    result = CliRunner().invoke(cli.app, ["lederboard"])
    assert result.exit_code == 2 and "leaderboard" in result.output


@pytest.fixture
def plugin_package(tmp_path, monkeypatch):
    pkg = tmp_path / "lazyplug"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from lazyplug.model import Plug\nraise RuntimeError('imported')\n")
    body = "    uses_speaker_id: ClassVar[bool] = True\n    other = 1\n"
    (pkg / "model.py").write_text("from typing import ClassVar\nclass Plug:\n" + body)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "lazyplug"


def test_static_attr_reads_source_without_importing(plugin_package):
    reg = Registry("thing")
    reg.register("plug", f"{plugin_package}:Plug")
    reg.register("direct", f"{plugin_package}.model:Plug")
    reg.register("missing", "no_such_module_xyz:Plug")
    assert reg.static_attr("plug", "uses_speaker_id") is True  # through the package's re-export
    assert reg.static_attr("direct", "other") == 1
    assert reg.static_attr("direct", "absent") is None
    assert reg.static_attr("missing", "uses_speaker_id") is None
    assert plugin_package not in sys.modules and f"{plugin_package}.model" not in sys.modules
