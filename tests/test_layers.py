"""The import-linter contracts of pyproject.toml hold for the package, and they catch a wrong-way import.

The negative checks run the same contracts on a temporary copy of the package with one forbidden
import added, so they prove the contracts would fail on such a change (not only that they pass today).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint(cwd: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the package importable from ``cwd`` (the contracts of its pyproject.toml)."""
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(cwd / "pyproject.toml")],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_package_keeps_every_contract():
    proc = _lint(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " 0 broken" in proc.stdout and "KEPT" in proc.stdout


@pytest.fixture(scope="module")
def package_copy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("layers")
    shutil.copytree(ROOT / "talkbench", root / "talkbench", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


@pytest.mark.parametrize(
    "module, bad_import, contract",  # contract: its id in pyproject.toml
    [
        ("datasets/clip.py", "import talkbench.methods", "data-and-metrics"),
        ("metrics/core.py", "from talkbench import tracking", "data-and-metrics"),
        ("methods/faceformer/model.py", "import talkbench.methods.codetalker", "methods-independent"),
        ("methods/memorytalker/__init__.py", "import talkbench.pipeline", "methods"),
        ("pipeline.py", "import talkbench.reports.leaderboard", "runs-before-readers"),
        ("runs.py", "import talkbench.pipeline", "readers-after-runs"),
        ("config.py", "import talkbench.commands.run", "cli-on-top"),
        ("render/camera.py", "import talkbench.cli", "cli-on-top"),
        ("study/record.py", "import mlflow", "mlflow-in-tracking"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(package_copy, module, bad_import, contract):
    path = package_copy / "talkbench" / module
    original = path.read_text()
    # appended at the end: after ``from __future__`` and the docstring, valid in any module
    path.write_text(f"{original}\n{bad_import}  # noqa\n")
    try:
        proc = _lint(package_copy)
    finally:
        path.write_text(original)
    out = " ".join(proc.stdout.split())  # the report wraps long contract names
    assert proc.returncode == 1, out
    assert f"{_contract_name(contract)} BROKEN" in out, out
    assert bad_import.split()[-1] in out, out  # the report names the forbidden module


def _contract_name(contract_id: str) -> str:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (name,) = [c["name"] for c in config["contracts"] if c["id"] == contract_id]
    return name
