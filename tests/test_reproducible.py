"""Reproducible runs (issue 14 point 5): a seed and a thread count fix a run's metrics; the thread count
and the pretrained encoder a run used are recorded as tags."""

from __future__ import annotations

import os
import subprocess
import sys

import mlflow
import pytest
import torch

from talkbench import contract, pipeline
from talkbench.config import load_config
from talkbench.contract import Tag
from talkbench.speech_pretrain import cache
from talkbench.speech_pretrain import config as pretrain_config
from talkbench.speech_pretrain.config import preset_config

METHODS = ("faceformer", "codetalker", "memorytalker")


def _test_metrics(run) -> dict[str, float]:
    return {k: v for k, v in run.data.metrics.items() if k.startswith("test/")}


def test_first_synthtalk_run_makes_the_encoder_and_tags_its_key_and_run(synthtalk_tiny, monkeypatch):
    # the tiny pretraining stands in for the default one (50 s) as "the default encoder"
    tiny = preset_config("tiny")
    monkeypatch.setattr(cache, "PretrainConfig", lambda: tiny)
    monkeypatch.setattr(pretrain_config, "PretrainConfig", lambda: tiny)
    arch = tiny.arch
    sets = [f"faceformer.audio.{k}={getattr(arch, k)}" for k in ("n_mels", "conv_dim", "d_model", "n_layers",
                                                                  "n_heads")]
    cfg = load_config("faceformer", preset="tiny", data_root=synthtalk_tiny,
                      overrides=["faceformer.audio.kind=synthtalk", "faceformer.epochs=1", *sets])
    assert cache.cached(tiny) is None  # nothing to load: the pipeline must make it
    first = pipeline.run(cfg, progress=False)
    made = cache.cached(tiny)
    assert made is not None
    client = mlflow.MlflowClient(first.tracking_uri)
    tags = client.get_run(first.run_id).data.tags
    assert tags[Tag.ENCODER_KEY] == made.meta["key"] == tiny.cache_key()
    assert tags[Tag.ENCODER_RUN_ID] == made.meta["run_id"]
    encoder_run = client.get_run(made.meta["run_id"])
    assert encoder_run.info.status == "FINISHED"
    assert encoder_run.data.tags[Tag.ENCODER_KEY] == made.meta["key"]
    assert tags[Tag.THREADS] == str(torch.get_num_threads())
    # a second run loads the cached encoder: same provenance, no second pretraining run
    second = pipeline.run(cfg, progress=False)
    assert client.get_run(second.run_id).data.tags[Tag.ENCODER_RUN_ID] == made.meta["run_id"]
    # CodeTalker keeps its audio settings as a mapping: the same encoder, the same tags
    ct = load_config("codetalker", preset="tiny", data_root=synthtalk_tiny,
                     overrides=["codetalker.audio.kind=synthtalk"])
    assert pipeline.ensure_encoder(ct, None) == {Tag.ENCODER_KEY: made.meta["key"],
                                                 Tag.ENCODER_RUN_ID: made.meta["run_id"]}
    floor = load_config("template", preset="tiny", data_root=synthtalk_tiny)
    assert pipeline.ensure_encoder(floor, None) == {}
    experiment = client.get_experiment_by_name(cache.EXPERIMENT)
    assert len(client.search_runs([experiment.experiment_id])) == 1


def test_runs_without_a_pretrained_encoder_carry_no_encoder_tags(synthtalk_tiny):
    cfg = load_config("template", preset="tiny", data_root=synthtalk_tiny)
    result = pipeline.run(cfg, progress=False)
    tags = mlflow.MlflowClient(result.tracking_uri).get_run(result.run_id).data.tags
    assert Tag.ENCODER_KEY not in tags and Tag.ENCODER_RUN_ID not in tags
    assert int(tags[Tag.THREADS]) >= 1


def _bench_run(method: str, root, threads: int, seed: int) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run(
        [sys.executable, "-m", "talkbench.cli", "run", "--method", method, "--preset", "tiny",
         "--data-root", str(root), "--seed", str(seed), "--no-progress", "--no-leaderboard"],
        env=env, capture_output=True, text=True, timeout=900,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    line = next(w for w in out.stdout.split("\n") if w.startswith("run "))
    return line.split()[1]


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_same_seed_and_thread_count_give_identical_metrics_in_fresh_processes(method, synthtalk_tiny):
    client = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    runs = [client.get_run(_bench_run(method, synthtalk_tiny, threads=1, seed=5)) for _ in range(2)]
    a, b = (_test_metrics(r) for r in runs)
    assert a and a.keys() == b.keys()
    assert a == b  # bit-identical, not close: nothing in a run may depend on the process
    assert all(r.data.tags[Tag.THREADS] == "1" for r in runs)
    assert contract.test_metric("lve") in a
