"""An official checkpoint as a talkbench run: weights converted, MLflow model logged, test split scored.

``bench import`` calls :func:`import_official`. The run is tagged ``Tag.IMPORTED`` (and the file's
name and sha256 in ``Tag.CHECKPOINT``); the leaderboard labels it "<method> (official checkpoint)"
and never groups it with trained runs of the same config. The model is the preset's paper model
with its speech encoder built from the preset's architecture without downloading weights
(``audio.pretrained = false``): the official files hold the whole encoder, which overwrites it.

With the dataset (``data_root``), the test split is predicted, evaluated, saved and logged exactly
as a trained run's (pipeline helpers, same metric names and tags); without it, the run holds the
model only (no metrics: it is not on the leaderboard until evaluated).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from talkbench import contract, paths, pipeline, scoring, tracking
from talkbench.contract import Tag

log = logging.getLogger(__name__)


@dataclass
class ImportResult:
    run_id: str
    experiment: str
    tracking_uri: str
    metrics: dict[str, float]
    model_uri: str
    registered: str | None = None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_official(method: str, preset: str, checkpoint, vqvae=None, overrides=(), data=None):
    """(resolved config, model with the official weights) for a paper preset."""
    from talkbench.config import load_config
    from talkbench.methods import official
    from talkbench.registry import METHODS

    converter = official.converter(method)  # unknown method -> one line
    dataset = official.dataset_of(preset)  # unknown preset -> one line
    cfg = load_config(
        method,
        dataset=dataset,
        preset="paper",
        overrides=[f"{method}.audio.pretrained=false", *overrides],
        data_root=getattr(data, "root", None),
        device="cpu",
    )
    spec = data.spec if data is not None else official.dataset_spec(dataset)
    model = METHODS.get(method)(cfg.method_config, spec)
    state = converter.import_checkpoint(model, checkpoint, vqvae=vqvae)
    model.load_state_dict(state)
    return cfg, model.eval()


def import_official(
    method: str,
    preset: str,
    checkpoint: str | Path,
    vqvae: str | Path | None = None,
    data_root: str | Path | None = None,
    overrides=(),
    tracking_uri: str | None = None,
    register: str | None = None,
) -> ImportResult:
    from talkbench import mlflow_model
    from talkbench.datasets import load_dataset
    from talkbench.methods import official

    tracker = tracking.Tracker(tracking_uri)  # the store first: a bad URI fails before any loading
    dataset = official.dataset_of(preset)
    data = load_dataset(dataset, data_root) if data_root is not None else None
    cfg, model = load_official(method, preset, checkpoint, vqvae, overrides, data)
    if register:
        cfg.eval.register = register
    files = [Path(checkpoint), *([Path(vqvae)] if vqvae is not None else [])]
    tags = pipeline.run_tags(cfg, "cpu")
    tags[Tag.IMPORTED] = contract.IMPORTED_OFFICIAL
    tags[Tag.CHECKPOINT] = " ".join(f"{p.name}:sha256={_sha256(p)}" for p in files)
    tags[Tag.RUN_NAME] = f"{method}/{preset}/{contract.OFFICIAL_LABEL.replace(' ', '-')}"
    experiment_id = tracker.ensure_experiment(cfg.dataset.name)
    run_id = tracker.create_run(experiment_id, tags=tags)
    rdir = tracking.write_run_record(
        run_id, tracking_uri=tracker.uri, experiment=cfg.dataset.name, method=method, finished=False
    )
    try:
        config_path = cfg.save(rdir / paths.RUN_CONFIG)
        tracker.log_params(run_id, cfg.params())
        tracker.log_artifact(run_id, config_path)
        metrics = _evaluate(tracker, run_id, cfg, model, data) if data is not None else {}
        if data is not None:
            logged = mlflow_model.log_run_model(
                tracker, run_id, cfg, model, data, rdir, {"imported": [p.name for p in files]}
            )
        else:
            logged = _log_without_data(tracker, run_id, cfg, model, rdir, files)
    except BaseException:
        tracker.finish_run(run_id, "FAILED")
        raise
    tracker.finish_run(run_id, "FINISHED")
    tracking.write_run_record(run_id, finished=True)
    return ImportResult(run_id, cfg.dataset.name, tracker.uri, metrics, logged.uri, logged.registered)


def _log_without_data(tracker, run_id, cfg, model, rdir: Path, files):
    from talkbench import mlflow_model
    from talkbench.model_bundle import write_bundle

    bundle = write_bundle(
        rdir / contract.MODEL_ARTIFACT,
        cfg,
        model,
        model.spec,
        {},
        None,
        {"run_id": run_id, "imported": [p.name for p in files]},
    )
    logged = mlflow_model.log_model(
        tracker, run_id, bundle, model.spec.n_vertices, register=cfg.eval.register
    )
    if logged.registered:
        tracker.set_tags(run_id, {Tag.REGISTERED_MODEL: logged.registered})
    return logged


def _evaluate(tracker, run_id: str, cfg, model, data) -> dict[str, float]:
    """The evaluation split predicted, scored and logged as for a trained run (no renders)."""
    return scoring.score(tracker, run_id, cfg, model, data).metrics
