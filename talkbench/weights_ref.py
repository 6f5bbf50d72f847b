"""A setting that names the weights a run starts from (``unitalker.finetune_head``): a file, or a run.

A method's Config marks such a field ``metadata={"weights": True}``; the pipeline hands the method a
local file for it (:func:`with_local_weights`) and keeps the reference itself in the run's config (so
the config hash names the source run, not a cache path). A reference is a file (the official release's
``.pt``, or a talkbench ``model.safetensors`` with its ``.sha256``), or a run: ``RUN_ID``,
``runs:/RUN_ID[/...]``, ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``. A run gives its final weights
(``checkpoints/model.safetensors``, every trained run, mixtures included), or, for a ``bench import``-ed
run that trained nothing, the weights of its MLflow model, checked against the digests the run recorded.
Copies are kept under ``$TALKBENCH_HOME/weights/<run id>/``, verified by sha256 when read.
"""

from __future__ import annotations

import copy
import dataclasses
import tempfile
from pathlib import Path

from talkbench import checkpoint, contract, paths
from talkbench.errors import TalkbenchError


def with_local_weights(cfg, tracker=None, tracking_uri: str | None = None):
    """``cfg`` (a RunConfig) itself when it names no weights, else a copy whose marked method settings
    are local files (``cfg`` keeps the references: it is what the run saves and hashes). The store is
    ``tracker``, else opened at ``tracking_uri`` when a run is named."""
    settings = cfg.method_config
    if settings is None or not dataclasses.is_dataclass(settings):
        return cfg
    named = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)
             if f.metadata.get("weights") and getattr(settings, f.name)}
    if not named:
        return cfg
    if tracker is None and not all(Path(v).expanduser().is_file() for v in named.values()):
        from talkbench.tracking import Tracker

        tracker = Tracker(tracking_uri, create=False)
    local = {k: local_file(v, tracker, f"{cfg.method}.{k}") for k, v in named.items()}
    out = copy.copy(cfg)
    out.method_config = dataclasses.replace(settings, **local)
    return out


def local_file(ref: str, tracker, option: str) -> str:
    """The file behind ``ref`` (see the module docstring), fetched once into the weights cache."""
    if Path(ref).expanduser().is_file():
        return str(Path(ref).expanduser())
    run_id = _run_id(ref, tracker, option)
    own = paths.run_dir(run_id) / contract.CHECKPOINTS_DIR / checkpoint.FINAL  # trained on this machine
    if own.is_file():
        return str(own)
    cached = paths.weights_cache() / run_id / checkpoint.FINAL
    if not cached.is_file():
        checkpoint.save_weights(_run_weights(run_id, tracker, option), cached)
    return str(cached)


def _run_weights(run_id: str, tracker, option: str):
    """A run's final weights, or (a ``bench import``-ed run) those of its MLflow model; verified."""
    final = f"{contract.CHECKPOINTS_DIR}/{checkpoint.FINAL}"
    if final not in tracker.list_artifacts(run_id, contract.CHECKPOINTS_DIR):
        return _model_weights(run_id, tracker, option)
    with tempfile.TemporaryDirectory(prefix="talkbench-weights-") as tmp:
        folder = tracker.download_artifacts(run_id, contract.CHECKPOINTS_DIR, tmp)
        return checkpoint.load_weights(folder / checkpoint.FINAL)  # checked against its sha256


def _run_id(ref: str, tracker, option: str) -> str:
    if ref.startswith(contract.RUNS_SCHEME):
        return ref[len(contract.RUNS_SCHEME):].partition("/")[0]
    if ref.startswith(contract.MODELS_SCHEME):
        try:
            return tracker.registered_run_id(ref)
        except TalkbenchError as exc:
            raise TalkbenchError(f"{option} {exc}") from None
    if "/" in ref or ref.endswith((".pt", ".pth", ".safetensors")):
        raise TalkbenchError(f"{option} '{ref}': no such file (expected a weights file, a run id, "
                             "runs:/RUN_ID or models:/NAME/VERSION)")
    try:
        tracker.get_run(ref)
    except TalkbenchError:
        raise TalkbenchError(f"{option} '{ref}': neither a file nor a run of '{tracker.uri}' (expected a "
                             "weights file, a run id, runs:/RUN_ID or models:/NAME/VERSION)") from None
    return ref


def _model_weights(run_id: str, tracker, option: str):
    """The state dict of the MLflow model a run logged (a ``bench import``-ed run), verified."""
    from safetensors.torch import load_file

    from talkbench.mlflow_model import download
    from talkbench.model_bundle import WEIGHTS_FILE, parse_digests, read_bundle

    run = tracker.get_run(run_id)
    outputs = run.outputs.model_outputs if run.outputs else []
    if not outputs:
        raise TalkbenchError(f"{option} '{run_id}': that run has neither final weights "
                             f"({contract.CHECKPOINTS_DIR}/{checkpoint.FINAL}) nor an MLflow model")
    recorded = run.data.tags.get(contract.Tag.MODEL_FILES)
    with tempfile.TemporaryDirectory(prefix="talkbench-weights-") as tmp:
        root = download(f"{contract.MODELS_SCHEME}{outputs[-1].model_id}", tracker.uri, tmp)
        bundle = read_bundle(root, parse_digests(recorded) if recorded else None)
        return load_file(bundle.root / WEIGHTS_FILE)
