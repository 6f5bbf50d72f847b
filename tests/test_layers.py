"""The import-linter contracts of pyproject.toml hold for the package, and they catch a wrong-way import;
no import circle anywhere in talkbench, package ``__init__`` modules included.

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

import grimp
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


def _contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test_the_package_keeps_every_contract():
    proc = _lint(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = " ".join(proc.stdout.split())  # the report wraps long contract names
    assert " 0 broken" in out
    for contract in _contracts():  # each one listed, and kept
        assert f"{contract['name']} KEPT" in out, (contract["id"], out)


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
        ("config/schema.py", "import talkbench.commands.run", "cli-on-top"),
        ("render/camera.py", "import talkbench.cli", "cli-on-top"),
        ("study/record.py", "import mlflow", "mlflow-in-tracking"),
        ("methods/base.py", "import talkbench.datasets", "methods-load-no-data"),
        ("methods/faceformer/config.py", "import talkbench.config", "methods-load-no-data"),
        ("methods/codetalker/model.py", "import talkbench.datasets.vocaset", "methods-load-no-data"),
        ("runs.py", "import talkbench.mlflow_model", "readers-load-no-model"),
        ("reports/report.py", "import talkbench.model_bundle", "readers-load-no-model"),
        ("render/video.py", "import talkbench.methods.faceformer", "readers-load-no-model"),
        ("study/make.py", "import talkbench.audio.build", "readers-load-no-model"),
        ("audio/signal.py", "import talkbench.methods.layers", "audio-below"),
        ("audio/base.py", "import talkbench.datasets.spec", "audio-below"),
        ("audio/synthtalk.py", "import talkbench.speech_pretrain.cache", "audio-below"),
        ("speech_pretrain/encoder.py", "import talkbench.methods.faceformer", "pretraining-on-audio"),
        ("viewer/write.py", "import talkbench.checkpoint", "readers-load-no-model"),
        ("viewer/runs.py", "import talkbench.engine", "readers-after-runs"),
        ("metrics/core.py", "import talkbench.viewer", "data-and-metrics"),
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


@pytest.mark.parametrize(
    "module, bad_import, reported",  # reported: the import the report says to remove
    [
        ("reports/rows.py", "import talkbench.reports.leaderboard", ".rows -> .leaderboard"),
        ("datasets/spec.py", "import talkbench.datasets.prepared", ".spec -> .prepared"),
        ("contract.py", "import talkbench.runs", ".contract -> .runs"),
    ],
)
def test_an_import_circle_breaks_the_acyclic_contract(package_copy, module, bad_import, reported):
    path = package_copy / "talkbench" / module
    original = path.read_text()
    path.write_text(f"{original}\n{bad_import}  # noqa\n")
    try:
        proc = _lint(package_copy)
    finally:
        path.write_text(original)
    out = " ".join(proc.stdout.split())
    assert proc.returncode == 1, out
    assert f"{_contract_name('no-import-cycles')} BROKEN" in out, out
    assert reported in out, out


def _contract_name(contract_id: str) -> str:
    (name,) = [c["name"] for c in _contracts() if c["id"] == contract_id]
    return name


# -- import circles between modules ------------------------------------------------------------------
def module_cycles(graph: grimp.ImportGraph, package: str) -> list[tuple[str, ...]]:
    """Every import circle between the modules of ``package`` (one chain per circle, shortest first).

    acyclic_siblings compares the children of each package, so a circle through a package's own
    ``__init__`` (pkg -> pkg.a -> pkg) is invisible to it; this looks at modules, each one its own node.
    """
    modules = {m for m in graph.modules if m == package or m.startswith(package + ".")}
    circles: dict[frozenset, tuple[str, ...]] = {}
    for importer in sorted(modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer) & modules):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back is not None:
                chain = (importer, *back)
                circles.setdefault(frozenset(chain), chain)
    return sorted(circles.values(), key=lambda c: (len(c), c))


def test_the_cycle_finder_sees_a_circle_through_a_package_init():
    graph = grimp.ImportGraph()
    for name in ("pkg", "pkg.a", "pkg.b", "pkg.b.c"):
        graph.add_module(name)
    graph.add_import(importer="pkg", imported="pkg.a")  # the __init__ re-exports a
    graph.add_import(importer="pkg.a", imported="pkg.b.c")
    assert module_cycles(graph, "pkg") == []
    assert graph.nominate_cycle_breakers("pkg") == set()
    graph.add_import(importer="pkg.b.c", imported="pkg")  # `from pkg import x` in pkg.b.c
    assert graph.nominate_cycle_breakers("pkg") == set()  # not a circle between siblings
    assert module_cycles(graph, "pkg") == [("pkg", "pkg.a", "pkg.b.c", "pkg")]


def test_no_import_circle_between_talkbench_modules():
    assert module_cycles(grimp.build_graph("talkbench"), "talkbench") == []
