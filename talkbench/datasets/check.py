"""Validate a dataset directory: a summary when it is sound, otherwise EVERY problem found (not the first).

Unlike the loader (which stops at the first bad clip of a split), this reads every file once: all
WAVs are decoded and all vertex frames (at the capture rate) are checked for NaN/inf.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from talkbench.audio.signal import read_audio_raw
from talkbench.datasets import biwi, mead, multiface, synthtalk_loader, vocaset
from talkbench.datasets.io import load_index_file, load_templates
from talkbench.datasets.prepared import (
    TEMPLATES,
    VERTS_DIR,
    WAV_DIR,
    ClipRef,
    find_pairs,
    finite_problem,
    motion_frames,
    probe_clip,
)
from talkbench.datasets.spec import DatasetSpec, Split
from talkbench.errors import ConfigError, DataError, TalkbenchError

KINDS = ("synthtalk", "vocaset", "biwi", "multiface", "3dmead", "prepared")
# (fps, capture fps) assumed when a dataset's own spec cannot be built
RATES = {"biwi": (25.0, 25.0), "multiface": (30.0, 30.0), "3dmead": (25.0, 25.0)}


@dataclass
class CheckResult:
    root: Path
    kind: str
    summary: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, problem: str) -> None:
        if problem not in self.problems:
            self.problems.append(problem)

    def format(self) -> str:
        lines = [f"{self.root} ({self.kind})"]
        lines += [f"  {k}: {v}" for k, v in self.summary.items()]  # of the clips that passed
        lines += [f"  note: {n}" for n in self.notes]
        if self.problems:
            lines.append(f"{len(self.problems)} problem(s):")
            lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


def detect_kind(root: Path, templates: dict | None) -> str:
    if (root / synthtalk_loader.META_FILE).is_file():
        return "synthtalk"
    if (root / multiface.META_FILE).is_file():
        return "multiface"
    if (root / mead.META_FILE).is_file():
        return "3dmead"
    keys = set(templates or ())
    if any(k.startswith("FaceTalk_") for k in keys):
        return "vocaset"
    if keys and keys <= set(biwi.TRAIN_SUBJECTS + biwi.TEST_B_SUBJECTS):
        return "biwi"
    if keys and keys <= set(multiface.TRAIN_SUBJECTS + multiface.UNSEEN_SUBJECTS):
        return "multiface"
    if keys and keys <= set(mead.SUBJECT_SETS["benchmark"]):
        return "3dmead"
    return "prepared"


def _spec(root: Path, kind: str, templates: dict, result: CheckResult) -> DatasetSpec:
    """The dataset's full spec (regions, faces, splits) or, when that fails, a bare one to probe clips."""
    try:
        if kind == "synthtalk":
            return synthtalk_loader.build_spec(root, templates, synthtalk_loader.read_meta(root))
        if kind == "vocaset":
            return vocaset.build_spec(root, templates)
        if kind == "biwi":
            return biwi.build_spec(root, templates, "codetalker")
        if kind == "multiface":
            return multiface.build_spec(root, templates)
        if kind == "3dmead":
            return mead.build_spec(root, templates)
    except TalkbenchError as exc:
        result.add(str(exc))
    fps, capture = RATES.get(kind, (30.0, 60.0))
    if kind == "synthtalk":
        try:
            meta = json.loads((root / synthtalk_loader.META_FILE).read_text())
            fps, capture = float(meta["fps"]), float(meta["capture_fps"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    if kind == "prepared":
        result.notes.append("unknown dataset kind: assumed 60 fps capture loaded at 30 fps like VOCASET")
    n_vertices = next(iter(templates.values())).shape[0] if templates else 0
    pattern = mead.CLIP_PATTERN if kind == "3dmead" else None
    return DatasetSpec(kind, fps, n_vertices, {}, (), capture_fps=capture, clip_pattern=pattern)


def check_dataset(root: str | Path, kind: str | None = None) -> CheckResult:
    """Check everything under ``root``; ``kind`` (synthtalk|vocaset|biwi|prepared) is detected if None."""
    if kind is not None and kind not in KINDS:
        raise ConfigError(f"unknown dataset kind '{kind}'; expected one of {', '.join(KINDS)}")
    root = Path(root).expanduser()
    result = CheckResult(root, kind or "?")
    if not root.is_dir():
        result.add(f"{root}: no such directory")
        return result
    for sub in (WAV_DIR, VERTS_DIR):
        if not (root / sub).is_dir():
            result.add(f"{root / sub}: missing directory")
    templates: dict[str, np.ndarray] = {}
    try:
        templates = load_templates(root / TEMPLATES)
    except DataError as exc:
        result.add(str(exc))
    result.kind = kind or detect_kind(root, templates)
    if not (root / WAV_DIR).is_dir() or not (root / VERTS_DIR).is_dir() or not templates:
        return result
    spec = _spec(root, result.kind, templates, result)
    _check_region_files(root, spec.n_vertices, result)

    pairs, wav_only, npy_only = find_pairs(root)
    if wav_only:
        result.notes.append(
            f"{len(wav_only)} WAV files without a vertex file are ignored (e.g. {wav_only[0].name})"
        )
    if npy_only:
        result.notes.append(
            f"{len(npy_only)} vertex files without a WAV are ignored (e.g. {npy_only[0].name})"
        )
    if not pairs:
        result.add(f"{root}: no clips (no wav/<name>.wav with a matching vertices_npy/<name>.npy)")
    refs: list[ClipRef] = []
    rates: Counter[int] = Counter()
    for stem, (wav, npy) in pairs.items():
        ref, problems = probe_clip(stem, wav, npy, templates, spec)
        for p in problems:
            result.add(p)
        if ref is None:
            continue
        try:
            audio, rate = read_audio_raw(wav)
            rates[rate] += 1
        except DataError as exc:
            result.add(str(exc))
            continue
        arr = np.load(npy, mmap_mode="r")
        bad = finite_problem(npy, np.asarray(arr), spec.capture_fps or spec.fps) or _rate_problem(
            npy, motion_frames(arr.shape[0], spec.stride), len(audio) / rate, spec
        )
        if bad:
            result.add(bad)
            continue
        refs.append(ref)
    _check_splits(spec, refs, result)
    _summarise(spec, refs, rates, result)
    return result


def _rate_problem(npy: Path, n_motion: int, audio_s: float, spec: DatasetSpec) -> str | None:
    """Motion far shorter than its audio: most likely captured at a lower rate than the dataset's.
    (Motion far longer is reported by probe_clip as audio too short.) The loader tolerates it and
    keeps the motion's length; a check flags it."""
    motion_s = n_motion / spec.fps
    if motion_s >= audio_s - max(0.5, 0.25 * audio_s):
        return None
    rate = (spec.capture_fps or spec.fps) * motion_s / audio_s
    return (
        f"{npy}: {n_motion} frames last {motion_s:.2f} s at {spec.fps:g} fps but its audio lasts "
        f"{audio_s:.2f} s; "
        f"expected motion at {spec.capture_fps or spec.fps:g} fps (this looks like ~{rate:.0f} fps)"
    )


def _check_region_files(root: Path, n_vertices: int, result: CheckResult) -> None:
    for f in sorted([*root.glob("regions/*.npy"), *root.glob("regions/*.txt"), *root.glob("range/*.npy")]):
        try:
            load_index_file(f, n_vertices)
        except DataError as exc:
            result.add(str(exc))
    faces = root / "faces.npy"
    if faces.is_file():
        try:
            load_index_file(faces, n_vertices)
        except DataError as exc:
            result.add(str(exc))


def _check_splits(spec: DatasetSpec, refs: list[ClipRef], result: CheckResult) -> None:
    present = {(r.subject, r.sentence, r.group) for r in refs}
    subjects = {r.subject for r in refs}
    for name, split in spec.splits.items():
        missing = [s for s in split.subjects if s not in subjects]
        if missing:
            result.notes.append(f"split '{name}': no clips for {', '.join(missing)}")
        if not any(split.contains(*name) for name in present):
            result.add(f"{result.root}: split '{name}' has no clips ({_describe(split)})")
    if spec.splits:
        unused = sorted(s for s in subjects if not any(s in sp.subjects for sp in spec.splits.values()))
        if unused:
            result.notes.append(f"subjects in no split: {', '.join(unused)}")


def _describe(split: Split) -> str:
    rng = (
        "all sentences" if split.sentences is None else f"sentences {split.sentences[0]}-{split.sentences[1]}"
    )
    groups = "".join(f", group {g}: {lo}-{hi}" for g, lo, hi in split.by_group)
    return f"{len(split.subjects)} subjects, {rng}{groups}"


def _summarise(spec: DatasetSpec, refs: list[ClipRef], rates: Counter, result: CheckResult) -> None:
    if not refs:
        return
    secs = np.array([r.n_frames / spec.fps for r in refs])
    subjects = sorted({r.subject for r in refs})
    s = result.summary
    s["subjects"] = f"{len(subjects)} ({', '.join(subjects[:6])}{' ...' if len(subjects) > 6 else ''})"
    s["clips"] = len(refs)
    s["frames"] = int(sum(r.n_frames for r in refs))
    s["fps"] = f"{spec.fps:g} (captured at {spec.capture_fps or spec.fps:g}, stride {spec.stride})"
    s["vertices"] = spec.n_vertices
    s["durations"] = (
        f"total {secs.sum():.1f} s, min {secs.min():.2f} s, mean {secs.mean():.2f} s, max {secs.max():.2f} s"
    )
    s["audio rates"] = ", ".join(f"{r} Hz x{n}" for r, n in sorted(rates.items()))
    if any(r != 16000 for r in rates):
        result.notes.append("audio not at 16 kHz is resampled on load")
    for name, split in spec.splits.items():
        s[f"split {name}"] = (
            f"{sum(split.contains(r.subject, r.sentence, r.group) for r in refs)} clips ({_describe(split)})"
        )
    s["regions"] = ", ".join(f"{k} ({len(v)})" for k, v in spec.regions.items()) or "none"
    if spec.faces is not None:
        s["faces"] = len(spec.faces)
