"""talkbench's own model loader (``talkbench.load_model``): a model reference or folder -> the verified
model, ready to predict. It reads files only: no code of the model runs, nothing is unpickled (MLflow's
``mlflow.pyfunc.load_model`` runs the model's code file by design; see :mod:`talkbench.mlflow_model`)."""

from __future__ import annotations

import contextlib
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from talkbench import contract
from talkbench.errors import TalkbenchError
from talkbench.mlflow_model import TalkbenchModel, bundle_dir, download
from talkbench.model_bundle import Bundle, parse_digests, read_bundle

# owner/name[@revision]: a Hugging Face repo id (a run id has no slash, URIs have a scheme)
_HUB_REPO = re.compile(r"[\w.-]+/[\w.-]+(@[\w./-]+)?")


@dataclass
class ModelSource:
    """A verified model folder, readable inside :func:`opened`'s block."""

    bundle: Bundle
    run_id: str | None = None  # the run that logged it (a model of the store)
    tracker: Any = None  # that run's store


@contextlib.contextmanager
def opened(ref: str | Path, tracking_uri: str | None = None) -> Iterator[ModelSource]:
    """The model folder behind ``ref``, verified: a run id, ``runs:/``, ``models:/`` URI, a local
    folder (a talkbench model folder, a downloaded MLflow model, a ``bench export`` folder) or a
    Hugging Face repo id in the local cache. Every file is checked against the folder's manifest and,
    for a model in the store, the manifest against the digests its run recorded (``Tag.MODEL_FILES``)."""
    local = Path(ref)
    if local.is_dir():
        yield ModelSource(read_bundle(bundle_dir(local)))
        return
    ref = str(ref)
    if _HUB_REPO.fullmatch(ref) and not ref.startswith((contract.RUNS_SCHEME, contract.MODELS_SCHEME)):
        yield ModelSource(read_bundle(hub_snapshot(ref)))
        return
    from talkbench.runs import model_address
    from talkbench.tracking import Tracker

    tracker = Tracker(tracking_uri, create=False)
    address = model_address(ref, tracker=tracker)
    recorded = tracker.get_run(address.run_id).data.tags.get(contract.Tag.MODEL_FILES)
    with tempfile.TemporaryDirectory(prefix="talkbench-model-") as tmp:
        root = download(address.model_uri, tracker.uri, tmp)
        yield ModelSource(
            read_bundle(root, parse_digests(recorded) if recorded else None), address.run_id, tracker
        )


def load(ref: str | Path, tracking_uri: str | None = None) -> TalkbenchModel:
    """The model behind ``ref`` (see :func:`opened`), its weights read while the folder exists."""
    with opened(ref, tracking_uri) as source:
        return TalkbenchModel().attach(source.bundle)


def hub_snapshot(ref: str) -> Path:
    """The folder of a Hugging Face repo (``owner/name[@revision]``) in the local cache, found by
    huggingface_hub without the network (``local_files_only``: talkbench never downloads a model)."""
    from huggingface_hub import constants, snapshot_download

    repo_id, _, revision = ref.partition("@")
    try:
        return Path(snapshot_download(repo_id, revision=revision or None, local_files_only=True))
    except Exception as exc:  # not cached, a revision not cached, an unreadable cache
        raise TalkbenchError(
            f"'{ref}': no such folder, and no Hugging Face model '{repo_id}'"
            + (f" at revision '{revision}'" if revision else "")
            + f" in the local cache {constants.HF_HUB_CACHE} ({type(exc).__name__}); talkbench reads the "
            f"cache only, never the network: download it yourself (`hf download {repo_id}`)"
        ) from None
