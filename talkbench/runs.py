"""Read a finished run back: its resolved config, its dataset, its saved test predictions, and the
address of its MLflow model (loading that model is the caller's: :func:`talkbench.mlflow_model.load`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from talkbench import contract
from talkbench.contract import MODELS_SCHEME, RUNS_SCHEME
from talkbench.errors import TalkbenchError


@dataclass(frozen=True)
class ModelAddress:
    """A model reference resolved: the run that logged the model and the URI it loads from."""

    run_id: str
    model_uri: str  # models:/<logged model id> or models:/NAME/VERSION | models:/NAME@ALIAS


def model_address(ref: str, tracking_uri: str | None = None, tracker=None) -> ModelAddress:
    """The address of ``RUN_ID``, ``runs:/RUN_ID[/name]``, ``models:/NAME/VERSION`` or
    ``models:/NAME@ALIAS`` (a registered model version names the run that logged it)."""
    if tracker is None:
        from talkbench.tracking import Tracker

        tracker = Tracker(tracking_uri, create=False)  # readers never create a store
    if ref.startswith(RUNS_SCHEME):
        run_id, _, name = ref[len(RUNS_SCHEME) :].partition("/")
        return ModelAddress(run_id, _logged_model_uri(tracker, run_id, name or contract.MODEL_ARTIFACT))
    if not ref.startswith(MODELS_SCHEME):
        return ModelAddress(ref, _logged_model_uri(tracker, ref, contract.MODEL_ARTIFACT))
    try:
        return ModelAddress(tracker.registered_run_id(ref), ref)
    except TalkbenchError as exc:
        raise TalkbenchError(f"model {exc}") from None


def _logged_model_uri(tracker, run_id: str, name: str) -> str:
    """``models:/<model id>`` of the model ``name`` a run logged (MLflow 3 keeps logged models
    outside the run's artifacts, so ``runs:/<id>/model`` does not download them)."""
    run = tracker.get_run(run_id)  # a run that does not exist -> one line naming the store
    outputs = run.outputs.model_outputs if run.outputs else []
    for out in reversed(outputs):  # the newest first
        if tracker.client.get_logged_model(out.model_id).name == name:
            return f"{MODELS_SCHEME}{out.model_id}"
    raise TalkbenchError(
        f"run '{run_id}' logged no MLflow model '{name}' (runs logged before talkbench 0.2 carry only "
        "checkpoints; train it again or `bench import` its weights)"
    )


def resolve_run_id(ref: str, tracking_uri: str | None = None, tracker=None) -> str:
    """The run id behind a run id or a model reference (see :func:`model_address`)."""
    if not ref.startswith((RUNS_SCHEME, MODELS_SCHEME)):
        return ref
    return model_address(ref, tracking_uri, tracker).run_id


@dataclass
class TrackedRun:
    """A run in the tracking store, opened for reading (reports, renders, studies); of a run trained
    on a mixture, ``member`` names the dataset whose test split, predictions and samples it reads."""

    run_id: str
    tracker: object
    member: str | None = None
    _loaded: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)
    _listed: dict[str, dict] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def open(cls, run_id: str, tracking_uri: str | None = None) -> TrackedRun:
        from talkbench.tracking import Tracker

        tracker = Tracker(tracking_uri, create=False)  # readers never create a store
        run_id = resolve_run_id(run_id, tracker=tracker)  # runs:/ and models:/ URIs name a run too
        tracker.get_run(run_id)  # a run that does not exist -> clear error
        return cls(run_id, tracker)

    @cached_property
    def info(self):
        return self.tracker.get_run(self.run_id)

    @property
    def method(self) -> str:
        return self.info.data.tags.get(contract.Tag.METHOD, self.run_id[:8])

    @cached_property
    def config(self):
        from talkbench.config import RunConfig

        return RunConfig.load(self.tracker.download_artifacts(self.run_id, contract.CONFIG_ARTIFACT))

    @cached_property
    def dataset(self):
        data = self.config.dataset.load()
        return data if self.member is None else data.members[self.member]

    @cached_property
    def test_clips(self):
        """The clips the run was evaluated on (its ``eval.split``: BIWI's Test-A by default)."""
        return self.dataset.split(self.config.eval.split_for(self.dataset.spec))

    def _saved(self, folder: str) -> dict[str, contract.PredictionName]:
        """Prediction files a run saved under ``folder`` (names without the folder), listed once."""
        key = f"{folder}/"
        if key not in self._listed:
            files = self.tracker.list_artifacts(self.run_id, contract.for_member(folder, self.member))
            names = sorted(p.rsplit("/", 1)[-1] for p in files)
            self._listed[key] = {
                f: contract.parse_prediction_file(f) for f in names if f.endswith(contract.PREDICTION_SUFFIX)
            }
        return self._listed[key]

    def _files_for(self, clip: str, folder: str = contract.PREDICTIONS_DIR) -> list[str]:
        return [f for f, name in self._saved(folder).items() if name.clip == clip]

    def _load(self, folder: str, clip: str, condition: str | None) -> np.ndarray | None:
        """One saved prediction (conditioned runs: the given or first condition), loaded once and
        read-only (the report's sections share a clip); None when the run saved none."""
        saved = self._saved(folder)
        files = [f for f in self._files_for(clip, folder) if condition in (None, saved[f].condition)]
        if not files:
            return None
        path = f"{contract.for_member(folder, self.member)}/{files[0]}"
        if path not in self._loaded:
            arr = np.load(self.tracker.download_artifacts(self.run_id, path), allow_pickle=False)
            arr.flags.writeable = False  # shared by every caller
            self._loaded[path] = arr
        return self._loaded[path]

    def prediction(self, clip: str, condition: str | None = None) -> np.ndarray:
        """Predicted (T, V, 3) vertices of one clip (conditioned runs: the given or first condition)."""
        arr = self._load(contract.PREDICTIONS_DIR, clip, condition)
        if arr is None:
            raise TalkbenchError(
                f"run {self.run_id} ({self.method}) saved no prediction for clip '{clip}'"
                + (f" under condition '{condition}'" if condition else "")
                + f"; it has {len(self._saved(contract.PREDICTIONS_DIR))} prediction file(s) "
                "(eval.save_predictions)"
            )
        return arr.reshape(len(arr), -1, 3)

    def weights_prediction(self, clip: str, condition: str | None = None) -> np.ndarray | None:
        """Predicted (T, K) blendshape weights of one clip, None for a run that predicts vertices."""
        return self._load(contract.WEIGHT_PREDICTIONS_DIR, clip, condition)

    @property
    def samples_per_clip(self) -> int:
        """N the run drew per test clip and condition (1: a deterministic method, or an older run)."""
        return int(self.info.data.tags.get(contract.Tag.SAMPLES, "1"))

    def samples(self, clip: str, condition: str | None = None) -> tuple[np.ndarray, list[int]]:
        """The N samples (N, T, V, 3) of one clip of a run of a method that samples (conditioned runs:
        the given or first condition), and the seed of each (each replays through predict_samples)."""
        import pandas as pd

        folder = contract.SAMPLE_PREDICTIONS_DIR
        arr = self._load(folder, clip, condition)
        if arr is None:
            raise TalkbenchError(
                f"run {self.run_id} ({self.method}) saved no samples of clip '{clip}'"
                + (f" under condition '{condition}'" if condition else "")
                + f" (runs of methods that sample keep them in {folder}/; "
                f"this one has {len(self._saved(folder))} such file(s))"
            )
        saved = self._saved(folder)
        cond = condition or next(saved[f].condition for f in self._files_for(clip, folder)) or ""
        table = self.tracker.download_artifacts(
            self.run_id, contract.for_member(contract.SAMPLE_SEEDS_ARTIFACT, self.member)
        )
        seeds = pd.read_csv(table, dtype={"condition": "string"})
        mine = seeds[(seeds["clip"] == clip) & (seeds["condition"].fillna("") == cond)].sort_values("sample")
        return arr.reshape(*arr.shape[:2], -1, 3), [int(s) for s in mine["seed"]]

    def has_prediction(self, clip: str) -> bool:
        return bool(self._files_for(clip))

    def test_clip(self, name: str):
        """One clip of the run's test split, by name (a name not in it -> one error with an example)."""
        test = self.test_clips
        by_name = {c.name: i for i, c in enumerate(test.refs)}
        if name not in by_name:
            raise TalkbenchError(
                f"--clip '{name}' is not a test clip of '{self.dataset.spec.name}'; "
                f"e.g. {next(iter(by_name))}"
            )
        return test[by_name[name]]


def same_dataset(runs: list[TrackedRun]) -> None:
    """Raise unless every run was evaluated on the same dataset (name, root and options)."""
    datasets = {(r.config.dataset.name, r.config.dataset.root, str(r.config.dataset.options)) for r in runs}
    if len(datasets) > 1:
        raise TalkbenchError(f"the runs were evaluated on different datasets: {sorted(map(str, datasets))}")


def run_labels(runs: list[TrackedRun]) -> list[str]:
    """Each run's method name, with the start of its run id where two runs share a method."""
    methods = [r.method for r in runs]
    return [m if methods.count(m) == 1 else f"{m} ({r.run_id[:8]})" for m, r in zip(methods, runs)]
