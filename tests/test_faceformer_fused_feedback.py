"""FaceFormer inference with the fused feedback map equals the two-map rollout to float tolerance."""

from __future__ import annotations

import pytest
import torch
from test_encoder_outputs import _build


@pytest.mark.parametrize("alignment", ["interpolate", "pairs"])
def test_fused_feedback_equals_two_maps_over_a_long_rollout(alignment):
    torch.manual_seed(0)
    m = _build("faceformer")
    m.alignment = alignment  # 'interpolate': precomputed cross-attention rows; 'pairs': attention
    torch.nn.init.normal_(m.vertice_map_r.weight, std=0.05)  # a head that speaks (starts at zero)
    memory = torch.randn(2, 600, m.config.feature_dim)
    style = m.style(torch.tensor([0, 1]))
    with torch.no_grad():
        ref = m.rollout_cached(memory, style, 300)
        fused = m.rollout_cached(memory, style, 300, fused_feedback=True)
    assert ref.shape == fused.shape == (2, 300, m.n_vertices * 3)
    scale = float(ref.abs().max())
    assert scale > 0 and float(ref[:, 1:].std()) > 0
    torch.testing.assert_close(fused, ref, rtol=1e-5, atol=1e-5 * scale)
