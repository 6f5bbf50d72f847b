"""Small datasets in the real prepared layout, written by tests (no generator, no real data needed)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import soundfile as sf

from talkbench.datasets import vocaset


def write_clip(
    root: Path,
    stem: str,
    template: np.ndarray,
    seconds: float,
    capture_fps: float = 60,
    sample_rate: int = 16000,
    audio_seconds: float | None = None,
    seed: int = 0,
) -> None:
    """One wav + vertices_npy pair: a sine tone and template + a smooth per-clip displacement."""
    rng = np.random.default_rng(seed)
    (root / "wav").mkdir(parents=True, exist_ok=True)
    (root / "vertices_npy").mkdir(parents=True, exist_ok=True)
    n_audio = int(round((seconds if audio_seconds is None else audio_seconds) * sample_rate))
    t = np.arange(n_audio) / sample_rate
    audio = 0.3 * np.sin(2 * np.pi * (120 + 40 * rng.random()) * t)
    sf.write(root / "wav" / f"{stem}.wav", audio, sample_rate, subtype="PCM_16")
    n = int(round(seconds * capture_fps))
    phase = np.sin(np.arange(n) / capture_fps * 2 * np.pi * 3)[:, None, None]
    verts = template[None] + 1e-3 * phase * rng.standard_normal(template.shape)[None]
    np.save(root / "vertices_npy" / f"{stem}.npy", verts.reshape(n, -1).astype(np.float32))


def write_templates(root: Path, templates: dict[str, np.ndarray], protocol: int = 2) -> None:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "templates.pkl", "wb") as f:
        pickle.dump(templates, f, protocol=protocol)


def make_synthlike(
    root: Path,
    n_vertices: int = 30,
    train: tuple[str, ...] = ("Fake_S01", "Fake_S02", "Fake_S03"),
    val: tuple[str, ...] = ("Fake_S04",),
    test: tuple[str, ...] = ("Fake_S05",),
    sentences: int = 4,
    seconds: float = 0.5,
    seed: int = 0,
) -> Path:
    """A SynthTalk-schema dir (synthtalk.json, regions/, faces.npy) with varied clip lengths."""
    rng = np.random.default_rng(seed)
    subjects = train + val + test
    templates = {s: rng.standard_normal((n_vertices, 3)).astype(np.float32) * 0.05 for s in subjects}
    write_templates(root, templates)
    k = 0
    for s in subjects:
        for j in range(1, sentences + 1):
            write_clip(root, f"{s}_sentence{j:02d}", templates[s], seconds + 0.1 * (k % 3), seed=k)
            k += 1
    (root / "regions").mkdir(exist_ok=True)
    np.save(root / "regions" / "lips.npy", np.arange(0, 10, dtype=np.int64))
    np.save(root / "regions" / "upper_face.npy", np.arange(20, n_vertices, dtype=np.int64))
    np.save(root / "faces.npy", np.array([[0, 1, 2], [2, 3, 4]], np.int64))
    meta = {
        "generator_version": "fake",
        "preset": "fake",
        "seed": seed,
        "style_coupling": 0.8,
        "params": {},
        "fps": 30,
        "capture_fps": 60,
        "n_vertices": n_vertices,
        "unit": "m",
        "split": {
            "train": {"subjects": list(train), "sentences": [1, sentences]},
            "val": {"subjects": list(val), "sentences": [2, sentences]},
            "test": {"subjects": list(test), "sentences": [2, sentences]},
        },
        "train_subjects": list(train),
        "mouth_pair": [[3], [7]],
        "speakers": {s: {"split": "train"} for s in subjects},
        "regions": ["lips", "upper_face"],
    }
    (root / "synthtalk.json").write_text(json.dumps(meta))
    return root


def make_vocaset_like(root: Path, sentences: tuple[int, ...] = (1, 21), seconds: float = 0.3) -> Path:
    """Prepared VOCASET with the real subject ids and 5023 vertices, a couple of sentences each."""
    rng = np.random.default_rng(1)
    subjects = vocaset.TRAIN_SUBJECTS + vocaset.VAL_SUBJECTS + vocaset.TEST_SUBJECTS
    base = rng.standard_normal((vocaset.N_VERTICES, 3)).astype(np.float32) * 0.05
    templates = {s: base + 1e-3 * i for i, s in enumerate(subjects)}
    write_templates(root, templates)
    for i, s in enumerate(subjects):
        for j in sentences:
            write_clip(
                root, f"{s}_sentence{j:02d}", templates[s], seconds, sample_rate=22000, seed=i * 50 + j
            )
    (root / "range").mkdir(exist_ok=True)
    np.save(root / "range" / "lips_coordinates.npy", np.array([3546, 3504, 3504, 10, 11], np.int64))
    (root / "regions").mkdir(exist_ok=True)
    np.save(root / "regions" / "upper_face.npy", np.arange(100, 200, dtype=np.int64))
    return root


def make_release(raw, n_vertices: int = 5023) -> dict:
    """A tiny release: 3 subjects, 2-3 sequences, frames shuffled across data_verts, int16 22 kHz audio."""
    rng = np.random.default_rng(3)
    all_subjects = vocaset.TRAIN_SUBJECTS + vocaset.VAL_SUBJECTS + vocaset.TEST_SUBJECTS
    subjects = all_subjects[:2] + all_subjects[-1:]
    seqs = {
        subjects[0]: ["sentence01", "sentence02"],
        subjects[1]: ["sentence21"],
        subjects[2]: ["sentence21", "sentence22"],
    }
    lengths = {(s, q): 12 + 6 * i for i, (s, q) in enumerate((s, q) for s in subjects for q in seqs[s])}
    total = sum(lengths.values())
    rows = rng.permutation(total)
    verts = rng.standard_normal((total, n_vertices, 3)).astype(np.float32) * 0.01
    raw.mkdir(parents=True, exist_ok=True)
    np.save(raw / "data_verts.npy", verts)
    index, audio, pos = {}, {}, 0
    for (s, q), n in lengths.items():
        frames = {k: int(rows[pos + k]) for k in range(n)}
        index.setdefault(s, {})[q] = dict(sorted(frames.items(), key=lambda kv: -kv[0]))  # unsorted keys
        pos += n
        samples = (rng.standard_normal(int(n / 60 * 22000)) * 3000).astype(np.int16)
        audio.setdefault(s, {})[q] = {"audio": samples, "sample_rate": 22000}
    # one sequence with motion but no audio: the reference conversion skips it
    index[subjects[0]]["sentence03"] = {0: 0, 1: 1}
    templates = {s: rng.standard_normal((n_vertices, 3)).astype(np.float32) for s in subjects}
    for name, obj in (
        ("subj_seq_to_idx.pkl", index),
        ("raw_audio_fixed.pkl", audio),
        ("templates.pkl", templates),
    ):
        (raw / name).write_bytes(pickle.dumps(obj, protocol=2))
    return {"verts": verts, "index": index, "audio": audio, "lengths": lengths}
