"""The tracked run's life cycle and MLflow conventions (issues 13.4/13.5, 17.2/17.3/17.7), on real stores."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import _mlflow_store
import pytest
from typer.testing import CliRunner

from talkbench import contract, paths, pipeline, tracking
from talkbench.cli import app
from talkbench.config import load_config
from talkbench.contract import Tag
from talkbench.errors import DataError, Interrupted, TalkbenchError

_migrated_db = _mlflow_store._migrated_db
store_uri = _mlflow_store.store_uri
REPO = Path(__file__).resolve().parent.parent


def _cfg(root, *overrides, method="template", **kw):
    return load_config(method, preset="tiny", data_root=root, overrides=list(overrides), **kw)


def _statuses(uri: str) -> list[str]:
    runs = tracking.Tracker(uri).search_runs("synthtalk", finished_only=False)
    return [] if runs.empty else runs["status"].tolist()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the default store and read-only commands ---------------------------------------------------
def test_read_only_commands_create_no_store(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("TALKBENCH_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["leaderboard"])
    assert result.exit_code == 2
    assert f"no tracking store at {home / 'mlflow.db'}" in result.output
    assert "nothing was created" in result.output
    result = CliRunner().invoke(app, ["ui", "--port", str(_free_port())])
    assert result.exit_code == 2 and "no tracking store" in result.output
    assert list(tmp_path.iterdir()) == []  # no home, no mlflow.db, no mlruns in the cwd


def test_default_store_is_under_home_and_named(tmp_path, monkeypatch, _migrated_db):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(_migrated_db, home / "mlflow.db")
    monkeypatch.setenv("TALKBENCH_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["leaderboard"])
    assert result.exit_code == 0, result.output
    assert f"store: sqlite:///{home / 'mlflow.db'}" in result.output


def test_version():
    from importlib.metadata import version

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"talkbench {version('talkbench')}"


# -- MLflow conventions -------------------------------------------------------------------------
def test_run_carries_mlflow_conventions(store_uri, synthtalk_tiny):
    cfg = _cfg(synthtalk_tiny, "eval.n_boot=50")
    result = pipeline.run(cfg, tracking_uri=store_uri, progress=False)
    tr = tracking.Tracker(store_uri)
    run = tr.get_run(result.run_id)
    exp = tr.client.get_experiment(run.info.experiment_id)
    assert exp.tags[Tag.EXPERIMENT_KIND] == "custom_model_development"
    tags = run.data.tags
    assert tags[Tag.SOURCE_GIT_COMMIT] == tracking.git_info()["commit"]
    assert tags[Tag.SOURCE_NAME] == "bench run"
    note = tags[Tag.NOTE]
    assert "**template**" in note and "`tiny`" in note and "n_boot=50" in note
    ev = result.evaluation
    lo, hi = ev.ci["lve"]
    assert run.data.metrics[contract.test_ci_low("lve")] == pytest.approx(lo)
    assert run.data.metrics[contract.test_ci_high("lve")] == pytest.approx(hi)
    assert lo <= run.data.metrics[contract.test_metric("lve")] <= hi
    assert f"| lve | {run.data.metrics['test/lve']:.4g} | [{lo:.4g}, {hi:.4g}] |" in note
    assert run.info.run_name == "template/tiny/seed0 eval.n_boot=50"


def test_run_names_carry_the_overrides(synthtalk_tiny):
    a = _cfg(synthtalk_tiny, "memorytalker.memory=false", method="memorytalker")
    b = _cfg(
        synthtalk_tiny, "memorytalker.memory_slots=32", "memorytalker.triplet_margin=1", method="memorytalker"
    )
    plain = _cfg(synthtalk_tiny, method="memorytalker")
    assert pipeline.run_name(a) == "memorytalker/tiny/seed0 memory=False"
    assert pipeline.run_name(b) == "memorytalker/tiny/seed0 memory_slots=32,triplet_margin=1"
    assert pipeline.run_name(plain) == "memorytalker/tiny/seed0"  # the preset's own values are no overrides
    # a dict-valued setting (CodeTalker's audio) names only the entries that changed
    ct = _cfg(synthtalk_tiny, "codetalker.audio.n_mels=80", method="codetalker")
    assert pipeline.run_name(ct) == "codetalker/tiny/seed0 audio.n_mels=80"


def test_existing_experiment_gets_the_kind(store_uri):
    tr = tracking.Tracker(store_uri)
    exp_id = tr.client.create_experiment("old-one")
    assert tracking.Tracker(store_uri).ensure_experiment("old-one") == exp_id
    assert tr.client.get_experiment(exp_id).tags[Tag.EXPERIMENT_KIND] == contract.EXPERIMENT_KIND


def test_system_metrics_are_logged(store_uri, monkeypatch):
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    tr = tracking.Tracker(store_uri)
    rid = tr.create_run(tr.ensure_experiment("sys"))
    with tr.system_metrics(rid):
        time.sleep(1.5)
    assert any(k.startswith("system/cpu") for k in tr.get_run(rid).data.metrics)


# -- no run left RUNNING ------------------------------------------------------------------------
def test_data_error_leaves_no_run(store_uri, synthtalk_tiny, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(synthtalk_tiny, broken)
    victim = sorted((broken / "wav").iterdir())[-1]  # a test clip, which no training step reads
    victim.write_bytes(b"RIFF not a wav")
    with pytest.raises(DataError, match=victim.name):
        pipeline.run(_cfg(broken), tracking_uri=store_uri, progress=False)
    assert _statuses(store_uri) == []


def test_run_record_write_failure_finishes_the_run(store_uri, synthtalk_tiny, monkeypatch):
    def unwritable(run_id, **fields):
        raise PermissionError(13, "Permission denied", str(paths.run_dir(run_id)))

    monkeypatch.setattr(tracking, "write_run_record", unwritable)
    with pytest.raises(PermissionError):
        pipeline.run(_cfg(synthtalk_tiny), tracking_uri=store_uri, progress=False)
    assert _statuses(store_uri) == ["FAILED"]


def test_sigterm_outside_training_kills_the_run(store_uri, synthtalk_tiny, monkeypatch):
    from talkbench.metrics import Evaluator

    real_result = Evaluator.result

    def terminated(self):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends
        return real_result(self)

    monkeypatch.setattr(Evaluator, "result", terminated)
    with pytest.raises(Interrupted) as info:
        pipeline.run(_cfg(synthtalk_tiny), tracking_uri=store_uri, progress=False)
    assert info.value.signal_name == "SIGTERM" and info.value.run_id
    assert _statuses(store_uri) == ["KILLED"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored


def test_resume_last_skips_runs_it_cannot_resume(store_uri, tmp_path, monkeypatch):
    monkeypatch.setenv("TALKBENCH_HOME", str(tmp_path))
    tr = tracking.Tracker(store_uri)
    older = tr.create_run(tr.ensure_experiment("synthtalk"))
    time.sleep(0.01)
    newer = tr.create_run(tr.ensure_experiment("synthtalk"))  # no checkpoint
    for run_id in (older, newer):
        tr.finish_run(run_id, "KILLED")
        tracking.write_run_record(run_id, tracking_uri=tr.uri)
    (paths.run_dir(older) / contract.CHECKPOINTS_DIR).mkdir()
    (paths.run_dir(older) / contract.CHECKPOINTS_DIR / "last.pt").write_bytes(b"")
    assert tracking.last_interrupted_run() == newer
    # only older is resumable: it is picked, and fails later only because it has no config.yaml
    with pytest.raises(TalkbenchError, match=rf"--resume {older}: .*config.yaml is missing"):
        pipeline.resume_target("last")


# -- --resume from any directory ----------------------------------------------------------------
def test_run_record_keeps_an_absolute_uri(_migrated_db, synthtalk_tiny, tmp_path, monkeypatch):
    start, elsewhere = tmp_path / "start", tmp_path / "elsewhere"
    start.mkdir()
    elsewhere.mkdir()
    shutil.copy(_migrated_db, start / "rel.db")
    monkeypatch.chdir(start)
    cfg = _cfg(synthtalk_tiny)
    run_id = tracking.Tracker("sqlite:///rel.db").create_run(
        tracking.Tracker("sqlite:///rel.db").ensure_experiment("synthtalk")
    )
    tracking.write_run_record(run_id, tracking_uri=tracking.resolve_tracking_uri("sqlite:///rel.db"))
    cfg.save(paths.run_dir(run_id) / paths.RUN_CONFIG)
    monkeypatch.chdir(elsewhere)
    rid, _, uri = pipeline.resume_target(run_id)
    assert uri == f"sqlite:///{start / 'rel.db'}"
    assert tracking.Tracker(uri).get_run(rid).info.run_id == run_id
    assert not (elsewhere / "rel.db").exists()


def test_pipeline_saves_absolute_uri(_migrated_db, synthtalk_tiny, tmp_path, monkeypatch):
    shutil.copy(_migrated_db, tmp_path / "rel.db")
    monkeypatch.chdir(tmp_path)
    result = pipeline.run(_cfg(synthtalk_tiny), tracking_uri="sqlite:///rel.db", progress=False)
    record = json.loads((result.run_dir / paths.RUN_RECORD).read_text())
    assert record == {"run_id": result.run_id, "tracking_uri": f"sqlite:///{tmp_path / 'rel.db'}"}


# -- a tracking server that dies mid-run --------------------------------------------------------
KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from talkbench import pipeline
    inner = pipeline._run_inside

    def killing(*args, **kwargs):  # the run exists: now the server goes away
        os.killpg(int(os.environ["SERVER_PID"]), signal.SIGKILL)  # the server and its workers
        return inner(*args, **kwargs)

    pipeline._run_inside = killing
    sys.argv = ["bench", *sys.argv[1:]]
    from talkbench.cli import main
    main()
    """
)


@pytest.mark.slow
def test_killed_tracking_server_ends_the_run_with_one_line(synthtalk_tiny, tmp_path, _migrated_db):
    port = _free_port()
    shutil.copy(_migrated_db, tmp_path / "server.db")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{tmp_path}/server.db",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--artifacts-destination", (tmp_path / "art").as_uri()],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        from talkbench.commands.ui import wait_until_up

        wait_until_up(f"http://127.0.0.1:{port}", server)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_HTTP_REQUEST")}
        env.update(SERVER_PID=str(server.pid), TALKBENCH_HOME=str(tmp_path / "home"))
        t0 = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-c", KILLER, "run", "--method", "template", "--preset", "tiny",
             "--data-root", str(synthtalk_tiny), "--tracking-uri", f"http://127.0.0.1:{port}",
             "--no-progress", "--no-leaderboard"],
            capture_output=True, text=True, timeout=120, env=env, cwd=REPO,
        )  # fmt: skip
        elapsed = time.monotonic() - t0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: tracking store"), proc.stderr
    assert "stopped answering" in lines[0]
    assert elapsed < 60
