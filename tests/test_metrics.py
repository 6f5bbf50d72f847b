"""LVE / FDD / MVE: hand-worked values, an independent loop implementation, torchmetrics, misuse."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _shared import DATA

from talkbench.errors import DataError
from talkbench.metrics import fdd, lve, lve_frames, mve, upper_face_dynamics
from talkbench.metrics.core import check_indices
from talkbench.metrics.regions import load_region

REGIONS = str(DATA / "regions")


# ---------------------------------------------------------------- hand-worked values


def _hand_pair():
    """T=2, V=3; lips = {0, 1}, upper face = {2}; ground truth at the (zero) template except v2."""
    gt = np.zeros((2, 3, 3))
    gt[0, 2] = (0, 0, 3)
    gt[1, 2] = (0, 0, 1)
    pred = np.zeros((2, 3, 3))
    pred[0, 0] = (1, 0, 0)  # sq 1
    pred[0, 1] = (0, 2, 0)  # sq 4   -> frame 0 lip max 4
    pred[0, 2] = (0, 0, 3)  # equals gt: error 0 at v2, frame 0
    pred[1, 0] = (1, 1, 1)  # sq 3   -> frame 1 lip max 3
    pred[1, 1] = (0, 0, 1)  # sq 1
    pred[1, 2] = (0, 0, 0)  # error 1 against gt (0, 0, 1)
    return pred, gt


def test_lve_hand_value():
    pred, gt = _hand_pair()
    np.testing.assert_allclose(lve_frames(pred, gt, [0, 1]), [4.0, 3.0])
    assert lve(pred, gt, [0, 1]) == pytest.approx(3.5, rel=1e-12)


def test_mve_hand_value():
    pred, gt = _hand_pair()
    # frame 0: errors 1, 2, 0 -> mean 1; frame 1: sqrt 3, 1, 1 -> mean (2 + sqrt 3) / 3
    want = (1.0 + (2.0 + math.sqrt(3.0)) / 3.0) / 2.0
    assert mve(pred, gt) == pytest.approx(want, rel=1e-12)


def test_fdd_hand_value_signed():
    pred, gt = _hand_pair()
    tpl = np.zeros((3, 3))
    # gt v2 squared norms [9, 1] -> std 4; pred v2 [9, 0] -> std 4.5; fdd = 4 - 4.5
    assert upper_face_dynamics(gt, tpl, [2]) == pytest.approx(4.0)
    assert upper_face_dynamics(pred, tpl, [2]) == pytest.approx(4.5)
    assert fdd(pred, gt, tpl, [2]) == pytest.approx(-0.5, rel=1e-12)
    assert fdd(gt, pred, tpl, [2]) == pytest.approx(0.5, rel=1e-12)  # sign: positive = too still


def test_truncation_to_shorter_length():
    pred, gt = _hand_pair()
    longer = np.concatenate([pred, np.full((4, 3, 3), 100.0)])
    assert lve(longer, gt, [0, 1]) == pytest.approx(3.5)
    assert lve(pred, np.concatenate([gt, np.full((4, 3, 3), 9.0)]), [0, 1]) == pytest.approx(3.5)
    assert mve(longer, gt) == pytest.approx(mve(pred, gt))
    assert fdd(longer, gt, np.zeros((3, 3)), [2]) == pytest.approx(-0.5)


def test_flat_layout_and_torch_inputs_agree():
    pred, gt = _hand_pair()
    assert lve(pred.reshape(2, 9), gt.reshape(2, 9), [0, 1]) == pytest.approx(3.5)
    assert lve(torch.from_numpy(pred).float(), torch.from_numpy(gt).float(), torch.tensor([0, 1])) == 3.5


# ---------------------------------------------------------------- independent loop implementation


def _loop_lve(p, g, lips):
    t_n = min(len(p), len(g))
    total = 0.0
    for t in range(t_n):
        worst = -1.0
        for v in lips:
            s = sum((float(g[t][v][c]) - float(p[t][v][c])) ** 2 for c in range(3))
            worst = max(worst, s)
        total += worst
    return total / t_n


def _loop_mve(p, g):
    t_n = min(len(p), len(g))
    total, count = 0.0, 0
    for t in range(t_n):
        for v in range(len(g[t])):
            total += math.sqrt(sum((float(g[t][v][c]) - float(p[t][v][c])) ** 2 for c in range(3)))
            count += 1
    return total / count


def _loop_dyn(x, tpl, upper, t_n):
    out = []
    for v in upper:
        a = [sum((float(x[t][v][c]) - float(tpl[v][c])) ** 2 for c in range(3)) for t in range(t_n)]
        m = sum(a) / t_n
        out.append(math.sqrt(sum((ai - m) ** 2 for ai in a) / t_n))
    return sum(out) / len(out)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_loop_implementation(seed):
    rng = np.random.default_rng(seed)
    v_n = 25
    gt = rng.normal(size=(9, v_n, 3)).astype(np.float32)
    pred = rng.normal(size=(11, v_n, 3)).astype(np.float32)
    tpl = rng.normal(size=(v_n, 3)).astype(np.float32)
    lips = rng.choice(v_n, 6, replace=False)
    upper = rng.choice(v_n, 7, replace=False)
    assert lve(pred, gt, lips) == pytest.approx(_loop_lve(pred, gt, lips), rel=1e-6)
    assert mve(pred, gt) == pytest.approx(_loop_mve(pred, gt), rel=1e-6)
    want = _loop_dyn(gt, tpl, upper, 9) - _loop_dyn(pred, tpl, upper, 9)
    assert fdd(pred, gt, tpl, upper) == pytest.approx(want, rel=1e-6)


def test_lve_matches_torchmetrics():
    from torchmetrics.functional.multimodal import lip_vertex_error

    rng = np.random.default_rng(3)
    for t_pred, t_gt in [(20, 20), (23, 17), (12, 30)]:
        pred = torch.from_numpy(rng.normal(size=(t_pred, 40, 3)))
        gt = torch.from_numpy(rng.normal(size=(t_gt, 40, 3)))
        lips = sorted(rng.choice(40, 9, replace=False).tolist())
        want = float(lip_vertex_error(pred, gt, lips))
        assert lve(pred, gt, lips) == pytest.approx(want, rel=1e-6)


def test_duplicate_lip_ids_do_not_change_lve():
    # FLAME 'lips' has duplicates (254 entries, 250 unique): a max must be unaffected
    rng = np.random.default_rng(4)
    pred, gt = rng.normal(size=(2, 5, 30, 3))
    assert lve(pred, gt, [1, 2, 3, 3, 2]) == lve(pred, gt, [1, 2, 3])


# ---------------------------------------------------------------- misuse


def test_mismatched_vertex_counts():
    with pytest.raises(DataError, match="30 vertices but the ground truth has 31"):
        lve(np.zeros((4, 30, 3)), np.zeros((4, 31, 3)), [0])


def test_index_sets_out_of_range_and_empty():
    with pytest.raises(DataError, match=r"region 'lips'.*outside \[0, 10\)"):
        lve(np.zeros((4, 10, 3)), np.zeros((4, 10, 3)), [3, 10])
    with pytest.raises(DataError, match="outside"):
        fdd(np.zeros((4, 10, 3)), np.zeros((4, 10, 3)), np.zeros((10, 3)), [-1, 2])
    with pytest.raises(DataError, match="region 'lips' is empty"):
        lve(np.zeros((4, 10, 3)), np.zeros((4, 10, 3)), [])
    with pytest.raises(DataError, match="integer"):
        lve(np.zeros((4, 10, 3)), np.zeros((4, 10, 3)), [0.5, 1.0])


def test_nan_and_shape_errors():
    bad = np.zeros((4, 10, 3))
    bad[2, 5, 1] = np.nan
    with pytest.raises(DataError, match="prediction: contains NaN or inf .*frame 2"):
        mve(bad, np.zeros((4, 10, 3)))
    with pytest.raises(DataError, match=r"shape \(T, V, 3\)"):
        mve(np.zeros((4, 10, 2)), np.zeros((4, 10, 2)))
    with pytest.raises(DataError, match="no frames"):
        mve(np.zeros((0, 10, 3)), np.zeros((4, 10, 3)))
    with pytest.raises(DataError, match="template"):
        fdd(np.zeros((4, 10, 3)), np.zeros((4, 10, 3)), np.zeros((9, 3)), [1])


# ---------------------------------------------------------------- real BIWI region files


def test_biwi_region_files_load():
    lips = load_region(f"{REGIONS}/BIWI_lve.txt")
    upper = load_region(f"{REGIONS}/BIWI_fdd.txt")
    assert lips.size == 4996 and np.unique(lips).size == 4996
    assert upper.size == 7784 and np.unique(upper).size == 7784
    assert (lips.min(), lips.max()) == (2, 23339)
    assert (upper.min(), upper.max()) == (7, 23368)
    assert np.intersect1d(lips, upper).size == 0
    check_indices(lips, 23370, "lips")
    with pytest.raises(DataError, match="outside"):
        check_indices(upper, 23000, "upper_face")


def test_region_file_errors(tmp_path):
    (tmp_path / "bad.txt").write_text("1, 2, x")
    with pytest.raises(DataError, match="bad.txt"):
        load_region(tmp_path / "bad.txt")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataError, match="no vertex ids"):
        load_region(tmp_path / "empty.txt")
    with pytest.raises(DataError, match="does not exist"):
        load_region(tmp_path / "missing.txt")
