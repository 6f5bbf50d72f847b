"""`bench run`, `bench leaderboard`, `bench methods` through the real CLI, on SynthTalk tiny.

Default tests run in-process (typer's CliRunner). The slow ones start real processes: two
`bench run` in parallel against one SQLite store, and `mlflow server` listing a run over HTTP.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import _mlflow_store
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from talkbench import paths, tracking
from talkbench.cli import app
from talkbench.methods.base import Stage
from talkbench.methods.reference import TemplateMethod
from talkbench.registry import METHODS

_migrated_db = _mlflow_store._migrated_db
store_uri = _mlflow_store.store_uri

BENCH = [sys.executable, "-m", "talkbench.cli"]


def bench(*args: str):
    result = CliRunner().invoke(app, list(args))
    return result


def _assert_one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert "Traceback" not in result.output
    for n in needles:
        assert n in err, err


def _leaderboard_rows(uri: str) -> list[dict]:
    out = bench("leaderboard", "--format", "csv", "--tracking-uri", uri)
    assert out.exit_code == 0, out.output
    return list(csv.DictReader(io.StringIO(out.stdout)))


# -- the two reference methods end to end --------------------------------------------------------
def test_template_and_mean_motion_appear_in_leaderboard(store_uri, synthtalk_tiny):
    root = str(synthtalk_tiny)
    for method in ("template", "mean-motion"):
        out = bench(
            "run",
            "--method",
            method,
            "--preset",
            "tiny",
            "--data-root",
            root,
            "--tracking-uri",
            store_uri,
            "--no-progress",
        )
        assert out.exit_code == 0, out.output
        assert "Leaderboard: synthtalk" in out.stdout and "▶" in out.stdout
    rows = _leaderboard_rows(store_uri)
    assert sorted(r["method"] for r in rows) == ["mean-motion", "template"]
    assert all(r["floor"] == "True" and r["n_seeds"] == "1" for r in rows)
    # the table agrees with the store
    runs = tracking.Tracker(store_uri).search_runs("synthtalk")
    for r in rows:
        (lve,) = runs.loc[runs["tags.talkbench.method"] == r["method"], "metrics.test/lve"]
        assert float(r["lve_mean"]) == pytest.approx(lve, rel=1e-12)
    # markdown with a metric selection
    md = bench("leaderboard", "--format", "markdown", "--metrics", "lve,mve", "--tracking-uri", store_uri)
    assert md.exit_code == 0 and "LVE ↓" in md.stdout and "FDD" not in md.stdout


# -- a trainable method that runs in a second: resume and interruption through the real engine --------
@dataclass
class OffsetConfig:
    epochs: int = 3


class OffsetTemplate(TemplateMethod):
    """The template plus one learned offset, trained for a few epochs (checkpoints in a second).

    ``interrupt_at``: the training step (1-based, counted over the whole run) at which the method
    sends itself SIGINT, as a user pressing Ctrl-C would.
    """

    name = "test-offset"
    Config = OffsetConfig
    interrupt_at: int | None = None

    def __init__(self, config, spec):
        super().__init__(config, spec)
        self.offset = torch.nn.Parameter(torch.zeros(3))
        self.steps = 0

    def stages(self):
        return [Stage("fit", self.config.epochs, 1e-3, sampler="sequential", batch_size=2)]

    def loss(self, stage, batch):
        self.steps += 1
        if self.steps == self.interrupt_at:
            os.kill(os.getpid(), signal.SIGINT)
        pred = batch.template[:, None] + self.offset
        mask = batch.mask[:, :, None, None].to(pred.dtype)
        return {"loss": ((pred - batch.vertices) ** 2 * mask).sum() / (mask.sum() * pred.shape[2] * 3)}

    @torch.no_grad()
    def predict(self, audio, template, condition=None):
        return super().predict(audio, template) + self.offset


@pytest.fixture
def offset_method():
    METHODS.register(OffsetTemplate.name, OffsetTemplate)
    yield OffsetTemplate.name
    METHODS.unregister(OffsetTemplate.name)


def _offset_run(root, uri: str, *extra: str):
    # no preset files for the test method: the tiny presets' dataset and bootstrap settings
    args = ["--set", "dataset.preset=tiny", "--set", "eval.n_boot=50", "--set", "train.checkpoint_every=1"]
    return bench(
        "run", "--method", "test-offset", "--data-root", str(root), "--tracking-uri", uri, "--no-progress",
        "--no-leaderboard", *args, *extra,
    )  # fmt: skip


@pytest.fixture
def own_home(tmp_path, monkeypatch):
    """A TALKBENCH_HOME of this test's own: ``--resume last`` looks at every run directory there, and
    the session's home holds the runs of other tests."""
    monkeypatch.setenv("TALKBENCH_HOME", str(tmp_path / "home"))


def test_resume_reopens_the_same_run(store_uri, synthtalk_tiny, offset_method, own_home):
    out = _offset_run(synthtalk_tiny, store_uri)
    assert out.exit_code == 0, out.output
    tr = tracking.Tracker(store_uri)
    (run_id,) = tr.search_runs("synthtalk")["run_id"]
    # pretend it was killed: the store says KILLED (MLflow's status is the only record of it)
    tr.finish_run(run_id, "KILLED")
    bad = bench("run", "--resume", "last", "--seed", "3")
    _assert_one_line_error(bad, "--resume reuses the run's saved config", "--seed")
    out = bench("run", "--resume", "last", "--no-progress")  # tracking URI comes from run.json
    assert out.exit_code == 0, out.output
    assert run_id in out.stdout
    runs = tr.search_runs("synthtalk", finished_only=False)
    assert runs["run_id"].tolist() == [run_id] and runs.loc[0, "status"] == "FINISHED"
    assert runs.loc[0, "tags.talkbench.resumed"] == "true"
    # a finished run has nothing left to resume
    _assert_one_line_error(bench("run", "--resume", run_id), "nothing to resume", run_id, "already finished")


def test_sigint_saves_a_checkpoint_and_prints_the_resume_command(
    store_uri, synthtalk_tiny, offset_method, monkeypatch
):
    reference = _offset_run(synthtalk_tiny, store_uri)
    assert reference.exit_code == 0, reference.output
    tr = tracking.Tracker(store_uri)
    (ref_id,) = tr.search_runs("synthtalk")["run_id"]

    monkeypatch.setattr(OffsetTemplate, "interrupt_at", 3)  # in the second epoch (2 steps per epoch)
    out = _offset_run(synthtalk_tiny, store_uri)
    assert out.exit_code == 130, out.output
    (run_id,) = set(tr.search_runs("synthtalk", finished_only=False)["run_id"]) - {ref_id}
    line = out.stderr.strip()
    assert "\n" not in line and "Traceback" not in out.output
    assert re.fullmatch(
        rf"interrupted \(SIGINT\): checkpoint saved at epoch \d+; resume with: bench run --resume {run_id}",
        line,
    ), line
    assert tr.get_run(run_id).info.status == "KILLED"
    assert tracking.read_run_record(run_id) == {"run_id": run_id, "tracking_uri": tr.uri}  # no status
    assert (paths.run_dir(run_id) / "checkpoints" / "last.pt").is_file()

    monkeypatch.setattr(OffsetTemplate, "interrupt_at", None)
    resumed = bench("run", "--resume", run_id, "--no-progress", "--no-leaderboard")
    assert resumed.exit_code == 0, resumed.output
    run, ref = tr.get_run(run_id), tr.get_run(ref_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["test/lve"] == ref.data.metrics["test/lve"]  # as if never interrupted


def test_resume_last_picks_the_interrupted_run_not_a_newer_failed_one(
    store_uri, synthtalk_tiny, offset_method, own_home, monkeypatch, tmp_path
):
    """MLflow's status decides what ``--resume last`` is: the newest KILLED run. A newer run that has
    a checkpoint too but FAILED (its data went bad) is passed over; run.json holds no status."""
    monkeypatch.setattr(OffsetTemplate, "interrupt_at", 3)  # Ctrl-C in the second epoch
    bad_data = tmp_path / "bad-data"
    shutil.copytree(synthtalk_tiny, bad_data)
    tr = tracking.Tracker(store_uri)
    ids = []
    for root in (synthtalk_tiny, bad_data):
        assert _offset_run(root, store_uri).exit_code == 130
        (new,) = set(tr.search_runs("synthtalk", finished_only=False)["run_id"]) - set(ids)
        ids.append(new)
    interrupted, failing = ids
    for npy in (bad_data / "vertices_npy").glob("*.npy"):  # the newer run's data goes bad ...
        vertices = np.load(npy)
        vertices[0] = np.nan
        np.save(npy, vertices)
    monkeypatch.setattr(OffsetTemplate, "interrupt_at", None)
    out = bench("run", "--resume", failing, "--no-progress", "--no-leaderboard")
    assert out.exit_code != 0 and "NaN" in out.output, out.output  # ... so its resume fails on it
    assert tr.get_run(failing).info.status == "FAILED"
    assert (paths.run_dir(failing) / "checkpoints" / "last.pt").is_file()  # resumable, but not "last"
    assert tr.get_run(interrupted).info.start_time < tr.get_run(failing).info.start_time
    for run_id in ids:
        assert tracking.read_run_record(run_id) == {"run_id": run_id, "tracking_uri": tr.uri}

    out = bench("run", "--resume", "last", "--no-progress", "--no-leaderboard")
    assert out.exit_code == 0, out.output
    assert interrupted in out.stdout and failing not in out.stdout
    assert tr.get_run(interrupted).info.status == "FINISHED"
    assert tr.get_run(failing).info.status == "FAILED"
    # nothing interrupted is left; the failed run is named in the error, resumable by id
    _assert_one_line_error(bench("run", "--resume", "last"), "no interrupted (KILLED) run", "1 FAILED")


def test_ctrl_c_outside_training_marks_the_run_killed(store_uri, synthtalk_tiny, monkeypatch):
    def interrupted_predict(self, audio, template, condition=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(TemplateMethod, "predict", interrupted_predict)
    out = bench(
        "run", "--method", "template", "--preset", "tiny", "--data-root", str(synthtalk_tiny),
        "--tracking-uri", store_uri, "--no-progress",
    )  # fmt: skip
    assert out.exit_code == 130, out.output
    (run_id,) = tracking.Tracker(store_uri).search_runs("synthtalk", finished_only=False)["run_id"]
    assert out.stderr.strip() == f"interrupted (SIGINT): no checkpoint saved; run {run_id} is marked killed"
    assert tracking.Tracker(store_uri).get_run(run_id).info.status == "KILLED"


def test_ctrl_c_before_the_run_exists_logs_nothing(store_uri, synthtalk_tiny, monkeypatch):
    from talkbench.config import DatasetConfig

    def interrupted_load(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(DatasetConfig, "load", interrupted_load)
    out = bench(
        "run", "--method", "template", "--preset", "tiny", "--data-root", str(synthtalk_tiny),
        "--tracking-uri", store_uri, "--no-progress",
    )  # fmt: skip
    assert out.exit_code == 130, out.output
    assert out.stderr.strip() == "interrupted before the run was created; nothing was logged"
    assert tracking.Tracker(store_uri).search_runs("synthtalk", finished_only=False).empty


def test_resume_without_a_checkpoint_is_refused_before_anything_is_logged(
    store_uri, synthtalk_tiny, own_home
):
    out = bench(
        "run", "--method", "template", "--preset", "tiny", "--data-root", str(synthtalk_tiny),
        "--tracking-uri", store_uri, "--no-progress", "--no-leaderboard",
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    tr = tracking.Tracker(store_uri)
    (run_id,) = tr.search_runs("synthtalk")["run_id"]
    tr.finish_run(run_id, "KILLED")
    before = tr.get_run(run_id)
    _assert_one_line_error(bench("run", "--resume", "last"), "nothing to resume", "none with a checkpoint")
    after = tr.get_run(run_id)
    assert after.info.status == "KILLED" and after.data.tags == before.data.tags
    assert after.data.metrics == before.data.metrics


def test_corrupt_checkpoint_on_resume(store_uri, synthtalk_tiny):
    out = bench(
        "run",
        "--method",
        "template",
        "--preset",
        "tiny",
        "--data-root",
        str(synthtalk_tiny),
        "--tracking-uri",
        store_uri,
        "--no-progress",
    )
    assert out.exit_code == 0, out.output
    tr = tracking.Tracker(store_uri)
    (run_id,) = tr.search_runs("synthtalk")["run_id"]
    tr.finish_run(run_id, "KILLED")
    last = paths.run_dir(run_id) / "checkpoints" / "last.pt"
    last.write_bytes(b"not a checkpoint")
    _assert_one_line_error(bench("run", "--resume", run_id, "--no-progress"), str(last), "corrupt")
    assert tr.get_run(run_id).info.status == "FAILED"


def test_methods_lists_reference_methods():
    out = bench("methods")
    assert out.exit_code == 0, out.output
    for name in ("template", "mean-motion", "memorytalker"):
        assert name in out.stdout
    assert "learning-free" in out.stdout and "tiny" in out.stdout


# -- bad input: one line, exit code 2 ------------------------------------------------------------
def test_unknown_method(store_uri):
    _assert_one_line_error(
        bench("run", "--method", "facefromer", "--tracking-uri", store_uri),
        "unknown method 'facefromer'",
        "Did you mean: faceformer",
    )


def test_unknown_preset(store_uri):
    _assert_one_line_error(
        bench("run", "--method", "template", "--preset", "tinny", "--tracking-uri", store_uri),
        "unknown preset 'tinny'",
    )


def test_unknown_override_key(store_uri):
    _assert_one_line_error(
        bench(
            "run",
            "--method",
            "template",
            "--preset",
            "tiny",
            "--set",
            "eval.n_bot=3",
            "--tracking-uri",
            store_uri,
        ),
        "unknown config key 'eval.n_bot'",
    )


def test_unknown_metric(store_uri):
    _assert_one_line_error(
        bench("leaderboard", "--metrics", "lve,fddd", "--tracking-uri", store_uri), "unknown metric 'fddd'"
    )


def test_unknown_format(store_uri):
    _assert_one_line_error(bench("leaderboard", "--format", "html", "--tracking-uri", store_uri), "--format")


def test_data_root_that_is_not_a_dataset(store_uri, tmp_path):
    (tmp_path / "notes.txt").write_text("not a dataset")
    result = bench(
        "run",
        "--method",
        "template",
        "--preset",
        "tiny",
        "--data-root",
        str(tmp_path),
        "--tracking-uri",
        store_uri,
    )
    _assert_one_line_error(result, str(tmp_path))
    # no run was created for it
    assert tracking.Tracker(store_uri).search_runs("synthtalk", finished_only=False).empty


def test_unreachable_tracking_uri_fails_before_data(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # the data root does not exist either: the tracking error must come first (nothing was loaded)
    result = bench(
        "run",
        "--method",
        "template",
        "--preset",
        "tiny",
        "--data-root",
        str(tmp_path / "nope"),
        "--tracking-uri",
        f"http://127.0.0.1:{port}",
    )
    _assert_one_line_error(result, f"tracking server 'http://127.0.0.1:{port}' cannot be reached")


def test_unwritable_sqlite_location(tmp_path):
    result = bench(
        "run",
        "--method",
        "template",
        "--preset",
        "tiny",
        "--tracking-uri",
        f"sqlite:///{tmp_path}/missing/mlflow.db",
    )
    _assert_one_line_error(result, "does not exist")


def test_resume_unknown_run(tmp_path, monkeypatch):
    monkeypatch.setenv("TALKBENCH_HOME", str(tmp_path))
    _assert_one_line_error(bench("run", "--resume", "0123abcd"), "no run directory")
    _assert_one_line_error(bench("run", "--resume", "last"), "no run directory")


@pytest.mark.slow
def test_cli_entry_point_one_line_error_in_a_process(tmp_path):
    """The installed entry point (not CliRunner): exit 2, one line on stderr, no traceback."""
    proc = subprocess.run(
        [*BENCH, "run", "--method", "nope", "--tracking-uri", f"sqlite:///{tmp_path}/m.db"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().startswith("error: unknown method 'nope'")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "m.db").exists()  # refused before any store is touched


# -- real processes (slow) -----------------------------------------------------------------------
@pytest.mark.slow
def test_two_parallel_runs_land_completely(store_uri, synthtalk_tiny):
    tracking.Tracker(store_uri).ensure_experiment("synthtalk")  # DB and experiment before spawning
    procs = [
        subprocess.Popen(
            [
                *BENCH,
                "run",
                "--method",
                "mean-motion",
                "--preset",
                "tiny",
                "--seed",
                str(seed),
                "--data-root",
                str(synthtalk_tiny),
                "--tracking-uri",
                store_uri,
                "--no-progress",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (0, 1)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert "database is locked" not in err
    runs = tracking.Tracker(store_uri).search_runs("synthtalk", finished_only=False)
    assert sorted(runs["tags.talkbench.seed"]) == ["0", "1"]
    assert (runs["status"] == "FINISHED").all()
    assert runs["metrics.test/lve"].notna().all() and runs["metrics.speed/realtime_factor"].notna().all()
    tr = tracking.Tracker(store_uri)
    for rid in runs["run_id"]:
        assert "eval/per_sequence.csv" in tr.list_artifacts(rid, "eval")
    (row,) = _leaderboard_rows(store_uri)  # same config, two seeds: one row
    assert row["n_seeds"] == "2"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_mlflow_server_lists_the_run_over_http(store_uri, tmp_path):
    # exactly the documented command: no data root, SynthTalk tiny generated into the cache
    out = bench("run", "--method", "template", "--preset", "tiny", "--tracking-uri", store_uri)
    assert out.exit_code == 0, out.output
    (run_id,) = tracking.Tracker(store_uri).search_runs("synthtalk")["run_id"]
    port = _free_port()
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    server = subprocess.Popen(
        [
            str(mlflow_bin),
            "server",
            "--backend-store-uri",
            store_uri,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--artifacts-destination",
            str(tmp_path / "mlartifacts"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, server.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "mlflow server did not come up within 120 s"
            time.sleep(0.5)
        with urllib.request.urlopen(
            base + "/api/2.0/mlflow/experiments/get-by-name?experiment_name=synthtalk", timeout=10
        ) as r:
            exp_id = json.load(r)["experiment"]["experiment_id"]
        body = json.dumps({"experiment_ids": [exp_id], "max_results": 10}).encode()
        req = urllib.request.Request(
            base + "/api/2.0/mlflow/runs/search", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            runs = json.load(r)["runs"]
        assert [r["info"]["run_id"] for r in runs] == [run_id]
        tags = {t["key"]: t["value"] for t in runs[0]["data"]["tags"]}
        assert tags["talkbench.method"] == "template"
        # and talkbench itself can use the server as its tracking URI
        rows = _leaderboard_rows(base)
        assert [r["method"] for r in rows] == ["template"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=20)


@pytest.mark.slow
def test_sigkill_then_resume_continues_the_same_mlflow_run(store_uri, synthtalk_tiny):
    """A `bench run` killed mid-training and resumed with --resume ends in the same MLflow run with
    the same test metrics as an uninterrupted run of the same config (CPU)."""
    args = [
        "run",
        "--method",
        "memorytalker",
        "--preset",
        "tiny",
        "--data-root",
        str(synthtalk_tiny),
        "--tracking-uri",
        store_uri,
        "--device",
        "cpu",
        "--no-progress",
        "--set",
        "train.checkpoint_every=1",
        "--set",
        "memorytalker.memorizing_epochs=4",
    ]
    ok = subprocess.run([*BENCH, *args], capture_output=True, text=True, timeout=600)
    assert ok.returncode == 0, ok.stderr
    tr = tracking.Tracker(store_uri)
    (reference,) = tr.search_runs("synthtalk")["run_id"]

    proc = subprocess.Popen([*BENCH, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    killed_id = None
    while killed_id is None:
        assert proc.poll() is None, "the run finished before it could be killed"
        assert time.monotonic() < deadline
        for rec in paths.runs_root().glob("*/checkpoints/last.pt"):
            if rec.parent.parent.name != reference:
                killed_id = rec.parent.parent.name
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert tr.get_run(killed_id).info.status == "RUNNING"  # SIGKILL: nobody closed it

    resumed = subprocess.run(
        [*BENCH, "run", "--resume", killed_id, "--no-progress"], capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr
    runs = tr.search_runs("synthtalk", finished_only=False)
    assert sorted(runs["run_id"]) == sorted([reference, killed_id])
    assert (runs["status"] == "FINISHED").all()
    ref, res = tr.get_run(reference), tr.get_run(killed_id)
    assert res.data.tags["talkbench.resumed"] == "true"
    assert ref.data.params == res.data.params
    for key in ("test/lve", "test/mve", "test/fdd"):
        assert res.data.metrics[key] == ref.data.metrics[key], key
