"""`bench new-method`: the package it writes declares the entry point, ships its presets where
``--preset`` finds them, and is listed by `bench methods`; bad names and used folders are refused.

The full cycle with a real ``pip install`` (kit, ``bench run --preset tiny``, the leaderboard row) is
scripts/check-new-method.sh, run by ``make test``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from talkbench.cli import app

RUNNER = CliRunner()


def test_it_writes_an_installable_package(tmp_path):
    out = tmp_path / "pkg"
    result = RUNNER.invoke(app, ["new-method", "gru-lite", "--out", str(out)])
    assert result.exit_code == 0, result.output
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == [
        "README.md",
        "pyproject.toml",
        "talkbench_gru_lite/__init__.py",
        "talkbench_gru_lite/method.py",
        "talkbench_gru_lite/presets/gru-lite/synthtalk.yaml",
        "talkbench_gru_lite/presets/gru-lite/tiny.yaml",
        "tests/conftest.py",
        "tests/test_talkbench_gru_lite.py",
    ]
    meta = tomllib.loads((out / "pyproject.toml").read_text())
    assert meta["project"]["name"] == "talkbench-gru-lite"
    assert meta["project"]["entry-points"]["talkbench.methods"] == {"gru-lite": "talkbench_gru_lite:GruLite"}
    assert meta["tool"]["setuptools"]["package-data"] == {"talkbench_gru_lite": ["presets/**/*.yaml"]}
    assert f"pip install -e {out}" in result.output
    compile((out / "talkbench_gru_lite/method.py").read_text(), "method.py", "exec")  # valid Python


@pytest.mark.parametrize(
    "name, message",
    [
        ("GRU", "expected lower-case letters and digits"),
        ("gru_lite", "expected lower-case letters and digits"),
        ("train", "clashes with the config section 'train'"),
        ("faceformer", "'faceformer' is taken"),
    ],
)
def test_bad_names_are_refused(tmp_path, name, message):
    result = RUNNER.invoke(app, ["new-method", name, "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "x").exists()


def test_a_used_folder_is_left_alone(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    result = RUNNER.invoke(app, ["new-method", "kit-used", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "is not an empty folder; nothing was written" in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_once_on_the_path_it_is_listed_with_its_presets(tmp_path):
    """The package on sys.path with the entry point its pyproject declares (a dist-info, as pip
    writes it): `bench methods` lists it, its presets found inside the package."""
    out = tmp_path / "pkg"
    assert RUNNER.invoke(app, ["new-method", "kit-listed", "--out", str(out)]).exit_code == 0
    meta = tomllib.loads((out / "pyproject.toml").read_text())
    info = out / "talkbench_kit_listed-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: talkbench-kit-listed\nVersion: 0.1.0\n")
    eps = meta["project"]["entry-points"]["talkbench.methods"]
    (info / "entry_points.txt").write_text(
        "[talkbench.methods]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items())
    )
    env = {**os.environ, "PYTHONPATH": str(out), "COLUMNS": "200"}
    bench = Path(sys.executable).parent / "bench"
    proc = subprocess.run([str(bench), "methods"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if "kit-listed" in line)
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    assert cells == ["kit-listed", "yes", "epochs 2, head_epochs 1", "synthtalk, tiny"]
