"""Convert the official VOCASET release to the prepared layout (specs/datasets.md §1.2), streaming.

``data_verts.npy`` (~7 GB) is memory-mapped; each sequence's rows are gathered, written and released
before the next, so memory stays at one sequence. Files are written to a temporary name and renamed,
so an interrupted run leaves no half-written clip.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from talkbench.datasets import atomic
from talkbench.datasets.io import load_pickle, load_templates
from talkbench.datasets.prepared import TEMPLATES, VERTS_DIR, WAV_DIR
from talkbench.errors import DataError

log = logging.getLogger("talkbench.datasets")

RELEASE_FILES = ("data_verts.npy", "raw_audio_fixed.pkl", "subj_seq_to_idx.pkl", "templates.pkl")


@dataclass
class PrepareReport:
    written: int = 0
    skipped_no_audio: list[str] = field(default_factory=list)
    out: Path | None = None


def _audio_entry(raw_audio: dict, subject: str, seq: str, path: Path) -> tuple[np.ndarray, int] | None:
    entry = raw_audio.get(subject, {}).get(seq)
    if entry is None:
        return None
    try:
        audio, rate = np.asarray(entry["audio"]), int(entry["sample_rate"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(
            f"{path}: entry {subject}/{seq} must be {{'audio': int16 array, 'sample_rate': int}}"
        ) from exc
    if audio.ndim != 1 or audio.size == 0:
        raise DataError(f"{path}: audio of {subject}/{seq} has shape {audio.shape}; expected non-empty 1-D")
    return audio, rate


def prepare_vocaset(raw: str | Path, out: str | Path, regions: str | Path | None = None) -> PrepareReport:
    """Write ``out/wav``, ``out/vertices_npy``, ``out/templates.pkl`` (+ FLAME_sample.ply if present).

    Region index files (lips, upper_face; not part of the release) are copied into ``out/regions``
    from ``regions`` or from ``raw/regions`` when present.
    """
    raw, out = Path(raw).expanduser(), Path(out).expanduser()
    missing = [f for f in RELEASE_FILES if not (raw / f).is_file()]
    if missing:
        raise DataError(
            f"{raw}: not a VOCASET release: missing {', '.join(missing)} "
            f"(expected {', '.join(RELEASE_FILES)} from voca.is.tue.mpg.de 'Training Data')"
        )
    verts_path = raw / "data_verts.npy"
    try:
        verts = np.load(verts_path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{verts_path}: unreadable ({exc}); expected float32 (N, 5023, 3)") from exc
    if verts.ndim != 3 or verts.shape[2] != 3:
        raise DataError(f"{verts_path}: shape {verts.shape}; expected (N_frames, V, 3)")
    templates = load_templates(raw / "templates.pkl")  # validates before anything is written
    if (v := next(iter(templates.values())).shape[0]) != verts.shape[1]:
        raise DataError(
            f"{raw / 'templates.pkl'}: templates have {v} vertices, {verts_path} has {verts.shape[1]}"
        )
    index = load_pickle(raw / "subj_seq_to_idx.pkl")
    raw_audio = load_pickle(raw / "raw_audio_fixed.pkl")
    if not isinstance(index, dict) or not isinstance(raw_audio, dict):
        raise DataError(
            f"{raw}: subj_seq_to_idx.pkl and raw_audio_fixed.pkl must hold dicts subject -> sequence"
        )

    (out / WAV_DIR).mkdir(parents=True, exist_ok=True)
    (out / VERTS_DIR).mkdir(parents=True, exist_ok=True)
    report = PrepareReport(out=out)
    for subject in sorted(index):
        if subject not in templates:
            raise DataError(
                f"{raw / 'subj_seq_to_idx.pkl'}: subject '{subject}' has no template in templates.pkl"
            )
        for seq in sorted(index[subject]):
            stem = f"{subject}_{seq}"
            audio = _audio_entry(raw_audio, subject, seq, raw / "raw_audio_fixed.pkl")
            if audio is None:
                # the reference conversion keeps only sequences with both audio and motion
                report.skipped_no_audio.append(stem)
                continue
            frames = index[subject][seq]
            rows = np.array([int(frames[k]) for k in sorted(frames, key=int)], dtype=np.int64)
            if rows.size == 0 or rows.min() < 0 or rows.max() >= verts.shape[0]:
                raise DataError(
                    f"{raw / 'subj_seq_to_idx.pkl'}: rows of {subject}/{seq} fall outside {verts_path} "
                    f"(0..{verts.shape[0] - 1})"
                )
            motion = np.asarray(verts[rows], dtype=np.float32).reshape(len(rows), -1)  # reads these rows only
            atomic.save_npy(out / VERTS_DIR / f"{stem}.npy", motion)
            samples, rate = audio
            if not np.issubdtype(samples.dtype, np.floating):
                samples = samples.astype(np.int16, copy=False)  # the release stores int16 PCM
            atomic.write_wav(out / WAV_DIR / f"{stem}.wav", samples, rate)
            report.written += 1
            del motion
    shutil.copyfile(raw / "templates.pkl", out / TEMPLATES)
    ply = next(
        (p for p in (raw / "FLAME_sample.ply", raw / "template" / "FLAME_sample.ply") if p.is_file()), None
    )
    if ply is not None:
        (out / "templates").mkdir(exist_ok=True)
        shutil.copyfile(ply, out / "templates" / "FLAME_sample.ply")
    region_dir = Path(regions).expanduser() if regions is not None else raw / "regions"
    if regions is not None and not region_dir.is_dir():
        raise DataError(f"{region_dir}: no such region directory")
    if region_dir.is_dir():
        (out / "regions").mkdir(exist_ok=True)
        for f in sorted([*region_dir.glob("*.npy"), *region_dir.glob("*.txt")]):
            shutil.copyfile(f, out / "regions" / f.name)
    if report.skipped_no_audio:
        log.warning(
            "%d sequences without audio were skipped: %s",
            len(report.skipped_no_audio),
            ", ".join(report.skipped_no_audio[:5]),
        )
    return report
