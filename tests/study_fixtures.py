"""A small study folder built through the real renderer and study builder (shared by study tests)."""

from __future__ import annotations

import numpy as np

from talkbench.render import camera_for
from talkbench.study.make import StudyClip, build_study


def grid_face(n: int = 12, width: float = 0.15):
    u, v = np.meshgrid(np.linspace(-width / 2, width / 2, n), np.linspace(-0.09, 0.09, n))
    z = 0.04 * np.cos(u / width * np.pi) * np.cos(v / 0.18 * np.pi)
    verts = np.stack([u, v, z], -1).reshape(-1, 3).astype(np.float32)
    idx = np.arange(n * n).reshape(n, n)
    faces = np.concatenate(
        [
            np.stack([idx[:-1, :-1], idx[1:, :-1], idx[:-1, 1:]], -1).reshape(-1, 3),
            np.stack([idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]], -1).reshape(-1, 3),
        ]
    )
    return verts, faces


def make_small_study(out_dir, seed: int = 0, reference: bool = False, viewer: bool = False):
    template, faces = grid_face()
    rng = np.random.default_rng(seed)
    clips, preds = [], {"A": {}, "B": {}}
    for k, subject in enumerate(("S1", "S2")):
        t = 12
        motion = (
            0.01 * np.sin(np.arange(t) / 3 + k)[:, None, None] * rng.standard_normal((1, len(template), 3))
        )
        gt = (template[None] + motion).astype(np.float32)
        name = f"{subject}_sentence0{k + 1}"
        clips.append(
            StudyClip(name, subject, 30.0, rng.standard_normal(6400).astype(np.float32) * 0.1, template, gt)
        )
        preds["A"][name] = gt + 0.001
        preds["B"][name] = gt * 0 + template
    return build_study(
        out_dir,
        clips,
        preds,
        faces,
        camera_for("synthtalk"),
        n_clips=2,
        n_catch=1,
        seed=seed,
        size=96,
        reference=reference,
        viewer=viewer,
    )


def make_small_rating_study(out_dir, seed: int = 0, scale: str = "mos"):
    """Two methods on two clips, rated on lip-sync and naturalness, one repeat, one instructed trial."""
    from talkbench.study.make import build_rating_study

    template, faces = grid_face()
    rng = np.random.default_rng(seed)
    clips, preds = [], {"A": {}, "B": {}}
    for k, subject in enumerate(("S1", "S2")):
        gt = (template[None] + 0.01 * rng.standard_normal((8, len(template), 3))).astype(np.float32)
        name = f"{subject}_sentence0{k + 1}"
        clips.append(
            StudyClip(name, subject, 30.0, rng.standard_normal(4000).astype(np.float32) * 0.1, template, gt)
        )
        preds["A"][name] = gt + 0.001
        preds["B"][name] = np.repeat(template[None], len(gt), axis=0)
    return build_rating_study(
        out_dir,
        clips,
        preds,
        faces,
        camera_for("synthtalk"),
        scale,
        n_clips=2,
        criteria=("lip-sync", "naturalness"),
        n_repeats=1,
        n_instructed=1,
        seed=seed,
        size=64,
    )
