"""talkbench's own model loader (``talkbench.load_model``): a model reference or folder -> the verified
model, ready to predict. It reads files only: no code of the model runs, nothing is unpickled (MLflow's
``mlflow.pyfunc.load_model`` runs the model's code file by design; see :mod:`talkbench.mlflow_model`)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from talkbench import contract
from talkbench.mlflow_model import TalkbenchModel, bundle_dir, download
from talkbench.model_bundle import parse_digests, read_bundle


def load(ref: str | Path, tracking_uri: str | None = None) -> TalkbenchModel:
    """``ref``: a run id, ``runs:/``, ``models:/`` URI, or a local folder (a talkbench model folder or
    a downloaded MLflow model). Every file is checked against the folder's manifest and, for a model
    in the store, the manifest against the digests its run recorded (``Tag.MODEL_FILES``)."""
    local = Path(ref)
    if local.is_dir():
        return TalkbenchModel().attach(read_bundle(bundle_dir(local)))
    from talkbench.runs import model_address
    from talkbench.tracking import Tracker

    tracker = Tracker(tracking_uri, create=False)
    address = model_address(str(ref), tracker=tracker)
    recorded = tracker.get_run(address.run_id).data.tags.get(contract.Tag.MODEL_FILES)
    with tempfile.TemporaryDirectory(prefix="talkbench-model-") as tmp:
        root = download(address.model_uri, tracker.uri, tmp)
        bundle = read_bundle(root, parse_digests(recorded) if recorded else None)
        return TalkbenchModel().attach(bundle)  # the weights are read here, inside the folder's life
