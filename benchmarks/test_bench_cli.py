"""CPU time of CLI commands that neither train nor predict, against `python -c "import mlflow"`.

    .venv/bin/python -m pytest benchmarks/test_bench_cli.py -p no:xdist --benchmark-only -o addopts="" -s

Each command runs once in a fresh interpreter (one thread); the measure is the child's user + system
CPU time (getrusage of children), which load on a shared machine disturbs much less than wall time.
`bench leaderboard` reads a real SQLite store holding one finished run. Targets (issue 16): leaderboard
and methods at most 1.3x the mlflow import, --help under 1 CPU s; each test records its ratio.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = str(Path(sys.executable).with_name("bench"))
CPU: dict[str, float] = {}


def _cpu_seconds(cmd: list[str]) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    from talkbench.tracking import Tracker

    uri = f"sqlite:///{tmp_path_factory.mktemp('cli_store') / 'mlflow.db'}"
    tr = Tracker(uri)
    rid = tr.create_run(
        tr.ensure_experiment("synthtalk"),
        "faceformer/seed0",
        {"talkbench.method": "faceformer", "talkbench.config_hash": "h", "talkbench.seed": 0},
    )
    tr.log_metrics(rid, {"test/lve": 3.0e-5, "test/mve": 1.0e-3, "test/fdd": 1.0e-7})
    tr.finish_run(rid)
    return uri


def _run(benchmark, key: str, cmd: list[str]) -> float:
    seconds = benchmark.pedantic(_cpu_seconds, args=(cmd,), rounds=1, iterations=1)
    CPU[key] = seconds
    benchmark.extra_info["cpu_s"] = round(seconds, 3)
    if "import-mlflow" in CPU and key != "import-mlflow":
        benchmark.extra_info["ratio_to_import_mlflow"] = round(seconds / CPU["import-mlflow"], 3)
    print(f"\n{key}: {seconds:.2f} CPU s", {k: round(v, 2) for k, v in benchmark.extra_info.items()})
    return seconds


def test_import_mlflow(benchmark):
    _run(benchmark, "import-mlflow", [sys.executable, "-c", "import mlflow"])


def test_bench_help(benchmark):
    _run(benchmark, "help", [BENCH, "--help"])


def test_bench_methods(benchmark):
    _run(benchmark, "methods", [BENCH, "methods"])


def test_bench_leaderboard(benchmark, store):
    _run(benchmark, "leaderboard", [BENCH, "leaderboard", "--tracking-uri", store])
