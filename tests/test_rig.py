"""The blendshape rig: linear shapes plus the lip closure, stored as plain arrays."""

from __future__ import annotations

import numpy as np
import pytest

from talkbench.datasets.rig import LipClosure, Rig, load_rig
from talkbench.errors import DataError


def _rig() -> Rig:
    # four vertices: an upper (0) and lower (1) lip pair, a vertex near each (2, 3)
    open_jaw = np.zeros((4, 3))
    open_jaw[[1, 3], 1] = -0.01  # the lower lip and its neighbour drop 1 cm
    press = np.zeros((4, 3))
    closure = LipClosure(1, np.array([0]), np.array([1]), np.array([0, 1, 3]), np.array([0, 0, 0]),
                         np.array([-1.0, 1.0, 0.5]))  # fmt: skip
    return Rig(("jawOpen", "mouthClose"), {"S1": np.stack([open_jaw, press])}, closure)


def test_decode_blends_then_closes_the_lips():
    rig = _rig()
    template = np.zeros((4, 3))
    opened = rig.decode(np.array([[1.0, 0.0]]), template, "S1")[0]
    assert opened[1, 1] == pytest.approx(-0.01) and opened[0, 1] == 0.0
    closed = rig.decode(np.array([[1.0, 1.0]]), template, "S1")[0]
    # both lips meet half-way; the neighbour follows half of its lip's correction
    assert closed[0, 1] == pytest.approx(-0.005) and closed[1, 1] == pytest.approx(-0.005)
    assert closed[3, 1] == pytest.approx(-0.01 + 0.5 * 0.005)
    half = rig.decode(np.array([[1.0, 0.5]]), template, "S1")[0]
    assert half[0, 1] - half[1, 1] == pytest.approx(0.005)  # half the gap left


def test_arrays_round_trip_and_bad_files(tmp_path):
    rig = _rig()
    np.savez(tmp_path / "rig.npz", **rig.to_arrays())
    back = load_rig(tmp_path / "rig.npz", 4)
    w = np.array([[0.7, 0.3], [0.2, 0.9]])
    np.testing.assert_allclose(
        back.decode(w, np.zeros((4, 3)), "S1"), rig.decode(w, np.zeros((4, 3)), "S1"), atol=1e-9
    )
    with pytest.raises(DataError, match="blendshapes of 4 vertices; the dataset's meshes have 5"):
        load_rig(tmp_path / "rig.npz", 5)
    with pytest.raises(DataError, match="no blendshapes for subject 'S2'"):
        rig.decode(w, np.zeros((4, 3)), "S2")
    with pytest.raises(DataError, match=r"weights of shape \(2, 3\); expected \(T, 2\)"):
        rig.decode(np.zeros((2, 3)), np.zeros((4, 3)), "S1")
