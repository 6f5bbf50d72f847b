"""`bench run` of a method that samples (issue 26): N samples per clip and condition seeded from
(run seed, clip, condition, k), MEE / CE / Diversity logged with CIs, the seeds stored with the
predictions and a sample replaying bit for bit from its stored seed; deterministic runs: N = 1."""

from __future__ import annotations

import csv
import io

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from talkbench import contract, pipeline
from talkbench.config import load_config
from talkbench.contract import Tag
from talkbench.methods.base import sample_seeds


@pytest.fixture(scope="module")
def facediffuser_run(synthtalk_tiny):
    cfg = load_config("facediffuser", preset="tiny", data_root=synthtalk_tiny,
                      overrides=["facediffuser.epochs=1", "eval.samples=3"])
    result = pipeline.run(cfg, progress=False)
    return cfg, result, mlflow.MlflowClient(result.tracking_uri)


def _artifact(client, run_id: str, path: str, tmp_path) -> str:
    return client.download_artifacts(run_id, path, str(tmp_path))


def test_sampling_run_logs_the_stochastic_metrics_with_cis(facediffuser_run):
    _, result, client = facediffuser_run
    run = client.get_run(result.run_id)
    m = run.data.metrics
    for name in ("mee", "ce_n3", "diversity", "lve"):
        assert np.isfinite(m[f"test/{name}"]), name
        assert m[f"test/{name}_ci_low"] <= m[f"test/{name}"] <= m[f"test/{name}_ci_high"], name
    assert "test/diversity_pt3d" not in m  # odd N: ProbTalk3D's halves cannot pair 3 samples
    assert "test/ce_n10" not in m
    assert m["test/ce_n3"] <= m["test/lve"] + 1e-12  # sample 0 is a candidate of best-of-N
    assert m["test/diversity"] > 0
    assert run.data.tags[Tag.SAMPLES] == "3"
    assert run.data.tags[Tag.metric_version("ce_n3")] == "1"


def test_seeds_are_stored_and_a_sample_replays_bit_identically(facediffuser_run, tmp_path):
    cfg, result, client = facediffuser_run
    seeds = pd.read_csv(_artifact(client, result.run_id, contract.SAMPLE_SEEDS_ARTIFACT, tmp_path))
    assert list(seeds.columns) == list(contract.SAMPLE_SEED_COLUMNS)
    first = seeds.iloc[0]
    cond = None if pd.isna(first["condition"]) else first["condition"]
    rows = seeds[(seeds["clip"] == first["clip"]) & (seeds["condition"].fillna("") == (cond or ""))]
    assert tuple(rows.sort_values("sample")["seed"]) == sample_seeds(cfg.seed, first["clip"], cond, 3)
    name = contract.prediction_file(first["clip"], cond)
    saved = np.load(_artifact(client, result.run_id, f"{contract.SAMPLE_PREDICTIONS_DIR}/{name}", tmp_path))
    sample0 = np.load(_artifact(client, result.run_id, f"{contract.PREDICTIONS_DIR}/{name}", tmp_path))
    assert saved.shape[0] == 3 and np.array_equal(saved[0], sample0)

    from talkbench import load_model

    model = load_model(result.run_id, result.tracking_uri)
    method, spec = model.method, model.bundle.spec
    clip = next(c for c in cfg.dataset.load().split(cfg.eval.split_for(spec)) if c.name == first["clip"])
    cond_index = None if cond is None else spec.train_subjects.index(cond)
    audio = torch.tensor(np.asarray(clip.audio, np.float32))
    template = torch.tensor(np.asarray(clip.template, np.float32))
    stored = [int(s) for s in rows.sort_values("sample")["seed"]]
    again = method.predict_samples(audio, template, cond_index, stored)
    assert np.array_equal(again.reshape(3, len(again[0]), -1).numpy(), saved)  # the same draw: bit for bit
    # sample 2 alone from its stored seed: the same animation (batch_samples rounds per batch size;
    # facediffuser.batch_samples=false makes it bit-identical, tests/test_facediffuser.py)
    alone = method.predict_samples(audio, template, cond_index, stored[2:])
    np.testing.assert_allclose(alone[0].reshape(len(alone[0]), -1).numpy(), saved[2], rtol=1e-5, atol=1e-6)


def test_lip_spread_is_logged_per_frame(facediffuser_run, tmp_path):
    _, result, client = facediffuser_run
    spread = pd.read_csv(_artifact(client, result.run_id, contract.SAMPLE_SPREAD_ARTIFACT, tmp_path))
    assert set(spread.columns) == {"clip", "condition", "frame", "spread"}
    assert (spread["spread"] >= 0).all() and spread["spread"].max() > 0
    per_seq = pd.read_csv(_artifact(client, result.run_id, contract.PER_SEQUENCE_ARTIFACT, tmp_path))
    assert (per_seq["n_samples"] == 3).all()


def test_a_deterministic_method_is_predicted_once_and_logs_n_1(synthtalk_tiny, monkeypatch):
    """eval.samples does not make a deterministic method run N times; it logs what it always did,
    plus talkbench.samples = 1."""
    from talkbench.methods.reference import MeanMotionMethod

    calls = []
    monkeypatch.setattr(MeanMotionMethod, "predict_samples", lambda *a: calls.append(a))
    cfg = load_config("mean-motion", data_root=synthtalk_tiny, overrides=["eval.samples=10"])
    result = pipeline.run(cfg, progress=False)
    run = mlflow.MlflowClient(result.tracking_uri).get_run(result.run_id)
    assert not calls
    assert run.data.tags[Tag.SAMPLES] == "1"
    assert not any(k.startswith(("test/mee", "test/ce_", "test/diversity")) for k in run.data.metrics)
    assert "test/lve" in run.data.metrics


def test_report_shows_the_stochastic_columns_and_the_spread_plot(facediffuser_run, tmp_path):
    from talkbench.reports.report import build_report

    _, result, _ = facediffuser_run
    rep = build_report("synthtalk", [result.run_id], tmp_path / "r", formats=("markdown",),
                       tracking_uri=result.tracking_uri, n_clips=0, log_to_runs=False, viewer=False)
    text = rep.markdown.read_text()
    assert "MEE ↓ (×10⁻⁵)" in text and "CE@3 ↓ (×10⁻⁵)" in text and "Diversity ↑ (×10⁻³)" in text
    assert "## Samples" in text and "| facediffuser | 3 |" in text
    assert (rep.out_dir / "figures" / "sample_spread.png").stat().st_size > 1000


def test_animate_writes_n_samples_with_their_seeds(facediffuser_run, tmp_path):
    import soundfile as sf
    from typer.testing import CliRunner

    from talkbench.cli import app

    cfg, result, _ = facediffuser_run
    clip = next(iter(cfg.dataset.load().split("test")))
    wav = tmp_path / "speech.wav"
    sf.write(wav, np.asarray(clip.audio, np.float32), 16000)
    out = CliRunner().invoke(app, [
        "animate", "--tracking-uri", result.tracking_uri, "--model", result.run_id, "--audio", str(wav),
        "--out", str(tmp_path / "out"), "--no-render", "--samples", "3", "--seed", "7",
    ])  # fmt: skip
    assert out.exit_code == 0, out.output
    table = pd.read_csv(tmp_path / "out" / "speech.seeds.csv")
    assert list(table.columns) == ["condition", "sample", "seed", "file"] and len(table) == 3
    cond = table["condition"].iloc[0]
    assert tuple(table["seed"]) == sample_seeds(7, "speech", cond, 3)
    arrays = [np.load(tmp_path / "out" / f) for f in table["file"]]
    assert arrays[0].shape[1:] == np.asarray(clip.template).shape
    assert not np.array_equal(arrays[0], arrays[1])
    assert "sample 2" in out.stdout and "the seed of every sample" in out.stdout


def test_codetalker_nd_runs_as_its_own_sampling_row(synthtalk_tiny):
    cfg = load_config("codetalker-nd", preset="tiny", data_root=synthtalk_tiny, overrides=["eval.samples=2"])
    result = pipeline.run(cfg, progress=False)
    run = mlflow.MlflowClient(result.tracking_uri).get_run(result.run_id)
    m = run.data.metrics
    for name in ("mee", "ce_n2", "diversity", "diversity_pt3d"):  # even N: ProbTalk3D's pairing too
        assert np.isfinite(m[f"test/{name}"]), name
    assert m["test/diversity"] > 0 and m["test/ce_n2"] <= m["test/lve"] + 1e-12
    assert run.data.tags[Tag.METHOD] == "codetalker-nd" and run.data.tags[Tag.SAMPLES] == "2"


def test_render_shows_a_grid_of_the_samples_with_their_seeds(facediffuser_run, tmp_path):
    import av
    from typer.testing import CliRunner

    from talkbench.cli import app
    from talkbench.runs import TrackedRun

    _, result, _ = facediffuser_run
    run = TrackedRun.open(result.run_id, result.tracking_uri)
    clip = run.test_clips.refs[0].name
    drawn, seeds = run.samples(clip)
    assert drawn.shape[0] == 3 and len(seeds) == 3
    out = CliRunner().invoke(app, [
        "render", "--tracking-uri", result.tracking_uri, "--run", result.run_id, "--clip", clip,
        "--samples", "3", "--columns", "2", "--size", "64", "--out", str(tmp_path / "grid.mp4"),
    ])  # fmt: skip
    assert out.exit_code == 0, out.output
    assert all(f"sample {k}: seed {s}" in out.stdout for k, s in enumerate(seeds))
    with av.open(str(tmp_path / "grid.mp4")) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (128, 128)  # ground truth + 3 samples, 2 per row


def test_study_shows_a_seeded_sample_per_clip_and_records_it(facediffuser_run, synthtalk_tiny, tmp_path):
    import json

    from talkbench.runs import TrackedRun
    from talkbench.study.make import make_study_from_runs

    _, result, _ = facediffuser_run
    other = pipeline.run(load_config("template", preset="tiny", data_root=synthtalk_tiny), progress=False)
    out = make_study_from_runs([result.run_id, other.run_id], tmp_path / "study", n_clips=3, seed=1,
                               criteria=("lipsync",), size=32, tracking_uri=result.tracking_uri, samples=3)
    trials = [t for t in json.loads((out / "manifest.json").read_text())["trials"] if not t["catch"]]
    run = TrackedRun.open(result.run_id, result.tracking_uri)
    shown = [t.get("left_sample") or t.get("right_sample") for t in trials]
    assert all(s is not None for s in shown)
    for t, s in zip(trials, shown):
        assert s["seed"] == run.samples(t["clip"])[1][s["sample"]]
    assert len({s["sample"] for s in shown}) > 1 or len(shown) == 1


def _bench(*args: str):
    from typer.testing import CliRunner

    from talkbench.cli import app

    return CliRunner().invoke(app, list(args))


def test_bench_eval_re_predicts_a_run_with_another_sampler_and_seed_set(facediffuser_run, tmp_path):
    """`bench eval --run R --set ...`: the run's logged model, no retraining, another sampler and seed
    set, scored and logged as its own eval run; with no overrides it reproduces the run's scores."""
    cfg, result, client = facediffuser_run
    parent = client.get_run(result.run_id)
    assert parent.data.tags[Tag.SAMPLER] == "ancestral-10" and parent.data.tags[Tag.SAMPLE_SEED] == "0"
    uri = ["--tracking-uri", result.tracking_uri, "--set", "eval.speed_clip_s=0"]
    out = _bench("eval", "--run", result.run_id, "--set", "facediffuser.sampler=ddim-5",
                 "--set", "eval.sample_seed=1", *uri)
    assert out.exit_code == 0, out.output
    run = client.get_run(out.stdout.split()[1])
    tags, m = run.data.tags, run.data.metrics
    assert tags[Tag.KIND] == contract.Kind.EVAL and tags[Tag.EVAL_OF] == result.run_id
    assert tags[Tag.PARENT_RUN_ID] == result.run_id
    assert tags[Tag.SAMPLER] == "ddim-5-eta0" and tags[Tag.SAMPLE_SEED] == "1" and tags[Tag.SAMPLES] == "3"
    assert tags[Tag.SEED] == str(cfg.seed) and tags[Tag.CONFIG_HASH] != parent.data.tags[Tag.CONFIG_HASH]
    for name in ("lve", "mee", "ce_n3", "diversity"):
        assert np.isfinite(m[f"test/{name}"]), name
    assert m["test/lve"] != parent.data.metrics["test/lve"]  # another sampler, other animations
    seeds = pd.read_csv(_artifact(client, run.info.run_id, contract.SAMPLE_SEEDS_ARTIFACT, tmp_path))
    first = seeds.iloc[0]
    cond = None if pd.isna(first["condition"]) else first["condition"]
    rows = seeds[(seeds["clip"] == first["clip"]) & (seeds["condition"].fillna("") == (cond or ""))]
    assert tuple(rows.sort_values("sample")["seed"]) == sample_seeds(1, first["clip"], cond, 3)
    board = _bench("leaderboard", "--dataset", cfg.dataset.experiment, "--format", "csv", *uri[:2])
    assert board.exit_code == 0, board.output
    row = next(r for r in csv.DictReader(io.StringIO(board.stdout)) if run.info.run_id in r["run_ids"])
    assert result.run_id not in row["run_ids"]  # its own row, not a seed of the trained run's

    same = _bench("eval", "--run", result.run_id, *uri)  # the run's own sampler and seeds: its scores
    assert same.exit_code == 0, same.output
    again = client.get_run(same.stdout.split()[1]).data.metrics
    for name in ("lve", "mee", "ce_n3", "diversity", "fdd"):
        assert again[f"test/{name}"] == parent.data.metrics[f"test/{name}"], name


def test_bench_eval_re_predicting_refuses_what_would_misdescribe_the_model(facediffuser_run):
    _, result, _ = facediffuser_run
    uri = ["--tracking-uri", result.tracking_uri]
    for setting, needle in (("facediffuser.latent_dim=8", "no longer fits"), ("seed=3", "keeps its seed")):
        out = _bench("eval", "--run", result.run_id, "--set", setting, *uri)
        assert out.exit_code == 2 and needle in out.stderr and "\n" not in out.stderr.strip(), out.output
    out = _bench("eval", "--pred", ".", "--run", result.run_id, "--set", "eval.sample_seed=1", *uri)
    assert out.exit_code == 2 and "leave --pred out" in out.stderr, out.output
