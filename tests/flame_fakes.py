"""A small FLAME-like model (50 vertices, FLAME's 5-joint tree) written as the documented .npz."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def fake_flame_arrays(
    n_vertices: int = 50, n_shape: int = 6, n_expression: int = 4, seed: int = 0, dtype=np.float64
) -> dict:
    rng = np.random.default_rng(seed)
    v, j = n_vertices, 5
    v_template = rng.normal(0.0, 0.05, (v, 3))
    weights = rng.random((v, j)) ** 3
    weights /= weights.sum(axis=1, keepdims=True)
    regressor = rng.random((j, v))
    regressor /= regressor.sum(axis=1, keepdims=True)
    return {
        "v_template": v_template.astype(dtype),
        "shapedirs": rng.normal(0.0, 1e-3, (v, 3, n_shape + n_expression)).astype(dtype),
        "posedirs": rng.normal(0.0, 1e-3, (v, 3, 9 * (j - 1))).astype(dtype),
        "J_regressor": regressor.astype(dtype),
        "weights": weights.astype(dtype),
        # FLAME's tree: global <- neck <- (jaw, left eye, right eye); the root's parent is a huge uint
        "kintree": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], np.int64),
        "faces": np.array([[i, i + 1, i + 2] for i in range(v - 2)], np.int64),
    }


def write_fake_flame(path: Path, **kw) -> Path:
    np.savez(path, **fake_flame_arrays(**kw))
    return path
