"""talkbench.tracking against real per-test SQLite stores."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import _mlflow_store
import numpy as np
import pandas as pd
import pytest

from talkbench import contract, tracking
from talkbench.errors import TalkbenchError
from talkbench.tracking import MlflowLogger, Tracker

_migrated_db = _mlflow_store._migrated_db  # fixtures shared by the tracking tests
store_uri = _mlflow_store.store_uri


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- URI resolution and the early check ---------------------------------------------------------
def test_uri_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("TALKBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    # the default store lives under TALKBENCH_HOME, not in the working directory
    assert tracking.resolve_tracking_uri() == f"sqlite:///{tmp_path}/home/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///from-env.db")
    # relative SQLite paths are made absolute, so run.json names the same store from anywhere
    assert tracking.resolve_tracking_uri() == f"sqlite:///{tmp_path}/from-env.db"
    assert tracking.resolve_tracking_uri("sqlite:////abs/x.db") == "sqlite:////abs/x.db"
    assert tracking.resolve_tracking_uri("http://127.0.0.1:1") == "http://127.0.0.1:1"


def test_sqlite_path_forms():
    assert tracking.sqlite_path("sqlite:///rel/mlflow.db") == Path("rel/mlflow.db")
    assert tracking.sqlite_path("sqlite:////abs/mlflow.db") == Path("/abs/mlflow.db")
    assert tracking.sqlite_path("http://x") is None
    with pytest.raises(TalkbenchError, match="in-memory"):
        tracking.sqlite_path("sqlite:///:memory:")


def test_sqlite_missing_directory_fails_early(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(TalkbenchError, match="does not exist"):
        Tracker(f"sqlite:///{tmp_path}/missing/dir/mlflow.db")
    with pytest.raises(TalkbenchError, match="does not exist"):
        Tracker(f"sqlite:///{blocker}/mlflow.db")


def test_unreachable_server_fails_with_reason():
    port = _free_port()
    with pytest.raises(TalkbenchError, match=r"cannot be reached: .*(refused|Errno)"):
        Tracker(f"http://127.0.0.1:{port}")


@pytest.mark.parametrize(
    ("code", "needle"), [(401, r"refused access \(HTTP 401\)"), (404, "HTTP 404 .*MLflow tracking server")]
)
def test_server_that_is_not_usable(code, needle, monkeypatch):
    import http.server
    import threading

    seen = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen["auth"] = self.headers.get("Authorization")
            self.send_response(code)
            self.end_headers()

        def log_message(self, *args):
            pass

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "tok")
    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(TalkbenchError, match=needle):
            Tracker(f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        server.server_close()
    assert seen["auth"] == "Bearer tok"  # the check sends the credentials MLflow would send


def test_file_store_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with pytest.raises(TalkbenchError, match="file store"):
        Tracker(str(tmp_path / "mlruns"))


def test_retry_locked_retries_only_lock_errors():
    calls = []

    @tracking.retry_locked
    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return "ok"

    assert flaky() == "ok" and len(calls) == 3

    @tracking.retry_locked
    def broken():
        calls.append(1)
        raise RuntimeError("no such table")

    calls.clear()
    with pytest.raises(RuntimeError, match="no such table"):
        broken()
    assert len(calls) == 1


# -- logging a run ------------------------------------------------------------------------------
def test_full_run_roundtrip(store_uri, tmp_path):
    tr = Tracker(store_uri)
    exp = tr.ensure_experiment("synthtalk")
    assert tr.ensure_experiment("synthtalk") == exp  # created once, then reused
    artifact_root = tr.client.get_experiment(exp).artifact_location
    assert artifact_root.startswith((Path(store_uri[len("sqlite:///") :]).parent / "mlartifacts").as_uri())

    run_id = tr.create_run(exp, "template/seed0", {"talkbench.method": "template", "talkbench.seed": 0})
    # 250 params (more than one batch) with one value over the 6000-character limit
    params = {"a": {f"k{i}": i for i in range(249)}, "long": "x" * 7000}
    tr.log_params(run_id, params)
    tr.log_params(run_id, params)  # a resumed run re-logs: existing keys are skipped, no error
    logger = MlflowLogger(tr, run_id)
    for epoch in range(3):
        logger.log_metrics({"train/loss": 1.0 / (epoch + 1), "val/loss": 2.0 - epoch}, step=epoch)
    tr.log_metrics(run_id, {"test/lve": np.float32(1.5e-5)})
    tr.log_dataset(run_id, "synthtalk", tmp_path / "data", digest="deadbeef01", context="test")
    table = pd.DataFrame({"clip": ["a", "b"], "lve": [1.0, 2.0]})
    tr.log_table(run_id, table, "eval/per_sequence.csv")
    pred_dir = tmp_path / "preds"
    pred_dir.mkdir()
    np.save(pred_dir / contract.prediction_file("S05_s01"), np.zeros((7, 15), np.float32))
    np.save(pred_dir / contract.prediction_file("S05_s01", "S01"), np.ones((7, 15), np.float32))
    tr.log_artifact(run_id, pred_dir, contract.PREDICTIONS_DIR)
    (tmp_path / "ckpt.pt").write_bytes(b"weights")
    logger.log_artifact(tmp_path / "ckpt.pt", "checkpoints")
    tr.finish_run(run_id)

    run = tr.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert len(run.data.params) == 250
    assert run.data.params["a.k7"] == "7"
    assert len(run.data.params["long"]) == tracking.MAX_PARAM_CHARS
    assert run.data.tags["talkbench.seed"] == "0"
    assert run.data.metrics["test/lve"] == pytest.approx(1.5e-5)
    hist = tr.metric_history(run_id, "val/loss")
    assert hist["step"].tolist() == [0, 1, 2] and hist["value"].tolist() == [2.0, 1.0, 0.0]

    (inp,) = run.inputs.dataset_inputs
    assert inp.dataset.digest == "deadbeef01" and inp.dataset.source_type == "local"
    assert json.loads(inp.dataset.source)["uri"] == str(tmp_path / "data")
    assert {t.key: t.value for t in inp.tags}["mlflow.data.context"] == "test"

    assert sorted(tr.list_artifacts(run_id, "predictions")) == [
        "predictions/S05_s01.npy",
        "predictions/S05_s01_condition_S01.npy",
    ]
    got = np.load(tr.download_artifacts(run_id, "predictions/S05_s01_condition_S01.npy", tmp_path / "dl"))
    assert got.shape == (7, 15) and got.dtype == np.float32 and got.min() == 1.0
    csv = pd.read_csv(tr.download_artifacts(run_id, "eval/per_sequence.csv", tmp_path / "dl"))
    pd.testing.assert_frame_equal(csv, table)
    assert "eval/per_sequence.json" in tr.list_artifacts(run_id, "eval")
    assert "checkpoints/ckpt.pt" in tr.list_artifacts(run_id, "checkpoints")

    df = tr.search_runs("synthtalk")
    assert df["run_id"].tolist() == [run_id]
    assert df.loc[0, "metrics.test/lve"] == pytest.approx(1.5e-5)
    assert df.loc[0, "tags.talkbench.method"] == "template"
    assert tr.search_runs("no-such-dataset").empty


def test_search_filters_unfinished_and_by_metric(store_uri):
    tr = Tracker(store_uri)
    exp = tr.ensure_experiment("vocaset")
    done, running = tr.create_run(exp, "a"), tr.create_run(exp, "b")
    tr.log_metrics(done, {"test/lve": 2.0})
    tr.log_metrics(running, {"test/lve": 1.0})
    tr.finish_run(done)
    assert tr.search_runs("vocaset")["run_id"].tolist() == [done]
    assert set(tr.search_runs("vocaset", finished_only=False)["run_id"]) == {done, running}
    low = tr.search_runs("vocaset", filter_string="metrics.`test/lve` < 1.5", finished_only=False)
    assert low["run_id"].tolist() == [running]


def test_missing_run_and_artifact_errors(store_uri):
    tr = Tracker(store_uri)
    with pytest.raises(TalkbenchError, match="run 'nope' does not exist"):
        tr.get_run("nope")
    run_id = tr.create_run(tr.ensure_experiment("biwi"))
    with pytest.raises(TalkbenchError, match="no artifact"):
        tr.download_artifacts(run_id, "predictions/missing.npy")


def test_reopen_run_sets_running(store_uri):
    tr = Tracker(store_uri)
    run_id = tr.create_run(tr.ensure_experiment("synthtalk"))
    tr.finish_run(run_id, "KILLED")
    tr.reopen_run(run_id)
    assert tr.get_run(run_id).info.status == "RUNNING"


# -- run directories and provenance -------------------------------------------------------------
def test_run_records_and_resume_last(store_uri, monkeypatch, tmp_path):
    """run.json keeps the store only; MLflow's status says which run ``--resume last`` is: the newest
    KILLED one (by start time), never a FAILED, RUNNING or FINISHED one."""
    monkeypatch.setenv("TALKBENCH_HOME", str(tmp_path / "home"))
    with pytest.raises(TalkbenchError, match="no run directory"):
        tracking.last_interrupted_run()
    tr = Tracker(store_uri)
    statuses = {"old": "KILLED", "done": "FINISHED", "new": "KILLED", "failed": "FAILED", "live": "RUNNING"}
    ids = {}
    for name, status in statuses.items():  # in this order of start time, two experiments
        ids[name] = tr.create_run(tr.ensure_experiment("synthtalk" if name != "new" else "biwi"))
        if status != "RUNNING":
            tr.finish_run(ids[name], status)
        d = tracking.write_run_record(ids[name], tracking_uri=tr.uri)
        assert d == tmp_path / "home" / "runs" / ids[name]
        time.sleep(0.002)  # distinct start times (ms)
    assert tracking.read_run_record(ids["new"]) == {"run_id": ids["new"], "tracking_uri": tr.uri}
    assert tr.run_statuses([*ids.values(), "not-a-run"]) == {
        ids[name]: (status, tr.get_run(ids[name]).info.start_time) for name, status in statuses.items()
    }
    assert tracking.last_interrupted_run() == ids["new"]
    assert tracking.last_interrupted_run(resumable=lambda run_id: run_id != ids["new"]) == ids["old"]
    tr.reopen_run(ids["new"])
    tr.finish_run(ids["new"])
    assert tracking.last_interrupted_run() == ids["old"]
    # a record naming a store that is gone is reported, not fatal
    tracking.write_run_record("0" * 32, tracking_uri=f"sqlite:///{tmp_path}/gone.db")
    assert tracking.last_interrupted_run() == ids["old"]
    tr.finish_run(ids["old"])
    with pytest.raises(TalkbenchError, match=r"no interrupted \(KILLED\) run .*1 FAILED, 1 RUNNING.*gone.db"):
        tracking.last_interrupted_run()
    with pytest.raises(TalkbenchError, match="no run directory"):
        tracking.read_run_record("missing")


def test_git_info_matches_repository():
    repo = tracking.provenance.SOURCE_TREE
    assert (repo / "talkbench" / "tracking" / "provenance.py").is_file()
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True)
    info = tracking.git_info()
    if head.returncode != 0:
        assert info["commit"] == "unknown"
    else:
        assert info["commit"] == head.stdout.strip()
        assert info["dirty"] in ("true", "false")


def test_package_versions_are_real():
    import mlflow
    import torch

    v = tracking.package_versions()
    assert v["torch"] == torch.__version__.split("+")[0] or v["torch"] == torch.__version__
    assert v["mlflow"] == mlflow.__version__


@pytest.mark.slow
def test_parallel_first_use_of_a_fresh_store(tmp_path):
    """Three processes open one brand-new SQLite store at once: migrations take turns, one experiment."""
    import sys

    uri = f"sqlite:///{tmp_path}/fresh.db"
    code = (
        "import sys; from talkbench.tracking import Tracker; t = Tracker(sys.argv[1]); "
        "e = t.ensure_experiment('synthtalk'); r = t.create_run(e); "
        "t.log_metrics(r, {'x': 1.0}); t.finish_run(r)"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, uri], stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errs
    tr = Tracker(uri)
    assert len(tr.client.search_experiments()) == 2  # Default + synthtalk
    assert len(tr.search_runs("synthtalk")) == 3
