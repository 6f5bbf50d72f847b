"""A small moving clip, and a viewer folder's data files read back as the page reads them (shared by
the viewer tests)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np

from talkbench.viewer import Track, ViewerClip
from talkbench.viewer.data import decode_levels
from tests.study_fixtures import grid_face


def read_call(path: Path) -> list:
    """The JSON arguments of a data file's ``TalkbenchViewer.<name>(...)`` call."""
    text = path.read_text()
    match = re.fullmatch(r"TalkbenchViewer\.\w+\((.*)\);\n", text, re.S)
    assert match, text[:80]
    return json.loads(f"[{match.group(1)}]")


def decoded_track(folder: Path, clip_name: str, key: str) -> tuple[dict, np.ndarray]:
    """A written track read back as the page reads it: (clip meta, integer levels (T, V*3))."""
    manifest = read_call(folder / "data" / "manifest.js")[0]
    entry = next(c for c in manifest["clips"] if c["name"] == clip_name)
    meta = read_call(folder / entry["file"])[0]
    track = next(t for t in meta["tracks"] if t["key"] == key)
    name, got_key, data = read_call(folder / track["file"])
    assert (name, got_key) == (clip_name, key)
    return meta, decode_levels(base64.b64decode(data), meta["n_frames"], 3 * meta["n_vertices"])


def positions(meta: dict, levels: np.ndarray) -> np.ndarray:
    template = np.frombuffer(base64.b64decode(meta["template"]), "<f4").astype(np.float64)
    return (template[None] + levels * meta["step"]).reshape(len(levels), -1, 3)


def moving_clip(n_frames: int = 45, seconds: float | None = None, noise: float = 0.002) -> ViewerClip:
    template, faces = grid_face(10)
    rng = np.random.default_rng(0)
    t = np.arange(n_frames)[:, None, None] / 30
    truth = template[None] + 0.01 * np.sin(2 * np.pi * t + template[None, :, :1] * 20) * np.array([0, 1, 0.3])
    pred = truth + noise * rng.standard_normal(truth.shape)
    audio = rng.standard_normal(int(16_000 * (seconds or n_frames / 30))).astype(np.float32) * 0.05
    tracks = [Track("gt", "ground truth", truth), Track("a", "method A", pred[: n_frames - 3])]
    return ViewerClip("clip one", 30.0, template, faces, audio, tracks, truth="gt")
