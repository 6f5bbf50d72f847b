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


# ------------------------------------------------------------------------------ Multiface and 3DMEAD
MULTIFACE_FOLDERS = ("m--20180105--0000--002757580--GHS", "m--20180226--0000--6674443--GHS",
                     "m--20180227--0000--6795937--GHS")  # fmt: skip


def make_multiface_release(raw: Path, frames: int = 9, seed: int = 0) -> Path:
    """Three Multiface subject folders (numbered 1, 2, 3: one unseen, two training subjects) with
    7306-vertex .bin frames in millimetres, 48 kHz audio, meshtalk's vertex map, masks and faces."""
    from talkbench.datasets import prepare_multiface as pm

    rng = np.random.default_rng(seed)
    n_raw, n = pm.N_RAW_VERTICES, pm.N_VERTICES
    keep = np.sort(rng.choice(n_raw, n, replace=False))
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "vertex_map.txt").write_text(", ".join(map(str, keep)))
    base = rng.uniform(pm.BOX_MIN + 20, pm.BOX_MAX - 20, (n_raw, 3)).astype(np.float32)
    sentences = {1: (46,), 2: (1, 41, 46), 3: (1, 41, 46)}
    for index, folder in enumerate(MULTIFACE_FOLDERS, 1):
        for sid in sentences[index]:
            name = f"SEN_{pm.SENTENCES[sid - 1]}"
            seq = raw / folder / "tracked_mesh" / name
            seq.mkdir(parents=True)
            for t in range(frames):
                frame = base + 2.0 * np.sin(t / 3 + index) * rng.standard_normal((n_raw, 3))
                frame.astype(np.float32).tofile(seq / f"{21000 + t:06d}.bin")
            (raw / folder / "audio").mkdir(exist_ok=True)
            audio = 0.2 * np.sin(np.arange(int(frames / 30 * 48000)) * 0.05 * (index + sid))
            sf.write(raw / folder / "audio" / f"{name}.wav", audio, 48000, subtype="PCM_16")
    # a take that is not one of the 50 sentences (an expression): skipped
    (raw / MULTIFACE_FOLDERS[1] / "tracked_mesh" / "EXP_jaw_open").mkdir()
    regions = raw / "regions"
    regions.mkdir()
    mouth, forehead = np.zeros(n), np.zeros(n)
    mouth[:40], mouth[40:60] = 0.5, 0.05  # 40 vertices above the 0.1 threshold
    forehead[100:130], forehead[130:160] = 0.9, 0.3  # 30 above 0.4
    (regions / "weighted_mouth_mask.txt").write_text("\n".join(f"{x:.3f}" for x in mouth) + "\n")
    (regions / "forehead_mask.txt").write_text("\n".join(f"{x:.3f}" for x in forehead) + "\n")
    (raw / "face_template.obj").write_text("v 0 0 0\nf 1/1/1 2/2/2 3/3/3\nf 2 3 4 5\n")
    return raw


def make_3dmead_release(raw: Path, flame_path: Path, frames: int = 10, seed: int = 0) -> dict:
    """ProbTalk3D's prepared 3DMEAD (param/, wav/, regions/) for two subjects, and a FLAME-sized fake
    model (5023 vertices, 300 shape + 10 expression components) at ``flame_path``."""
    from flame_fakes import write_fake_flame

    rng = np.random.default_rng(seed)
    write_fake_flame(flame_path, n_vertices=5023, n_shape=300, n_expression=10, dtype=np.float32)
    # neutral train/val/test, an emotional train and an emotional test take per subject
    takes = ("001_0_0", "033_0_0", "037_0_0", "005_3_1", "028_2_2")
    keys = [f"{s}_{k}" for s in ("M003", "W009") for k in takes]
    (raw / "param").mkdir(parents=True)
    (raw / "wav").mkdir()
    params = {}
    for i, key in enumerate(keys):
        p = np.zeros((1, frames, 403), np.float32)
        p[0, :, :300] = rng.normal(0, 1, 300)  # one identity per take (zero-shape protocol drops it)
        p[0, :, 300:400] = rng.normal(0, 1, (frames, 100))
        p[0, :, 400] = np.linspace(0, 0.3, frames)  # the jaw opens
        np.save(raw / "param" / f"{key}.npy", p)
        params[key] = p
        audio = 0.2 * np.sin(np.arange(int(frames / 25 * 16000)) * 0.03 * (i + 1))
        sf.write(raw / "wav" / f"{key}.wav", audio, 16000, subtype="PCM_16")
    (raw / "regions").mkdir()
    (raw / "regions" / "lve.txt").write_text(", ".join(map(str, range(0, 5023, 12))))
    (raw / "regions" / "fdd.txt").write_text(", ".join(map(str, range(5, 5023, 4))))
    return params
