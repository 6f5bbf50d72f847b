"""Issue 15: 8 concurrent `bench run`s against a team store (an `mlflow server` on a real PostgreSQL
server, artifacts proxied by the server) and against the SQLite default store: 8 finished runs,
each with all its metrics and artifacts; none lost."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from talkbench import contract

N_RUNS = 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _as_db_user(cmd: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root: CI and this machine run tests as root
    return ["runuser", "-u", "nobody", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture
def postgres():
    """A PostgreSQL server in a temp folder on a free loopback port; yields its SQLAlchemy URI."""
    pg = _pg_bin()
    if pg is None:
        pytest.skip("PostgreSQL server binaries not installed (scripts/install-system-packages.sh)")
    pytest.importorskip("psycopg")
    base = Path(tempfile.mkdtemp(prefix="pg", dir="/tmp"))
    base.chmod(0o777)  # the unprivileged server user writes its data and socket here
    data, port = base / "data", _free_port()
    try:
        subprocess.run(_as_db_user([str(pg / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                                    "--no-sync"]), check=True, capture_output=True, timeout=120)  # fmt: skip
        subprocess.run(_as_db_user([str(pg / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-w",
                                    "-o", f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off",
                                    "start"]), check=True, capture_output=True, timeout=120)  # fmt: skip
        subprocess.run([str(pg / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "mlflow"],
                       check=True, capture_output=True, timeout=60)  # fmt: skip
        yield f"postgresql://postgres@127.0.0.1:{port}/mlflow"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(_as_db_user([str(pg / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                           capture_output=True, timeout=120)  # fmt: skip
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def mlflow_server(postgres, tmp_path):
    """`mlflow server` on PostgreSQL, proxying artifacts to a local folder; yields (URI, that folder)."""
    port, artifacts = _free_port(), tmp_path / "artifacts"
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", postgres, "--serve-artifacts",
           "--artifacts-destination", str(artifacts), "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1"]  # fmt: skip
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(uri + "/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    text = (tmp_path / "server.log").read_text()
                    raise AssertionError("mlflow server did not start:\n" + text) from None
                time.sleep(0.5)
        yield uri, artifacts
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        log.close()


def _concurrent_runs(env: dict[str, str], data_root: Path) -> tuple[list[str], float]:
    """N_RUNS `bench run`s started at once; returns their outputs and the wall time."""
    start = time.perf_counter()
    procs = [
        subprocess.Popen([sys.executable, "-m", "talkbench.cli", "run", "--method", "mean-motion", "--preset",
                          "tiny", "--data-root", str(data_root), "--seed", str(seed), "--no-progress",
                          "--no-leaderboard"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)  # fmt: skip
        for seed in range(N_RUNS)
    ]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
    return outs, time.perf_counter() - start


def _check_store(uri: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "synthtalk"]
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    assert len(runs) == N_RUNS and {r.info.status for r in runs} == {"FINISHED"}
    assert sorted(r.data.tags[contract.Tag.SEED] for r in runs) == [str(s) for s in range(N_RUNS)]
    metric_sets = {frozenset(k for k in r.data.metrics if k.startswith("test/")) for r in runs}
    assert len(metric_sets) == 1 and len(next(iter(metric_sets))) > 0  # every run has all its metrics
    for r in runs:
        listed = {a.path for a in client.list_artifacts(r.info.run_id)}
        listed |= {a.path for a in client.list_artifacts(r.info.run_id, "eval")}
        assert {contract.CONFIG_ARTIFACT, contract.PER_SEQUENCE_ARTIFACT, contract.SUMMARY_ARTIFACT} <= listed
        local = client.download_artifacts(r.info.run_id, contract.PER_SEQUENCE_ARTIFACT)
        assert Path(local).stat().st_size > 0
    return runs


@pytest.mark.slow
def test_eight_concurrent_runs_on_mlflow_server_with_postgres(tmp_path, synthtalk_tiny, mlflow_server):
    uri, artifacts = mlflow_server
    env = {**os.environ, "TALKBENCH_HOME": str(tmp_path / "home"), "MLFLOW_TRACKING_URI": uri,
           "OMP_NUM_THREADS": "1"}  # fmt: skip
    _, seconds = _concurrent_runs(env, synthtalk_tiny)
    runs = _check_store(uri)
    # the artifacts went through the server into its destination, not into a client-side folder
    for r in runs:
        assert r.info.artifact_uri.startswith("mlflow-artifacts:")
    stored = [p for p in artifacts.rglob("*") if p.name == Path(contract.PER_SEQUENCE_ARTIFACT).name]
    assert len(stored) == N_RUNS
    print(f"\npostgres+mlflow server: {N_RUNS} concurrent runs in {seconds:.1f} s")


@pytest.mark.slow
def test_eight_concurrent_runs_on_the_sqlite_default(tmp_path, synthtalk_tiny):
    home = tmp_path / "home"
    env = {**os.environ, "TALKBENCH_HOME": str(home), "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)  # the default store under TALKBENCH_HOME
    _, seconds = _concurrent_runs(env, synthtalk_tiny)
    from talkbench.tracking import STORE_FILE

    _check_store(f"sqlite:///{home}/{STORE_FILE}")
    print(f"\nsqlite default: {N_RUNS} concurrent runs in {seconds:.1f} s")
