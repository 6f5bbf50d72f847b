"""A run started by talkbench 0.1.0 (its saved config and checkpoint) resumes with today's code."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import _mlflow_store
import pytest

from talkbench import checkpoint as ckpt
from talkbench import contract, paths, pipeline, tracking
from talkbench.config import RunConfig
from talkbench.errors import ConfigError

_migrated_db = _mlflow_store._migrated_db
store_uri = _mlflow_store.store_uri

OLD = Path(__file__).parent / "fixtures" / "configs_0_1_0"
NAME = "faceformer-tiny"


def _as_0_1_0_checkpoint(path: Path, fingerprint: str, config_hash: str) -> None:
    """Rewrite a checkpoint in the layout the 0.1.0 engine wrote (format 1: one plain dict)."""
    state = asdict(ckpt.load(path))
    payload = {k: state[k] for k in ("method", "stage_index", "epoch", "global_epoch", "model")}
    payload.update(
        format=ckpt.FORMAT,
        version=1,
        config_hash=config_hash,
        fingerprint=fingerprint,
        sampler_epoch=state["epoch"],
        rng=state["rng_per_rank"][0],
        **{k: state[k] for k in ("rng_per_rank", "optimizer", "scheduler", "best", "history")},
        **{k: state[k] for k in ("stage_seconds", "best_epochs", "selection")},
    )
    path.unlink()  # last.pt may be a hard link of the stage's checkpoint: leave that one alone
    ckpt.atomic_save(payload, path)


def _test_metrics(result) -> dict[str, float]:
    prefix = contract.test_metric("")
    return {k: v for k, v in result.metrics.items() if k.startswith(prefix)}


@pytest.mark.slow
def test_a_0_1_0_run_resumes_from_its_config_and_checkpoint(store_uri):
    old_text = (OLD / f"{NAME}.yaml").read_text()
    fingerprint = json.loads((OLD / "fingerprints.json").read_text())["fingerprint"][NAME]
    old_hash = json.loads((OLD / "hashes.json").read_text())["config_hash"][NAME]
    first = pipeline.run(RunConfig.load(OLD / f"{NAME}.yaml"), tracking_uri=store_uri, progress=False)
    run_id, rdir = first.run_id, first.run_dir
    # make it the 0.1.0 run killed after training: its config file, checkpoint and unfinished state
    (rdir / paths.RUN_CONFIG).write_text(old_text)
    last = ckpt.last_checkpoint(rdir / contract.CHECKPOINTS_DIR)
    _as_0_1_0_checkpoint(last, fingerprint, old_hash)
    assert ckpt.load(last).fingerprint == fingerprint
    tracking.Tracker(store_uri).finish_run(run_id, "KILLED")

    rid, cfg, uri = pipeline.resume_target(run_id)
    assert rid == run_id and cfg.legacy_hashes == {"config_hash": old_hash, "fingerprint": fingerprint}
    again = pipeline.run(cfg, tracking_uri=uri, resume=run_id, progress=False)
    assert again.run_id == run_id
    assert _test_metrics(again) == _test_metrics(first) and _test_metrics(first)  # the same weights
    runs = tracking.Tracker(store_uri).search_runs("synthtalk", finished_only=False)
    assert runs["run_id"].tolist() == [run_id] and runs.loc[0, "status"] == "FINISHED"

    # a checkpoint of other training settings is still refused
    _as_0_1_0_checkpoint(last, "0123456789abcdef", old_hash)
    with pytest.raises(ConfigError, match="other training settings"):
        pipeline.run(cfg, tracking_uri=uri, resume=run_id, progress=False)
