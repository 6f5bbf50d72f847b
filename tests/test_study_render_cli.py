"""`bench render` and `bench study make/export/analyze` on runs in a real tracking store."""

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from talkbench.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    from talkbench import pipeline
    from talkbench.config import load_config

    uri = f"sqlite:///{tmp_path_factory.mktemp('study_store')}/mlflow.db"
    ids = [
        pipeline.run(load_config(m, preset="tiny"), tracking_uri=uri, progress=False).run_id
        for m in ("template", "mean-motion")
    ]
    return uri, ids


def _ok(args):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def _fails(args, message):
    """Bad input: exit code 2 and one `error:` line naming the problem, no traceback."""
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_render_runs_side_by_side_with_ground_truth(two_runs, tmp_path):
    from talkbench.render import read_mp4
    from talkbench.runs import TrackedRun

    uri, ids = two_runs
    clip = TrackedRun.open(ids[0], uri).dataset.split("test").refs[0].name
    out = tmp_path / "sbs.mp4"
    _ok(
        [
            "render",
            "--run",
            ids[0],
            "--run",
            ids[1],
            "--clip",
            clip,
            "--out",
            str(out),
            "--size",
            "64",
            "--tracking-uri",
            uri,
        ]
    )
    frames, audio, _, _ = read_mp4(out)
    assert frames.shape[1:] == (64, 192, 3)  # ground truth + two methods
    assert len(audio) > 0
    _fails(["render", "--run", ids[0], "--clip", "nope", "--tracking-uri", uri], "not a test clip")
    _fails(["render", "--run", "f" * 32, "--clip", clip, "--tracking-uri", uri], "does not exist")


def test_study_from_runs_then_export_and_analyze_to_mlflow(two_runs, tmp_path):
    from talkbench.study.store import AnswerStore
    from talkbench.tracking import Tracker

    uri, ids = two_runs
    study = tmp_path / "study"
    _ok(
        [
            "study",
            "make",
            "--runs",
            ids[0],
            "--runs",
            ids[1],
            "--out",
            str(study),
            "--clips",
            "2",
            "--size",
            "64",
            "--seed",
            "3",
            "--tracking-uri",
            uri,
        ]
    )
    manifest = json.loads((study / "manifest.json").read_text())
    assert manifest["methods"] == ["mean-motion", "template"]
    assert manifest["runs"] == {"template": ids[0], "mean-motion": ids[1]}
    store = AnswerStore(study / "answers.db")
    for rater in ("r1", "r2"):
        for t in manifest["trials"]:
            for c in t["criteria"]:
                choice = t["expected"] if t["catch"] else ("left" if t["left"] == "mean-motion" else "right")
                if rater == "r2" and t["catch"]:
                    choice = "left" if choice == "right" else "right"  # r2 fails the catch trials
                store.add(rater, t["id"], c, choice)
    _ok(["study", "export", str(study)])
    assert (study / "answers.csv").read_text().count("\n") > 4
    out = _ok(["study", "analyze", str(study), "--tracking-uri", uri])
    assert "1 excluded by catch trials: r2" in out
    runs = Tracker(uri).search_runs("user-study")
    assert len(runs) == 1
    pref = runs.iloc[0]["metrics.pref/mean-motion_vs_template/lipsync"]
    assert pref == 1.0  # r1 always preferred mean-motion; r2 was excluded
    assert (study / "analysis" / "preferences.png").stat().st_size > 1000
    # each metric's per-clip advantage against the preference (2 clips: too few items for a rho)
    assert "Spearman rho" in out
    agreement = pd.read_csv(study / "analysis" / "metric_agreement.csv")
    assert set(agreement["metric"]) >= {"lve", "lve_dtw", "mve"} and (agreement["n_items"] == 2).all()


def test_study_needs_two_runs_and_a_served_folder(two_runs, tmp_path):
    uri, ids = two_runs
    _fails(
        ["study", "make", "--runs", ids[0], "--out", str(tmp_path / "s"), "--tracking-uri", uri],
        "at least two",
    )
    _fails(["study", "analyze", str(tmp_path)], "no answers.db")
    _fails(["study", "analyze", str(tmp_path / "missing.csv")], "not a study folder")


def test_bench_run_logs_rendered_samples(tmp_path):
    from talkbench import pipeline
    from talkbench.config import load_config
    from talkbench.render import read_mp4
    from talkbench.tracking import Tracker

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = load_config("template", preset="tiny", overrides=["eval.render_clips=1"])
    run_id = pipeline.run(cfg, tracking_uri=uri, progress=False).run_id
    tracker = Tracker(uri)
    names = tracker.list_artifacts(run_id, "renders")
    assert len(names) == 1 and names[0].endswith(".mp4")
    frames, audio, _, _ = read_mp4(tracker.download_artifacts(run_id, names[0]))
    assert frames.shape[2] == 2 * frames.shape[1]  # ground truth | prediction
    assert len(audio) > 0


def test_rating_study_from_runs_then_analyze_and_log(two_runs, tmp_path):
    """`bench study make --scale mos` on logged runs, answers through the store, `analyze --log`."""
    from talkbench.study.store import AnswerStore
    from talkbench.tracking import Tracker

    uri, ids = two_runs
    study = tmp_path / "mos"
    args = ["study", "make", "--runs", ids[0], "--runs", ids[1], "--out", str(study), "--clips", "2"]
    args += ["--size", "48", "--scale", "mos", "--repeats", "1", "--tracking-uri", uri]
    _ok(args)
    manifest = json.loads((study / "manifest.json").read_text())
    assert manifest["design"] == "rating" and manifest["criteria"] == ["lipsync", "naturalness"]
    assert manifest["runs"] == {"template": ids[0], "mean-motion": ids[1]}
    # 3 faces (two methods and the ground truth) on 2 clips, one repeat, one instructed response
    assert len(manifest["trials"]) == 8
    score = {"ground-truth": "5", "mean-motion": "4", "template": "1"}
    store = AnswerStore(study / "answers.db")
    for rater in ("r1", "r2"):
        for t in manifest["trials"]:
            for c in t["criteria"]:
                if t["check"] == "instructed":
                    wrong = "1" if t["expected"] != "1" else "2"
                    choice = t["expected"] if rater == "r1" else wrong  # r2 fails the check
                else:
                    choice = score[t["method"]]
                store.add(rater, t["id"], c, choice)
    out = _ok(["study", "analyze", str(study), "--log", "--tracking-uri", uri])
    assert "1 excluded by attention checks: r2 (instructed response)" in out
    mos = pd.read_csv(study / "analysis" / "mos.csv").set_index(["method", "criterion"])
    assert mos.loc[("mean-motion", "lipsync"), "mos"] == 4.0
    assert mos.loc[("template", "naturalness"), "mos"] == 1.0
    assert (study / "analysis" / "mos.png").stat().st_size > 1000
    assert "Spearman rho" in out and "rating" in out
    logged = Tracker(uri).search_runs("user-study")
    assert logged["metrics.mos/mean-motion/lipsync"].dropna().tolist() == [4.0]
    bad = [a if a != str(study) else str(tmp_path / "bad") for a in args[:-4]]
    _fails(bad + ["--scale", "stars", "--tracking-uri", uri], "--scale stars")
