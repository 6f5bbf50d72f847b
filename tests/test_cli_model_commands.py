"""`bench run`, `bench eval` and `bench animate` as a user runs them (subprocesses, their real stderr):
no MLflow warning in their output; `bench eval --run` scores against the run's own dataset and split;
without --run, unknown clip names say what they were checked against and how to pick another."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _shared import DATA

from talkbench import contract
from talkbench.contract import PREDICTIONS_DIR

DEMO = Path(str(DATA / "speech/faceformer_demo.wav"))
# MLflow's own warnings: its logger's lines, its warnings module categories, the predict type-hint advice
MLFLOW_WARNING = re.compile(r"WARNING mlflow|mlflow\S*: \w*Warning|type hint", re.IGNORECASE)


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "talkbench.cli", *args], capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def run(synthtalk_tiny, tmp_path_factory):
    """A mean-motion run on SynthTalk tiny: (store URI, run id, its stderr)."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('model_commands')}/mlflow.db"
    out = bench(
        "run", "--method", "mean-motion", "--preset", "tiny", "--data-root", str(synthtalk_tiny),
        "--tracking-uri", uri, "--no-progress", "--no-leaderboard",
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    run_id = next(line.split()[1] for line in out.stdout.splitlines() if line.startswith("run "))
    return uri, run_id, out.stderr


@pytest.fixture(scope="module")
def predictions(run, tmp_path_factory) -> Path:
    """The run's saved predictions, downloaded: the folder a user hands to `bench eval`."""
    from talkbench.tracking import Tracker

    uri, run_id, _ = run
    return Path(Tracker(uri).download_artifacts(run_id, PREDICTIONS_DIR, tmp_path_factory.mktemp("pred")))


def test_no_mlflow_warning_in_run_eval_and_animate(run, predictions, tmp_path):
    uri, run_id, run_stderr = run
    animated = bench(
        "animate", "--model", run_id, "--audio", str(DEMO), "--out", str(tmp_path / "anim"),
        "--no-render", "--tracking-uri", uri,
    )  # fmt: skip
    assert animated.returncode == 0, animated.stderr
    assert list((tmp_path / "anim").glob("*.npy"))
    scored = bench(
        "eval", "--run", run_id, "--pred", str(predictions), "--n-boot", "0", "--tracking-uri", uri
    )
    assert scored.returncode == 0, scored.stderr
    for command, stderr in (("run", run_stderr), ("animate", animated.stderr), ("eval", scored.stderr)):
        assert not MLFLOW_WARNING.search(stderr), f"bench {command}:\n{stderr}"


def test_eval_of_a_run_scores_against_its_dataset_and_split(run, predictions):
    from talkbench.tracking import Tracker

    uri, run_id, _ = run
    out = bench("eval", "--run", run_id, "--pred", str(predictions), "--n-boot", "0", "--tracking-uri", uri)
    assert out.returncode == 0, out.stderr
    assert "synthtalk/test:" in out.stdout and "have no prediction" not in out.stderr
    logged = Tracker(uri).get_run(run_id).data.metrics
    for name in ("lve", "mve", "fdd"):  # the run's own scores, recomputed from its files
        row = next(line for line in out.stdout.splitlines() if line.strip("│ ").startswith(name + " "))
        cells = [c.strip() for c in row.strip("│").split("│")]  # metric, value, CI, x scale, ...
        shown = float(cells[1]) * float(cells[3])
        assert shown == pytest.approx(logged[contract.test_metric(name)], rel=1e-3), row
    wrong = bench(
        "eval", "--run", run_id, "--dataset", "biwi", "--pred", str(predictions), "--tracking-uri", uri
    )
    assert wrong.returncode != 0 and "was evaluated on synthtalk" in wrong.stderr


def test_unknown_clip_names_say_what_was_checked_and_how_to_pick_another(
    synthtalk_tiny, predictions, tmp_path
):
    pred = tmp_path / "pred"
    shutil.copytree(predictions, pred)
    first = sorted(pred.glob("*.npy"))[0]
    np.save(pred / "SynthTalk_S99_sentence01.npy", np.load(first))
    out = bench("eval", "--dataset", "synthtalk", "--data-root", str(synthtalk_tiny), "--pred", str(pred))
    assert out.returncode != 0
    assert "unknown clip name 'SynthTalk_S99_sentence01'" in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert f"split 'test' of synthtalk at {synthtalk_tiny}" in last, last
    for hint in ("--run RUN_ID", "--data-root", "--dataset", "--split"):
        assert hint in last
    neither = bench("eval", "--pred", str(pred))
    assert neither.returncode != 0 and "--dataset NAME" in neither.stderr and "--run RUN_ID" in neither.stderr
