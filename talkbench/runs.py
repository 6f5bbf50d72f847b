"""Read a finished run back: its resolved config, its dataset and its saved test predictions."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from talkbench import contract
from talkbench.errors import TalkbenchError

MODEL_SCHEMES = ("runs:/", "models:/")


def resolve_run_id(ref: str, tracking_uri: str) -> str:
    """The run id behind ``RUN_ID``, ``runs:/RUN_ID[/...]``, ``models:/NAME/VERSION`` or
    ``models:/NAME@ALIAS`` (a registered model version names the run that logged it)."""
    if not ref.startswith(MODEL_SCHEMES):
        return ref
    from talkbench.mlflow_model import resolve

    return resolve(ref, tracking_uri).run_id


@dataclass
class TrackedRun:
    """A run in the tracking store, opened for reading (reports, renders, studies)."""

    run_id: str
    tracker: object

    @classmethod
    def open(cls, run_id: str, tracking_uri: str | None = None) -> TrackedRun:
        from talkbench.tracking import Tracker

        tracker = Tracker(tracking_uri, create=False)  # readers never create a store
        run_id = resolve_run_id(run_id, tracker.uri)  # runs:/ and models:/ URIs name a run too
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
        return self.config.dataset.load()

    @cached_property
    def test_clips(self):
        """The clips the run was evaluated on (its ``eval.split``: BIWI's Test-A by default)."""
        return self.dataset.split(self.config.eval.split_for(self.dataset.spec))

    @cached_property
    def _predictions(self) -> dict[str, contract.PredictionName]:
        """Saved prediction files (names without the folder) and what each one holds."""
        files = self.tracker.list_artifacts(self.run_id, contract.PREDICTIONS_DIR)
        names = sorted(p.rsplit("/", 1)[-1] for p in files)
        return {f: contract.parse_prediction_file(f) for f in names if f.endswith(contract.PREDICTION_SUFFIX)}

    def _files_for(self, clip: str) -> list[str]:
        return [f for f, name in self._predictions.items() if name.clip == clip]

    def prediction(self, clip: str, condition: str | None = None) -> np.ndarray:
        """Predicted (T, V, 3) vertices of one clip (conditioned runs: the given or first condition)."""
        files = self._files_for(clip)
        if condition is not None:
            files = [f for f in files if self._predictions[f].condition == condition]
        if not files:
            raise TalkbenchError(
                f"run {self.run_id} ({self.method}) saved no prediction for clip '{clip}'"
                + (f" under condition '{condition}'" if condition else "")
                + f"; it has {len(self._predictions)} prediction file(s) (eval.save_predictions)"
            )
        path = f"{contract.PREDICTIONS_DIR}/{files[0]}"
        arr = np.load(self.tracker.download_artifacts(self.run_id, path))
        return arr.reshape(len(arr), -1, 3)

    def has_prediction(self, clip: str) -> bool:
        return bool(self._files_for(clip))
