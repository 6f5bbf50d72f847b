"""SynthTalk: on-disk layout and schema, face topology, determinism, the cache, bad parameters."""

from __future__ import annotations

import errno
import importlib
import json
import logging
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from talkbench.datasets.synthtalk import PRESETS, cache_key, ensure_synthtalk, generate, speaker
from talkbench.datasets.synthtalk.articulation import animate, weights
from talkbench.datasets.synthtalk.blendshapes import fields
from talkbench.datasets.synthtalk.face import build_topology, grid_for, template
from talkbench.datasets.synthtalk.sentences import Segment
from talkbench.errors import ConfigError, DataError

CATEGORIES = {"bilabial", "labiodental", "vowel", "sibilant", "stop", "nasal", "liquid", "glide", "silence"}
REGIONS = ("lips", "upper_lip", "lower_lip", "upper_face", "jaw", "eyes", "brows", "forehead", "cheeks")


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def meta(synthtalk_tiny):
    return json.loads((synthtalk_tiny / "synthtalk.json").read_text())


def test_schema_and_splits(synthtalk_tiny, meta):
    assert meta["preset"] == "tiny" and meta["seed"] == 0 and meta["style_coupling"] == 0.8
    assert meta["fps"] == 30 and meta["capture_fps"] == 60 and meta["unit"] == "m"
    assert 180 <= meta["n_vertices"] <= 220
    split = meta["split"]
    assert [len(split[s]["subjects"]) for s in ("train", "val", "test")] == [4, 1, 1]
    assert split["train"]["sentences"] == [1, 6]
    assert split["val"]["sentences"] == split["test"]["sentences"] == [4, 6]
    assert meta["train_subjects"] == split["train"]["subjects"]
    names = [s for sp in split.values() for s in sp["subjects"]]
    assert len(set(names)) == 6 and all(re.fullmatch(r"SynthTalk_S\d\d", n) for n in names)
    assert set(meta["speakers"]) == set(names)
    for name, spk in meta["speakers"].items():
        assert spk["split"] in split and name in split[spk["split"]]["subjects"]
        assert set(spk["voice"]) >= {"f0_mean", "formant_scale", "rate", "breathiness"}
        assert set(spk["style"]) >= {
            "articulation_gain",
            "jaw_lip_ratio",
            "asymmetry",
            "stiffness",
            "brow_gain",
            "blink_rate",
        }
        assert len(spk["latent"]) >= 2
    assert set(meta["regions"]) >= set(REGIONS)


def test_files_are_consistent(synthtalk_tiny, meta):
    root = synthtalk_tiny
    V = meta["n_vertices"]
    with open(root / "templates.pkl", "rb") as f:
        templates = pickle.load(f)
    assert set(templates) == set(meta["speakers"])
    for t in templates.values():
        assert t.dtype == np.float32 and t.shape == (V, 3)
        width = t[:, 0].max() - t[:, 0].min()
        assert 0.11 < width < 0.19  # metres, a face about 0.15 m wide
    clips = sorted(p.stem for p in (root / "wav").glob("*.wav"))
    # train speakers: all 6 sentences; held-out speakers: sentences 4-6 only
    assert len(clips) == 4 * 6 + 2 * 3
    lengths = []
    for clip in clips:
        info = sf.info(root / "wav" / f"{clip}.wav")
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        verts = np.load(root / "vertices_npy" / f"{clip}.npy", mmap_mode="r")
        assert verts.dtype == np.float32 and verts.shape[1] == V * 3
        assert np.isfinite(verts).all()
        # 60 fps capture, exactly aligned with the audio
        assert verts.shape[0] * 16000 == info.frames * 60
        segs = json.loads((root / "alignments" / f"{clip}.json").read_text())
        assert segs["name"] == clip
        s = segs["segments"]
        assert s[0]["start"] == 0.0 and abs(s[-1]["end"] - info.frames / 16000) < 1e-4
        assert all(abs(a["end"] - b["start"]) < 1e-6 for a, b in zip(s, s[1:]))
        assert all(x["end"] > x["start"] and x["category"] in CATEGORIES for x in s)
        lengths.append(info.frames / 16000)
    assert 1.0 < np.mean(lengths) < 2.2  # ~1.5 s clips for tiny


def test_regions_and_mesh(synthtalk_tiny, meta):
    root = synthtalk_tiny
    V = meta["n_vertices"]
    reg = {n: np.load(root / "regions" / f"{n}.npy") for n in REGIONS}
    for n, ids in reg.items():
        assert ids.dtype == np.int64 and len(ids) > 0 and ids.min() >= 0 and ids.max() < V, n
    assert not set(reg["upper_face"]) & set(reg["lips"])
    assert set(reg["upper_face"]) == set(reg["eyes"]) | set(reg["brows"]) | set(reg["forehead"])
    assert set(reg["lips"]) == set(reg["upper_lip"]) | set(reg["lower_lip"])
    up, lo = meta["mouth_pair"]
    assert set(up) <= set(reg["upper_lip"]) and set(lo) <= set(reg["lower_lip"])
    faces = np.load(root / "faces.npy")
    assert faces.dtype == np.int64 and faces.shape[1] == 3
    assert np.array_equal(np.unique(faces), np.arange(V))  # every vertex is on the surface
    # no triangle spans the open mouth: none contains both an upper and a lower lip-edge vertex
    both = np.isin(faces, up).any(1) & np.isin(faces, lo).any(1)
    assert not both.any()
    # each edge belongs to at most two triangles (a manifold sheet)
    e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [0, 2]]]), axis=1)
    _, counts = np.unique(e, axis=0, return_counts=True)
    assert counts.max() <= 2
    tmpl = pickle.loads((root / "templates.pkl").read_bytes())[meta["train_subjects"][0]]
    area = 0.5 * np.linalg.norm(
        np.cross(tmpl[faces[:, 1]] - tmpl[faces[:, 0]], tmpl[faces[:, 2]] - tmpl[faces[:, 0]]), axis=1
    )
    assert area.min() > 0  # no degenerate triangles
    # the lips touch at rest: the mouth pair coincides in the template
    assert np.linalg.norm(tmpl[up].mean(0) - tmpl[lo].mean(0)) < 1e-6


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_vertex_counts(preset):
    topo = build_topology(*grid_for(PRESETS[preset].n_vertices))
    target = PRESETS[preset].n_vertices
    assert abs(topo.n_vertices - target) <= 0.02 * target
    if preset == "full":
        assert topo.n_vertices == 5023  # FLAME's size
    assert len(topo.mouth_upper) == len(topo.mouth_lower) >= 3


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_mouth_opens_and_closes_on_every_topology(preset):
    # /a m a/ on each preset's mesh (incl. the 5,023-vertex one that tests never write to disk)
    topo = build_topology(*grid_for(PRESETS[preset].n_vertices))
    spk = speaker(0, 0, 0.8)
    tmpl = template(topo, spk.shape)
    bounds = [("sil", 0.0, 0.2), ("a", 0.2, 0.38), ("m", 0.38, 0.47), ("a", 0.47, 0.65), ("sil", 0.65, 0.9)]
    cat = {"sil": "silence", "a": "vowel", "m": "bilabial"}
    segs = [Segment(s, cat[s], a, b) for s, a, b in bounds]
    w, closure = weights(segs, spk.style, 54, 60, np.random.default_rng(0))
    v = animate(tmpl, fields(topo, tmpl, spk.style.asymmetry), topo, w, closure)
    assert v.shape == (54, topo.n_vertices, 3) and np.isfinite(v).all()
    up, lo = topo.mouth_pair
    opening = np.linalg.norm(v[:, up].mean(1) - v[:, lo].mean(1), axis=1)
    assert opening[:6].max() < 1e-4  # at rest the lips touch
    assert opening[12:23].max() > 5e-3  # /a/ opens the mouth by several millimetres
    assert opening[23:29].min() < 3e-4  # /m/ closes it
    assert opening[29:39].max() > 5e-3


def test_deterministic_and_seed_dependent(synthtalk_tiny, tmp_path):
    again = generate(tmp_path / "again", preset="tiny", seed=0)
    a, b = _files(synthtalk_tiny), _files(again)
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []  # byte-identical
    other = generate(tmp_path / "seed1", preset="tiny", seed=1)
    m0 = json.loads(a["synthtalk.json"])
    m1 = json.loads((other / "synthtalk.json").read_text())
    for name in m0["speakers"]:
        assert m0["speakers"][name]["latent"] != m1["speakers"][name]["latent"]
        assert m0["speakers"][name]["voice"]["f0_mean"] != m1["speakers"][name]["voice"]["f0_mean"]
    t0 = pickle.loads(a["templates.pkl"])
    t1 = pickle.loads((other / "templates.pkl").read_bytes())
    assert all(not np.allclose(t0[k], t1[k]) for k in t0)
    clip = "wav/SynthTalk_S01_sentence01.wav"
    assert a[clip] != (other / clip).read_bytes()


def test_shared_and_speaker_specific_text(synthtalk_tiny):
    def phones(clip):
        segs = json.loads((synthtalk_tiny / "alignments" / f"{clip}.json").read_text())["segments"]
        return [s["phoneme"] for s in segs if s["phoneme"] != "sil"]

    # sentences 1-3 share their text across speakers (timing differs), 4-6 are speaker-specific
    assert phones("SynthTalk_S01_sentence02") == phones("SynthTalk_S03_sentence02")
    assert phones("SynthTalk_S01_sentence05") != phones("SynthTalk_S03_sentence05")
    assert phones("SynthTalk_S01_sentence01") != phones("SynthTalk_S01_sentence02")


def test_ensure_caches_by_parameters(synthtalk_tiny):
    path = ensure_synthtalk(preset="tiny", seed=0, style_coupling=0.8)
    assert path.name == cache_key("tiny", 0, 0.8) and (path / "synthtalk.json").is_file()
    assert _files(path) == _files(synthtalk_tiny)  # the same bytes as a direct generation
    stamp = (path / "synthtalk.json").stat().st_mtime_ns
    assert ensure_synthtalk(preset="tiny", seed=0, style_coupling=0.8) == path
    assert (path / "synthtalk.json").stat().st_mtime_ns == stamp  # reused, not regenerated
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp")]
    assert cache_key("tiny", 0, 0.5) != cache_key("tiny", 0, 0.8) != cache_key("tiny", 1, 0.8)


def _gen_module():
    # the package exports the function `generate`, which shadows its module of the same name
    return importlib.import_module("talkbench.datasets.synthtalk.generate")


def _tmp_folders(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".tmp")) if root.is_dir() else []


def test_full_disk_is_one_clear_error_and_leaves_nothing_behind(monkeypatch):
    gen = _gen_module()

    def full_disk(out, *args, **kwargs):
        (Path(out) / "wav").mkdir(parents=True, exist_ok=True)
        raise OSError(errno.ENOSPC, "No space left on device", str(Path(out) / "wav" / "x.wav"))

    monkeypatch.setattr(gen, "generate", full_disk)
    root = gen.cache_root()
    with pytest.raises(DataError, match=rf"cannot write the SynthTalk cache in {re.escape(str(root))}: "
                                        r"No space left on device .*x\.wav.*TALKBENCH_HOME"):  # fmt: skip
        gen.ensure_synthtalk("tiny", seed=5)
    assert not (root / gen.cache_key("tiny", 5, 0.8)).exists()  # no half-written dataset to be reused
    assert _tmp_folders(root) == []


def test_unwritable_home_is_one_clear_error(tmp_path, monkeypatch):
    """Tests run as root, where chmod does not stop writes: a home below a regular file cannot be made."""
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("TALKBENCH_HOME", str(tmp_path / "file" / "home"))
    with pytest.raises(DataError, match=r"cannot write the SynthTalk cache in .*file/home/synthtalk: Not a"):
        ensure_synthtalk("tiny", seed=0)


KILLED_GENERATION = """
import os, signal, sys
from talkbench.datasets.synthtalk import generate as _  # noqa
import importlib
gen = importlib.import_module("talkbench.datasets.synthtalk.generate")
real = gen.generate
def dies(out, *args, **kwargs):
    real(out, *args, progress=lambda done, total: done == 5 and os.kill(os.getpid(), signal.SIGKILL))
gen.generate = dies
gen.ensure_synthtalk("tiny", seed=7)
"""


def test_killed_generation_is_cleaned_by_the_next_and_live_ones_are_kept(tmp_path, monkeypatch, caplog):
    gen = _gen_module()
    monkeypatch.setenv("TALKBENCH_HOME", str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", KILLED_GENERATION], env=dict(os.environ), timeout=120)
    assert proc.returncode == -signal.SIGKILL
    root = gen.cache_root()
    (dead,) = _tmp_folders(root)  # what a SIGKILL leaves
    assert (root / dead / "dataset" / "wav").is_dir()
    # a live generation of this host (this process), one of another host still writing, and one of
    # another host idle for two hours
    live = gen._make_tmp(root / "tiny-seed8-x")
    elsewhere, idle = root / ".tmp-tiny-seed9-x-1-0", root / ".tmp-tiny-seed10-x-1-0"
    for folder in (elsewhere, idle):
        (folder / "dataset" / "wav").mkdir(parents=True)
        (folder / gen.OWNER_FILE).write_text(json.dumps({"host": "another-host", "pid": 1}))
    hours_ago = time.time() - 7200
    for path in (idle / "dataset" / "wav", idle / "dataset", idle):
        os.utime(path, (hours_ago, hours_ago))

    old_umask = os.umask(0o002)
    try:
        with caplog.at_level(logging.INFO, logger=gen.__name__):
            path = gen.ensure_synthtalk("tiny", seed=7)
    finally:
        os.umask(old_umask)
    assert (path / "synthtalk.json").is_file()
    assert _tmp_folders(root) == sorted([live.name, elsewhere.name])
    # the cache respects the umask (mkdtemp made it 0700)
    assert path.stat().st_mode & 0o777 == 0o775
    # first use reports clips generated out of the total; a cache hit says nothing
    total = gen.n_clips(gen.get_preset("tiny"))
    lines = [r.getMessage() for r in caplog.records]
    assert any(f"generating {total} clips" in line for line in lines)
    assert f"SynthTalk: {total}/{total} clips generated" in lines
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=gen.__name__):
        assert gen.ensure_synthtalk("tiny", seed=7) == path
    assert caplog.records == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"preset": "huge"}, r"preset.*'huge'.*tiny"),
        ({"preset": "tiny", "style_coupling": 1.5}, r"style_coupling.*\[0, 1\]"),
        ({"preset": "tiny", "style_coupling": "high"}, r"style_coupling.*\[0, 1\].*'high'"),
        ({"preset": "tiny", "style_coupling": float("nan")}, r"style_coupling.*\[0, 1\]"),
        ({"preset": "tiny", "seed": -1}, r"seed.*non-negative"),
    ],
)
def test_bad_parameters(tmp_path, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        generate(tmp_path / "x", **kwargs)
    with pytest.raises(ConfigError, match=match):
        ensure_synthtalk(**kwargs)


def test_refuses_non_empty_output(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        generate(tmp_path, preset="tiny")
    assert (tmp_path / "keep.txt").read_text() == "mine"
    with pytest.raises(ConfigError, match="not a directory"):
        generate(tmp_path / "keep.txt", preset="tiny")
