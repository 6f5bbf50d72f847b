"""Read a finished run back: its resolved config, its dataset and its saved test predictions."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from talkbench.errors import TalkbenchError


@dataclass
class TrackedRun:
    """A run in the tracking store, opened for reading (reports, renders, studies)."""

    run_id: str
    tracker: object

    @classmethod
    def open(cls, run_id: str, tracking_uri: str | None = None) -> TrackedRun:
        from talkbench.tracking import Tracker

        tracker = Tracker(tracking_uri)
        tracker.get_run(run_id)  # a run that does not exist -> clear error
        return cls(run_id, tracker)

    @cached_property
    def info(self):
        return self.tracker.get_run(self.run_id)

    @property
    def method(self) -> str:
        return self.info.data.tags.get("talkbench.method", self.run_id[:8])

    @cached_property
    def config(self):
        from talkbench.config import RunConfig

        return RunConfig.load(self.tracker.download_artifacts(self.run_id, "config.yaml"))

    @cached_property
    def dataset(self):
        from talkbench.pipeline import load_data

        return load_data(self.config)

    @cached_property
    def prediction_files(self) -> list[str]:
        return sorted(p.rsplit("/", 1)[-1] for p in self.tracker.list_artifacts(self.run_id, "predictions"))

    def _files_for(self, clip: str) -> list[str]:
        """Saved prediction files of one clip: ``<clip>.npy`` or ``<clip>_condition_<Subject>.npy``."""
        return [f for f in self.prediction_files if f == f"{clip}.npy" or f.startswith(f"{clip}_condition_")]

    def prediction(self, clip: str, condition: str | None = None) -> np.ndarray:
        """Predicted (T, V, 3) vertices of one clip (conditioned runs: the given or first condition)."""
        files = self._files_for(clip)
        if condition is not None:
            files = [f for f in files if f == f"{clip}_condition_{condition}.npy"]
        if not files:
            raise TalkbenchError(
                f"run {self.run_id} ({self.method}) saved no prediction for clip '{clip}'"
                + (f" under condition '{condition}'" if condition else "")
                + f"; it has {len(self.prediction_files)} prediction file(s) (eval.save_predictions)"
            )
        arr = np.load(self.tracker.download_artifacts(self.run_id, f"predictions/{files[0]}"))
        return arr.reshape(len(arr), -1, 3)

    def has_prediction(self, clip: str) -> bool:
        return bool(self._files_for(clip))
