"""The timing-tolerant lip metrics (metrics/timing.py): DTW removes a pure time shift within its band,
a band of 0 is the plain metric, and the evaluator logs them next to LVE."""

from __future__ import annotations

import numpy as np
import pytest

from talkbench.metrics import timing
from talkbench.metrics.core import lve_frames
from talkbench.metrics.registry import metric_info


def _speech_like(rng, n_frames=80, n_verts=6, still=8):
    """Lip vertices that move in the middle and rest at both ends (silence before and after)."""
    v = np.zeros((n_frames, n_verts, 3))
    t = np.arange(n_frames - 2 * still)
    v[still : n_frames - still] = np.sin(t[:, None, None] * rng.uniform(0.2, 0.6, (1, n_verts, 3)))
    return v


def _shift(v: np.ndarray, k: int) -> np.ndarray:
    """The prediction k frames late (k > 0) or early: a pure time shift, edges held."""
    idx = np.clip(np.arange(len(v)) - k, 0, len(v) - 1)
    return v[idx]


@pytest.mark.parametrize("k", [-3, -1, 1, 2, 3])
def test_dtw_lip_error_is_zero_for_a_shift_within_the_window(k):
    gt = _speech_like(np.random.default_rng(0))
    late = _shift(gt, k)
    assert lve_frames(late, gt, np.arange(6)).mean() > 0.01  # the plain LVE sees the offset
    assert timing.lve_dtw(late, gt, window=3) == pytest.approx(0.0, abs=1e-15)
    if abs(k) > 1:  # a band narrower than the shift cannot undo it
        assert timing.lve_dtw(late, gt, window=abs(k) - 1) > 0.0


def test_dtw_lip_error_without_shift_equals_the_plain_lip_error():
    rng = np.random.default_rng(1)
    gt = _speech_like(rng)
    pred = gt + rng.normal(scale=0.05, size=gt.shape)
    plain = lve_frames(pred, gt, np.arange(6)).mean()
    assert timing.lve_dtw(pred, gt, window=0) == pytest.approx(plain, rel=1e-12)
    warped = timing.lve_dtw(pred, gt, window=3)
    assert warped <= plain + 1e-12  # the diagonal is one of the paths DTW chooses from


def test_opening_curve_distance_and_its_dtw():
    t = np.arange(60)
    gt = np.where((t > 10) & (t < 50), 1 + np.sin(t / 3), 1.0)
    late = gt[np.clip(t - 2, 0, 59)]
    assert timing.lip_open_dtw(late, gt, 3) == pytest.approx(0.0, abs=1e-15)
    assert timing.lip_open_dtw(late, gt, 0) == pytest.approx(np.abs(late - gt).mean())


def test_window_follows_the_frame_rate_and_bad_windows_are_refused():
    assert timing.dtw_window(30) == 3 and timing.dtw_window(25) == 2 and timing.dtw_window(5) == 1
    with pytest.raises(Exception, match="window"):
        timing.path_mean(np.zeros((4, 4)), -1)


def test_registry_entries_are_versioned_and_share_lve_scale():
    info = metric_info("lve_dtw")
    assert info.version == 1 and info.scale_key == "lve" and info.reduction == "frame-pooled"
    assert metric_info("lip_open_err").requires == "mouth_pair"
    assert metric_info("lip_open_dtw").columns == ("open_dtw_sum", "n_frames")
