"""Viewer clips from tracked runs: each clip's ground truth and the predictions the runs saved of it."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from talkbench.errors import TalkbenchError
from talkbench.viewer.data import Track
from talkbench.viewer.write import ViewerClip, folder_names, write_viewer

if TYPE_CHECKING:
    from talkbench.runs import TrackedRun

TRUTH = "ground_truth"  # the ground truth's track key (run tracks are keyed by run id)


def clips_from_runs(
    runs: list[tuple[str, TrackedRun]],
    clips: list,
    condition: str | None = None,
    skip_missing: bool = False,
) -> list[ViewerClip]:
    """Viewer clips of dataset ``clips`` (test clips of the runs' dataset): the ground truth and each
    run's saved prediction. ``runs`` are (label, TrackedRun) pairs; a run without a prediction of a clip
    is an error, or left out of that clip with ``skip_missing`` (a report over runs that saved different
    clips). Conditioned runs show ``condition`` (default: their first)."""
    if not runs:
        raise TalkbenchError("nothing to view: no runs given")
    spec = runs[0][1].dataset.spec
    if spec.faces is None:
        raise TalkbenchError(f"dataset '{spec.name}' has no faces (triangles) to show")
    out = []
    for clip in clips:
        tracks = [Track(TRUTH, "ground truth", np.asarray(clip.vertices))]
        for label, run in runs:
            if skip_missing and not run.has_prediction(clip.name):
                continue
            tracks.append(_run_track(run, label, clip, spec, condition))
        out.append(
            ViewerClip(
                clip.name, clip.fps, np.asarray(clip.template), spec.faces, np.asarray(clip.audio), tracks,
                truth=TRUTH, unit=spec.unit,
            )
        )  # fmt: skip
    return out


def _run_track(run: TrackedRun, label: str, clip, spec, condition: str | None) -> Track:
    """A run's track: its weights through the dataset's rig where it predicted weights (the method's
    own output, decoded here rather than trusting a mesh saved beside them), else its saved meshes."""
    weights = run.weights_prediction(clip.name, condition) if spec.rig is not None else None
    if weights is None:
        return Track(run.run_id, label, run.prediction(clip.name, condition))
    rig = partial(spec.rig.decode, template=np.asarray(clip.template), subject=clip.subject)
    return Track.from_weights(run.run_id, f"{label} (weights via rig)", weights, rig)


def view_runs(
    run_refs: list[str],
    out: str | Path | None = None,
    clip_names: list[str] | None = None,
    condition: str | None = None,
    tracking_uri: str | None = None,
) -> Path:
    """Write a viewer folder of the runs' predictions of ``clip_names`` (default: the first test clip
    every run predicted) next to the ground truth, to ``out`` (default: views/<first clip>/); returns
    its index.html."""
    from talkbench.runs import TrackedRun, run_labels, same_dataset

    runs = [TrackedRun.open(r, tracking_uri) for r in dict.fromkeys(run_refs)]
    same_dataset(runs)
    if not clip_names:
        shared = [c.name for c in runs[0].test_clips.refs if all(r.has_prediction(c.name) for r in runs)]
        if not shared:
            raise TalkbenchError("the runs share no saved test prediction (see eval.save_predictions)")
        clip_names = shared[:1]
    clips = [runs[0].test_clip(name) for name in clip_names]
    clips = clips_from_runs(list(zip(run_labels(runs), runs)), clips, condition)
    out = Path(out) if out is not None else Path("views") / folder_names(clip_names[:1])[0]
    return write_viewer(out, clips, title=f"talkbench viewer: {runs[0].dataset.spec.name}")
