"""Build a two-alternative forced-choice study: side-by-side videos (or the 3D viewer), a manifest,
catch trials."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np

from talkbench.errors import TalkbenchError
from talkbench.render import Camera, render_side_by_side
from talkbench.viewer import Track, ViewerClip, write_viewer

QUESTIONS = {
    "lipsync": "Which face's lip movements match the speech better?",
    "realism": "Which face moves more realistically?",
    "style": "Which face's speaking style is closer to the reference in the middle?",
}
CONSENT = (
    "You will watch short silent-face animations driven by speech and pick, for each question, the "
    "left or the right face. Answers are anonymous and stored with a random rater id. By continuing "
    "you agree that your answers are used for research."
)
CATCH = "catch:static"  # ground truth against a face that does not move at all

# Rating studies: one face per trial, a score per criterion. MOS is the ITU-T P.800 five-point
# absolute category rating; Likert is a seven-point agreement scale.
SCALES = {
    "mos": {"points": 5, "labels": ["Bad", "Poor", "Fair", "Good", "Excellent"]},
    "likert": {
        "points": 7,
        "labels": [
            "Strongly disagree",
            "Disagree",
            "Somewhat disagree",
            "Neutral",
            "Somewhat agree",
            "Agree",
            "Strongly agree",
        ],
    },
}
RATING_QUESTIONS = {
    "lipsync": "How well do the lip movements match the speech?",
    "naturalness": "How natural does the face move?",
    "realism": "How realistic is the facial motion?",
    "style": "How close is the speaking style to the reference on the left?",
}
ATTENTION = "attention"  # the criterion of an instructed-response trial


def check_scale(scale: str, rating: bool = False) -> None:
    """``scale`` is 2afc (unless ``rating``) or one of SCALES; else one error naming the option."""
    if scale not in SCALES and (rating or scale != "2afc"):
        raise TalkbenchError(f"--scale {scale}: expected 2afc or one of {sorted(SCALES)}")


def rating_criteria(criteria: tuple[str, ...]) -> tuple[str, ...]:
    """Criteria names as the CLI takes them ("lip-sync" is "lipsync"), checked against the questions."""
    names = tuple(c.replace("-", "").replace("_", "") for c in criteria)
    unknown = [c for c, n in zip(criteria, names) if n not in RATING_QUESTIONS]
    if unknown or not names:
        raise TalkbenchError(
            f"unknown rating criteria {unknown}; expected some of {sorted(RATING_QUESTIONS)}"
        )
    return names


@dataclass
class StudyClip:
    """Ground truth of one test clip: what every trial built from it shares."""

    name: str
    subject: str
    fps: float
    audio: np.ndarray
    template: np.ndarray
    vertices: np.ndarray


def select_clips(clips: list[StudyClip], n: int, seed: int) -> list[StudyClip]:
    """n clips balanced over subjects (round robin over a seeded shuffle of each subject's clips)."""
    rng = random.Random(seed)
    by_subject: dict[str, list[StudyClip]] = {}
    for c in sorted(clips, key=lambda c: c.name):
        by_subject.setdefault(c.subject, []).append(c)
    for group in by_subject.values():
        rng.shuffle(group)
    chosen: list[StudyClip] = []
    while len(chosen) < n and any(by_subject.values()):
        for subject in sorted(by_subject):
            if by_subject[subject] and len(chosen) < n:
                chosen.append(by_subject[subject].pop())
    return chosen


def build_study(
    out_dir: str | Path,
    clips: list[StudyClip],
    predictions: dict[str, dict[str, np.ndarray]],
    faces: np.ndarray,
    camera: Camera,
    n_clips: int = 10,
    criteria: tuple[str, ...] = ("lipsync", "realism"),
    reference: bool = False,
    n_catch: int | None = None,
    seed: int = 0,
    size: int = 384,
    title: str = "Talking-face study",
    viewer: bool = False,
    drawn: dict[str, dict[str, dict]] | None = None,
) -> Path:
    """Render every method pair on ``n_clips`` clips plus catch trials and write manifest.json.

    ``predictions`` maps a method label to {clip name: (T, V, 3)}; ``drawn`` says, for a method that
    samples, which sample each clip shows ({label: {clip: {"sample": k, "seed": s}}}), recorded in
    the trials as ``left_sample`` / ``right_sample``. Left/right and trial order are
    randomised with ``seed``; with ``reference`` the speaker's ground truth plays in the middle and
    the speaking-style question is asked. With ``viewer`` a trial is shown in the 3D viewer (the rater
    may orbit, scrub and step; panels are named Left, Reference, Right only) instead of an MP4.
    """
    if len(predictions) < 2:
        raise TalkbenchError(f"a 2AFC study compares at least two methods, got {sorted(predictions)}")
    unknown = [c for c in criteria if c not in QUESTIONS]
    if unknown:
        raise TalkbenchError(f"unknown study criteria {unknown}; expected some of {sorted(QUESTIONS)}")
    criteria = tuple(criteria) + (("style",) if reference and "style" not in criteria else ())
    shared = set.intersection(*(set(p) for p in predictions.values()))
    usable = [c for c in clips if c.name in shared]
    if not usable:
        raise TalkbenchError("the methods share no predicted test clip to compare")
    chosen = select_clips(usable, n_clips, seed)
    out = Path(out_dir)
    (out / ("viewer" if viewer else "videos")).mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    viewed: list[ViewerClip] = []

    specs = []
    for clip in chosen:
        for a, b in combinations(sorted(predictions), 2):
            specs.append((clip, a, b, predictions[a][clip.name], predictions[b][clip.name]))
    n_catch = max(1, len(specs) // 10) if n_catch is None else n_catch
    for i in range(n_catch):
        clip = chosen[i % len(chosen)]
        static = np.repeat(clip.template[None], len(clip.vertices), axis=0)
        specs.append((clip, "ground-truth", CATCH, clip.vertices, static))
    rng.shuffle(specs)

    trials = []
    for i, (clip, a, b, va, vb) in enumerate(specs):
        swap = rng.random() < 0.5
        (left, vl), (right, vr) = ((b, vb), (a, va)) if swap else ((a, va), (b, vb))
        panels = [("Left", vl), ("Right", vr)]
        if reference:
            panels.insert(1, ("Reference", clip.vertices))
        trial_id = f"t{i + 1:03d}"
        if viewer:  # the tracks carry the side names only, so no file tells a rater the method
            tracks = [Track(label.lower(), label, v) for label, v in panels]
            viewed.append(ViewerClip(trial_id, clip.fps, clip.template, faces, clip.audio, tracks))
            shown = {"viewer": f"viewer/index.html?clip={trial_id}"}
        else:
            video = out / "videos" / f"{trial_id}.mp4"
            render_side_by_side(panels, faces, video, clip.fps, camera, clip.audio, clip.template, size)
            shown = {"video": f"videos/{video.name}"}
        is_catch = CATCH in (a, b)
        trials.append(
            {
                "id": trial_id,
                **shown,
                "clip": clip.name,
                "subject": clip.subject,
                "left": left,
                "right": right,
                "catch": is_catch,
                "expected": ("left" if left == "ground-truth" else "right") if is_catch else None,
                "criteria": [c for c in criteria if not (is_catch and c == "style")],
                **{
                    f"{side}_sample": drawn[label][clip.name]
                    for side, label in (("left", left), ("right", right))
                    if drawn and clip.name in drawn.get(label, {})
                },
            }
        )
    manifest = {
        "title": title,
        "seed": seed,
        "methods": sorted(predictions),
        "criteria": list(criteria),
        "questions": {c: QUESTIONS[c] for c in criteria},
        "reference": reference,
        "consent": CONSENT,
        "trials": trials,
    }
    if viewed:
        write_viewer(out / "viewer", viewed, title=title, study=True)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return out


def build_rating_study(
    out_dir: str | Path,
    clips: list[StudyClip],
    predictions: dict[str, dict[str, np.ndarray]],
    faces: np.ndarray,
    camera: Camera,
    scale: str = "mos",
    n_clips: int = 10,
    criteria: tuple[str, ...] = ("lipsync", "naturalness"),
    reference: bool = False,
    n_repeats: int = 2,
    n_instructed: int = 1,
    seed: int = 0,
    size: int = 384,
    title: str = "Talking-face study",
    drawn: dict[str, dict[str, dict]] | None = None,
) -> Path:
    """One method's face per trial, rated per criterion on ``scale`` (mos: 1-5, likert: 1-7).

    Attention checks: ``n_repeats`` trials shown twice (``check: "repeat"``, ``repeat_of`` the first
    showing; a rater's two scores should agree) and ``n_instructed`` trials whose only question says
    which point to pick (``check: "instructed"``, ``expected`` that point). Both are left out of the
    MOS; raters failing them are excluded by the analysis. The ground truth is rated as a method
    ("ground-truth") so the scale has an anchor.
    """
    check_scale(scale, rating=True)
    criteria = rating_criteria(criteria)
    if reference and "style" not in criteria:
        criteria += ("style",)
    shared = set.intersection(*(set(p) for p in predictions.values())) if predictions else set()
    usable = [c for c in clips if c.name in shared]
    if not usable:
        raise TalkbenchError("the methods share no predicted test clip to rate")
    chosen = select_clips(usable, n_clips, seed)
    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    points = SCALES[scale]["points"]
    specs = [(clip, m, predictions[m][clip.name]) for clip in chosen for m in sorted(predictions)]
    specs += [(clip, "ground-truth", clip.vertices) for clip in chosen]
    rng.shuffle(specs)
    trials = []
    for i, (clip, method, verts) in enumerate(specs):
        trial_id = f"t{i + 1:03d}"
        panels = ([("Reference", clip.vertices)] if reference else []) + [("Rate", verts)]
        video = out / "videos" / f"{trial_id}.mp4"
        render_side_by_side(panels, faces, video, clip.fps, camera, clip.audio, clip.template, size)
        sample = (drawn or {}).get(method, {}).get(clip.name)
        trials.append(
            {
                "id": trial_id,
                "video": f"videos/{video.name}",
                "clip": clip.name,
                "subject": clip.subject,
                "method": method,
                "catch": False,
                "check": None,
                "expected": None,
                "criteria": list(criteria),
                **({"sample": sample} if sample else {}),
            }
        )
    originals = [t for t in trials if t["method"] != "ground-truth"] or trials
    extra = []
    for k, t in enumerate(rng.sample(originals, min(n_repeats, len(originals)))):  # same video again
        extra.append({**t, "id": f"r{k + 1:03d}", "check": "repeat", "repeat_of": t["id"]})
    for k in range(n_instructed):
        t = rng.choice(originals)
        extra.append(
            {
                **t,
                "id": f"a{k + 1:03d}",
                "check": "instructed",
                "expected": str(rng.randint(1, points)),
                "criteria": [ATTENTION],
            }
        )
    questions = {c: RATING_QUESTIONS[c] for c in criteria}
    for t in extra:
        if t["check"] == "instructed":  # its own question text: the point to pick
            questions[f"{ATTENTION}:{t['id']}"] = (
                f"To show you are paying attention, please answer {t['expected']} to this question."
            )
            t["criteria"] = [f"{ATTENTION}:{t['id']}"]
    trials += extra
    rng.shuffle(trials)
    manifest = {
        "title": title,
        "seed": seed,
        "design": "rating",
        "methods": sorted(predictions),
        "scale": {"name": scale, **SCALES[scale]},
        "criteria": list(criteria),
        "questions": questions,
        "reference": reference,
        "consent": CONSENT.replace(
            "pick, for each question, the left or the right face", "rate each face on a scale"
        ),
        "trials": trials,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return out


def make_study_from_runs(
    run_ids: list[str],
    out_dir: str | Path,
    n_clips: int = 10,
    seed: int = 0,
    criteria: tuple[str, ...] = ("lipsync", "realism"),
    reference: bool = False,
    size: int = 384,
    tracking_uri: str | None = None,
    viewer: bool = False,
    samples: int = 1,
    scale: str = "2afc",
    n_repeats: int = 2,
    n_instructed: int = 1,
) -> Path:
    """A study comparing the test predictions saved by tracked runs (all on the same dataset).

    A run of a method that samples shows, per clip, one of its first ``samples`` stored samples,
    drawn with ``seed`` (1: always sample 0, its prediction), so the ratings cover its distribution
    rather than one seed; each trial records which sample and its seed. ``scale`` "mos" or "likert"
    makes a rating study (:func:`build_rating_study`) instead of 2AFC."""
    from talkbench.render import camera_for
    from talkbench.runs import TrackedRun, run_labels, same_dataset

    check_scale(scale)  # before any run is read
    if scale != "2afc" and viewer:
        raise TalkbenchError("--viewer shows 2AFC trials only; a rating study plays MP4s")
    if len(set(run_ids)) < 2:
        raise TalkbenchError("bench study make needs at least two different --runs")
    runs = [TrackedRun.open(r, tracking_uri) for r in dict.fromkeys(run_ids)]
    same_dataset(runs)
    data = runs[0].dataset
    if data.spec.faces is None:
        raise TalkbenchError(f"dataset '{data.spec.name}' has no faces (triangles): cannot render a study")
    if samples < 1:
        raise TalkbenchError(f"--samples {samples}: expected at least 1 sample per clip")
    labels = run_labels(runs)
    clips, predictions = [], {label: {} for label in labels}
    drawn: dict[str, dict[str, dict]] = {label: {} for label in labels}
    pick = random.Random(seed)
    for clip in runs[0].test_clips:
        if not all(r.has_prediction(clip.name) for r in runs):
            continue
        clips.append(
            StudyClip(
                clip.name,
                clip.subject,
                clip.fps,
                np.asarray(clip.audio),
                np.asarray(clip.template),
                np.asarray(clip.vertices),
            )
        )
        for label, r in zip(labels, runs):
            if r.samples_per_clip > 1 and samples > 1:
                stored, seeds = r.samples(clip.name)
                k = pick.randrange(min(samples, len(stored)))
                predictions[label][clip.name] = stored[k]
                drawn[label][clip.name] = {"sample": k, "seed": seeds[k]}
            else:
                predictions[label][clip.name] = r.prediction(clip.name)
    if scale != "2afc":
        out = build_rating_study(
            out_dir,
            clips,
            predictions,
            data.spec.faces,
            camera_for(data.spec.name),
            scale,
            n_clips,
            criteria,
            reference,
            n_repeats,
            n_instructed,
            seed,
            size,
            title=f"Talking-face study ({data.spec.name})",
            drawn=drawn,
        )
    else:
        out = build_study(
            out_dir,
            clips,
            predictions,
            data.spec.faces,
            camera_for(data.spec.name),
            n_clips,
            criteria,
            reference,
            None,
            seed,
            size,
            title=f"Talking-face study ({data.spec.name})",
            viewer=viewer,
            drawn=drawn,
        )
    # which run each label shows, so the analysis can correlate metrics with preferences per clip
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["runs"] = {label: r.run_id for label, r in zip(labels, runs)}
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return out
