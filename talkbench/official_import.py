"""An official checkpoint as a talkbench run: weights converted, MLflow model logged, test split scored.

``bench import`` calls :func:`import_official`. The run is tagged ``Tag.IMPORTED`` (and the file's
name and sha256 in ``Tag.CHECKPOINT``); the leaderboard labels it "<method> (official checkpoint)"
and never groups it with trained runs of the same config. The model is the preset's paper model
with its speech encoder built from the preset's architecture without downloading weights
(``audio.pretrained = false``): the official files hold the whole encoder, which overwrites it.

With the dataset (``data_root``), the test split is predicted, evaluated, saved and logged exactly
as a trained run's (pipeline helpers, same metric names and tags); without it, the run holds the
model only (no metrics: it is not on the leaderboard until evaluated).

The method's ``official`` module converts the weights (:mod:`talkbench.methods.official`: pure
conversions); this module picks what they are loaded into: the paper preset's config and the
dataset's spec (:func:`paper_model`, :func:`dataset_spec`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from talkbench import contract, paths, pipeline, scoring, tracking
from talkbench.contract import Tag
from talkbench.errors import TalkbenchError

log = logging.getLogger(__name__)

PRESETS = {"paper-vocaset": "vocaset", "paper-biwi": "biwi"}  # preset -> dataset of its checkpoints
# presets of one file for several datasets (UniTalker's heads): the dataset is named with --dataset
MULTI_DATASET_PRESETS = ("paper-b", "paper-l")
DATASETS = ("vocaset", "biwi")  # the built-in specs of dataset_spec


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


def dataset_of(preset: str, dataset: str | None = None) -> str:
    """The dataset an import of ``preset`` is built and scored on (``dataset``: ``--dataset``)."""
    if preset in MULTI_DATASET_PRESETS:
        if dataset is None:
            raise TalkbenchError(
                f"preset '{preset}' holds heads for several datasets; name one with --dataset "
                f"({' or '.join(DATASETS)}, or a prepared dataset with --data-root)"
            )
        return dataset
    if preset not in PRESETS:
        known = ", ".join([*PRESETS, *MULTI_DATASET_PRESETS])
        raise TalkbenchError(f"preset '{preset}' has no official checkpoints; expected one of {known}")
    if dataset is not None and dataset != PRESETS[preset]:
        raise TalkbenchError(f"preset '{preset}' is for dataset {PRESETS[preset]}, not --dataset {dataset}")
    return PRESETS[preset]


def _preset_name(preset: str) -> str:
    """The preset file an import loads: ``paper`` (+ the dataset's suffix) or the preset itself."""
    return "paper" if preset in PRESETS else preset


def paper_config(method: str, preset: str, overrides: Iterable[str] = (), data_root=None, dataset=None):
    """The resolved config of a paper preset (paper-vocaset / paper-biwi, or paper-b / paper-l on
    ``dataset``), its speech encoder built without a download (``audio.pretrained=false``): an
    official file holds the whole encoder."""
    from talkbench.config import load_config

    return load_config(
        method,
        dataset=dataset_of(preset, dataset),  # unknown preset -> one line
        preset=_preset_name(preset),
        overrides=[f"{method}.audio.pretrained=false", *overrides],
        data_root=data_root,
        device="cpu",
    )


def paper_model(
    method: str,
    preset: str,
    overrides: Iterable[str] = (),
    spec=None,
    encoder_overrides: Mapping | None = None,
    data_root: str | Path | None = None,
    dataset: str | None = None,
):
    """A paper-preset model for ``preset`` without downloading anything, its speech encoder randomly
    initialised: importing a checkpoint overwrites it. ``encoder_overrides`` changes the encoder's
    transformers config (tests use a one-layer encoder; a real import must not, since the official
    checkpoints hold the full encoder). ``spec`` defaults to :func:`dataset_spec` (of ``data_root``
    when given)."""
    from talkbench.registry import METHODS

    sets = []
    if encoder_overrides:
        items = ", ".join(f"{k}: {_yaml(v)}" for k, v in encoder_overrides.items())
        sets.append(f"{method}.audio.hf_overrides={{{items}}}")
    cfg = paper_config(method, preset, [*sets, *overrides], dataset=dataset)
    if spec is None:
        spec = dataset_spec(dataset_of(preset, dataset), data_root)
    return METHODS.get(method)(cfg.method_config, spec)


def _yaml(value) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def dataset_spec(dataset: str, data_root: str | Path | None = None):
    """The VOCASET / BIWI spec. With ``data_root``, the prepared dataset's own spec; without, the
    published protocol's (no faces; BIWI's packaged regions; VOCASET has no packaged regions, so its
    ``lips`` set is empty: enough to build and run a model, not to evaluate or to train the
    MemoryTalker lip loss)."""
    import numpy as np

    from talkbench.datasets import biwi, vocaset
    from talkbench.datasets.spec import DatasetSpec

    if data_root is not None:
        from talkbench.datasets import load_dataset

        return load_dataset(dataset, data_root).spec
    if dataset == "vocaset":
        return DatasetSpec(
            name="vocaset",
            fps=vocaset.FPS,
            capture_fps=vocaset.CAPTURE_FPS,
            n_vertices=vocaset.N_VERTICES,
            splits=dict(vocaset.SPLITS),
            train_subjects=vocaset.TRAIN_SUBJECTS,
            regions={"lips": np.zeros(0, np.int64)},
            audio_alignment="interpolate",
            period=30,
            unit="m",
            table_scales=dict(vocaset.TABLE_SCALES),
            mouth_pair=vocaset.MOUTH_PAIR,
        )
    if dataset == "biwi":
        regions, source = biwi.load_regions(biwi.PACKAGED_REGIONS, biwi.N_VERTICES)
        return DatasetSpec(
            name="biwi",
            fps=biwi.FPS,
            capture_fps=biwi.FPS,
            n_vertices=biwi.N_VERTICES,
            splits=biwi.splits(),
            train_subjects=biwi.TRAIN_SUBJECTS,
            regions=regions,
            audio_alignment="pairs",
            period=25,
            unit="codetalker-normalised",
            table_scales=dict(biwi.TABLE_SCALES),
            meta={"preprocessing": "codetalker", "region_source": source},
        )
    raise TalkbenchError(f"no built-in spec for dataset '{dataset}'; expected vocaset or biwi")


def load_official(method: str, preset: str, checkpoint, vqvae=None, overrides=(), data=None, dataset=None):
    """(resolved config, model with the official weights) for a paper preset; dimensions the file
    decides (the converter's ``config_overrides``) come before the user's ``overrides``."""
    from talkbench.methods import official
    from talkbench.registry import METHODS

    converter = official.converter(method)  # unknown method -> one line
    from_file = converter.config_overrides(checkpoint) if hasattr(converter, "config_overrides") else []
    cfg = paper_config(method, preset, [*from_file, *overrides], getattr(data, "root", None), dataset)
    spec = data.spec if data is not None else dataset_spec(dataset_of(preset, dataset))
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
    dataset: str | None = None,
) -> ImportResult:
    from talkbench import mlflow_model
    from talkbench.datasets import load_dataset

    tracker = tracking.Tracker(tracking_uri)  # the store first: a bad URI fails before any loading
    dataset = dataset_of(preset, dataset)
    data = load_dataset(dataset, data_root) if data_root is not None else None
    cfg, model = load_official(method, preset, checkpoint, vqvae, overrides, data, dataset)
    if register:
        cfg.eval.register = register
    files = [Path(checkpoint), *([Path(vqvae)] if vqvae is not None else [])]
    tags = pipeline.run_tags(cfg, "cpu")
    tags[Tag.IMPORTED] = contract.IMPORTED_OFFICIAL
    tags[Tag.CHECKPOINT] = " ".join(f"{p.name}:sha256={_sha256(p)}" for p in files)
    from talkbench.methods import official

    licence = getattr(official.converter(method), "LICENCE", None)
    if licence:
        tags[Tag.LICENCE] = licence
    tags[Tag.RUN_NAME] = f"{method}/{preset}/{contract.OFFICIAL_LABEL.replace(' ', '-')}"
    experiment_id = tracker.ensure_experiment(cfg.dataset.name)
    run_id = tracker.create_run(experiment_id, tags=tags)
    rdir = tracking.write_run_record(run_id, tracking_uri=tracker.uri)
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
