"""FLAME from a safe .npz and its linear blend skinning, against a direct per-vertex computation."""

from __future__ import annotations

import numpy as np
import pytest
from flame_fakes import fake_flame_arrays, write_fake_flame
from scipy.spatial.transform import Rotation

from talkbench.datasets.flame import flame_vertices, load_flame, rodrigues
from talkbench.errors import DataError

N_SHAPE = 6


def reference_vertices(a: dict, shape, expression, pose) -> np.ndarray:
    """One frame, written out joint by joint and vertex by vertex (SciPy's rotations)."""
    coeffs = np.concatenate([shape, expression])
    shaped = a["v_template"] + a["shapedirs"][:, :, : len(coeffs)] @ coeffs
    joints = a["J_regressor"] @ shaped
    rots = [Rotation.from_rotvec(p).as_matrix() for p in pose.reshape(-1, 3)]
    feature = np.concatenate([(r - np.eye(3)).ravel() for r in rots[1:]])
    posed = shaped + a["posedirs"] @ feature
    parents = [-1, 0, 1, 1, 1]
    world = []
    for j, r in enumerate(rots):
        m = np.eye(4)
        m[:3, :3] = r
        m[:3, 3] = joints[j] - (joints[parents[j]] if parents[j] >= 0 else 0)
        world.append(m if parents[j] < 0 else world[parents[j]] @ m)
    out = np.zeros_like(posed)
    for i in range(len(posed)):
        acc = np.zeros(3)
        for j in range(5):
            # move to the joint's rest frame, then apply its world transform
            local = np.append(posed[i] - joints[j], 1.0)
            acc += a["weights"][i, j] * (world[j] @ local)[:3]
        out[i] = acc
    return out


def test_lbs_matches_the_direct_computation(tmp_path):
    a = fake_flame_arrays(n_shape=N_SHAPE)
    model = load_flame(write_fake_flame(tmp_path / "flame.npz", n_shape=N_SHAPE), n_shape=N_SHAPE)
    rng = np.random.default_rng(1)
    t = 3
    shape = rng.normal(size=N_SHAPE)
    expression = rng.normal(size=(t, 4))
    pose = rng.normal(0, 0.3, size=(t, 15))
    got = flame_vertices(model, shape, expression, pose)
    assert got.shape == (t, 50, 3)
    for k in range(t):
        np.testing.assert_allclose(got[k], reference_vertices(a, shape, expression[k], pose[k]), atol=1e-12)
    # no motion parameters: the template itself
    np.testing.assert_allclose(flame_vertices(model)[0], a["v_template"], atol=1e-15)
    # the jaw (joint 2) moves only what it weighs on; frames are independent of chunking
    jaw = np.zeros((70, 15))
    jaw[:, 6] = np.linspace(0, 0.4, 70)
    moved = flame_vertices(model, pose=jaw)
    np.testing.assert_allclose(moved[-1], flame_vertices(model, pose=jaw[-1:])[0], atol=1e-14)


def test_rodrigues_matches_scipy():
    v = np.random.default_rng(2).normal(size=(20, 3))
    np.testing.assert_allclose(rodrigues(v), Rotation.from_rotvec(v).as_matrix(), atol=1e-12)
    np.testing.assert_allclose(rodrigues(np.zeros(3)), np.eye(3))


def test_bad_model_files_are_named(tmp_path):
    with pytest.raises(DataError, match=r"generic_model\.pkl.*not read"):
        load_flame(tmp_path / "generic_model.pkl")
    a = fake_flame_arrays()
    del a["posedirs"]
    np.savez(tmp_path / "m.npz", **a)
    with pytest.raises(DataError, match=r"m\.npz: missing arrays posedirs"):
        load_flame(tmp_path / "m.npz")
    a = fake_flame_arrays()
    a["weights"] = a["weights"][:, :4]
    np.savez(tmp_path / "w.npz", **a)
    with pytest.raises(DataError, match=r"w\.npz: weights has shape \(50, 4\); expected \(50, 5\)"):
        load_flame(tmp_path / "w.npz")
    a = fake_flame_arrays()
    a["faces"] = np.array([["a", "b", "c"]], dtype=object)
    np.savez(tmp_path / "o.npz", **a)
    with pytest.raises(DataError, match=r"o\.npz: not a readable .npz"):
        load_flame(tmp_path / "o.npz", n_shape=6)
