"""A trained talkbench model as an MLflow model (pyfunc), the Model Registry, and model URIs.

Beside :mod:`talkbench.tracking`, the only module that imports mlflow (import-linter contract).

The model is logged from code (MLflow's models-from-code): its python model is the small module
:mod:`talkbench.mlflow_predict`, which imports the installed talkbench; nothing in it is pickled. Its one
artifact is the self-contained folder of :mod:`talkbench.model_bundle` (config, safetensors weights,
DatasetSpec essentials, training speakers' templates, manifest of sha256 digests), and the run records
the same digests (``Tag.MODEL_FILES``).

Two loaders:

- :func:`talkbench.model_loader.load` (``talkbench.load_model``, every ``bench`` command) downloads
  the model's files (:func:`download`), checks them against the manifest and the run's digests, and
  reads only the folder: it never runs code from the model (neither the code file nor an older
  model's ``python_model.pkl``);
- ``mlflow.pyfunc.load_model(uri)`` executes the model's code file by MLflow's design (and unpickles
  ``python_model.pkl`` of a model logged before talkbench 0.2): use it only on models you trust.

pyfunc interface (the logged signature)::

    model.predict({"audio": (S,) float32 16 kHz mono, "template": (V, 3) float32},
                  params={"condition": ""})  ->  (C, T, V, 3) float32 vertices
                                                   (a blendshape method: (C, T, K) weights)

``template`` with zero rows ((0, 3)) = the first training speaker's template stored in the model.
``condition``: "" = the first training speaker (audio-only methods: no condition, C = 1), "all" =
every training speaker in training order, or one speaker's name.

Model references (``RUN_ID``, ``runs:/RUN_ID[/model]``, ``models:/NAME/VERSION``, ``models:/NAME@ALIAS``)
are resolved to a model URI by :func:`talkbench.runs.model_address`, which reads the store.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import mlflow.models
import mlflow.pyfunc
import numpy as np

from talkbench import contract
from talkbench.errors import TalkbenchError

log = logging.getLogger(__name__)

BUNDLE_ARTIFACT = "bundle"  # the pyfunc artifact name of the model folder
PREDICT_MODULE = Path(__file__).with_name("mlflow_predict.py")  # the code the model is logged from


class TalkbenchModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper of a talkbench method (see the module docstring for the interface)."""

    def load_context(self, context) -> None:
        from talkbench.model_bundle import read_bundle

        self.attach(read_bundle(context.artifacts[BUNDLE_ARTIFACT]))

    def attach(self, bundle) -> TalkbenchModel:
        self.bundle = bundle
        self.method = bundle.method("cpu")
        return self

    # np.ndarray: a type hint MLflow accepts without inferring a schema (the logged signature is the
    # schema); the input is a dict of named tensors
    def predict(
        self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        import torch

        from talkbench.animate import resolve_conditions

        spec = self.bundle.spec
        audio = np.array(model_input["audio"], np.float32).reshape(-1)  # a writable copy
        template = np.asarray(model_input.get("template", np.zeros((0, 3))), np.float32)
        if template.size == 0:
            template = self.bundle.default_template
        template = np.array(template, np.float32).reshape(spec.n_vertices, 3)
        condition = (params or {}).get("condition") or None
        names = resolve_conditions(self.method, condition)
        indices = [None if c is None else spec.train_subjects.index(c) for c in names]
        with torch.no_grad():
            out = self.method.predict_conditions(torch.from_numpy(audio), torch.from_numpy(template), indices)
        return out.detach().float().cpu().numpy()


def signature(n_vertices: int, n_channels: int | None = None):
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ParamSchema, ParamSpec, Schema, TensorSpec

    output = (-1, -1, n_vertices, 3) if n_channels is None else (-1, -1, n_channels)
    return ModelSignature(
        inputs=Schema(
            [
                TensorSpec(np.dtype(np.float32), (-1,), "audio"),
                TensorSpec(np.dtype(np.float32), (-1, 3), "template"),
            ]
        ),
        outputs=Schema([TensorSpec(np.dtype(np.float32), output)]),
        params=ParamSchema([ParamSpec("condition", "string", "")]),
    )


def _requirements() -> list[str]:
    from talkbench.tracking import package_versions

    versions = package_versions()
    return [f"{pkg}=={versions[pkg]}" for pkg in ("torch", "numpy", "mlflow") if versions[pkg] != "unknown"]


@contextlib.contextmanager
def _store(uri: str) -> Iterator[None]:
    """MLflow's fluent/model APIs read the global tracking and registry URIs: point them at ``uri``."""
    old_tracking = mlflow.get_tracking_uri()
    old_registry = mlflow.get_registry_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(old_tracking)
        mlflow.set_registry_uri(old_registry)


# ------------------------------------------------------------------------------------------ logging
@dataclass
class LoggedModel:
    uri: str  # runs:/<run id>/model
    model_id: str
    registered: str | None = None  # models:/NAME/VERSION


def log_model(
    tracker,
    run_id: str,
    bundle_dir: str | Path,
    n_vertices: int,
    register: str | None = None,
    n_channels: int | None = None,
):
    """Log the model folder as the run's MLflow model (``contract.MODEL_ARTIFACT``); with
    ``register``, also as a new version of that registered model. ``n_channels``: the model
    predicts that many blendshape weights per frame instead of vertices."""
    from mlflow.models import Model

    from talkbench.model_bundle import file_digests, format_digests

    quiet = logging.getLogger("mlflow")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "model logged without an input example" etc.
    try:
        with _store(tracker.uri), warnings.catch_warnings():
            # the signature is explicit and an example would be a second copy of a clip (the message
            # starts with a colour code, hence the leading .*)
            warnings.filterwarnings("ignore", ".*An input example was not provided", UserWarning)
            # created in the run's experiment: left to Model.log, the model goes to the Default
            # experiment (its artifacts under ./mlruns in the cwd) and the run page lists no model
            run = tracker.client.get_run(run_id)
            model = mlflow.initialize_logged_model(
                name=contract.MODEL_ARTIFACT,
                source_run_id=run_id,
                params={k: str(v) for k, v in run.data.params.items()},
                experiment_id=run.info.experiment_id,
            )
            info = Model.log(
                None,
                name=contract.MODEL_ARTIFACT,
                flavor=mlflow.pyfunc,
                run_id=run_id,
                model_id=model.model_id,
                python_model=str(PREDICT_MODULE),
                artifacts={BUNDLE_ARTIFACT: str(bundle_dir)},
                signature=signature(n_vertices, n_channels),
                pip_requirements=_requirements(),
                registered_model_name=register,
                await_registration_for=0,
            )
    except Exception as exc:
        raise TalkbenchError(
            f"run {run_id}: logging the MLflow model failed: {str(exc).splitlines()[0]}"
        ) from None
    finally:
        quiet.setLevel(level)
    tracker.set_tags(run_id, {contract.Tag.MODEL_FILES: format_digests(file_digests(bundle_dir))})
    registered = None
    if register:
        version = getattr(info, "registered_model_version", None)
        registered = f"{contract.MODELS_SCHEME}{register}/{version}"
    return LoggedModel(f"{contract.RUNS_SCHEME}{run_id}/{contract.MODEL_ARTIFACT}", info.model_id, registered)


# ------------------------------------------------------------------------------------------ loading
def set_code_model() -> None:
    """What :mod:`talkbench.mlflow_predict` (the file the model is logged from) runs."""
    mlflow.models.set_model(TalkbenchModel())


def download(model_uri: str, tracking_uri: str, dst: str | Path) -> Path:
    """The model folder inside the files of the MLflow model at ``model_uri``, downloaded to ``dst``
    (files only: nothing of the model is loaded or run)."""
    with _store(tracking_uri):
        try:
            root = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(dst))
        except Exception as exc:
            raise TalkbenchError(
                f"'{model_uri}': the model's files could not be read: {str(exc).splitlines()[0][:200]}"
            ) from None
    return bundle_dir(Path(root))


def bundle_dir(root: Path) -> Path:
    """The model folder itself, or the one inside an MLflow model folder (its MLmodel, plain YAML,
    says where pyfunc put the artifact)."""
    import yaml

    if not (root / "MLmodel").is_file():
        return root
    try:
        flavor = yaml.safe_load((root / "MLmodel").read_text())["flavors"]["python_function"]
        return root / flavor["artifacts"][BUNDLE_ARTIFACT]["path"]
    except (KeyError, TypeError, yaml.YAMLError):
        raise TalkbenchError(
            f"{root / 'MLmodel'}: not a talkbench MLflow model (no '{BUNDLE_ARTIFACT}' artifact)"
        ) from None


# ---------------------------------------------------------------------------------- the run's model
MAX_REFERENCE_CLIPS = 48  # training clips profiled for the out-of-domain warning (evenly spaced)


def training_templates(data) -> dict[str, np.ndarray]:
    """The training speakers' templates (the loaders' ``templates``, else the first clip's)."""
    spec = data.spec
    templates = dict(getattr(data, "templates", None) or {})
    if not all(s in templates for s in spec.train_subjects):
        for clip in data.split("train"):
            templates.setdefault(clip.subject, np.asarray(clip.template, np.float32))
    return {s: np.asarray(templates[s], np.float32) for s in spec.train_subjects if s in templates}


def training_audio_reference(data) -> dict | None:
    """animate.audio_reference over (up to MAX_REFERENCE_CLIPS of) the training audio."""
    from talkbench.animate import audio_reference

    refs = list(data.split("train").refs)
    if not refs:
        return None
    step = max(1, len(refs) // MAX_REFERENCE_CLIPS)
    return audio_reference(data.audio(r) for r in refs[::step][:MAX_REFERENCE_CLIPS])


def log_run_model(
    tracker, run_id: str, cfg, method, data, work_dir: str | Path, extra: dict | None = None
) -> LoggedModel:
    """Write the model folder of a trained ``method`` under ``work_dir`` and log it as the run's
    MLflow model (registered as ``cfg.eval.register`` when set); tags the registered version."""
    from talkbench.model_bundle import write_bundle

    bundle = write_bundle(
        Path(work_dir) / contract.MODEL_ARTIFACT,
        cfg,
        method,
        data.spec,
        training_templates(data),
        training_audio_reference(data),
        {"run_id": run_id, **(extra or {})},
    )
    n_channels = len(data.spec.channels) if getattr(method, "target", "vertices") == "blendshapes" else None
    logged = log_model(tracker, run_id, bundle, data.spec.n_vertices, cfg.eval.register, n_channels)
    if logged.registered:
        tracker.set_tags(run_id, {contract.Tag.REGISTERED_MODEL: logged.registered})
    return logged
