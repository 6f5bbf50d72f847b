"""Rendering throughput at 512 x 512 on this machine (frames per second) for SynthTalk faces of the
small (1,000 vertices) and full (5,023, FLAME's size) presets."""

import numpy as np
import pytest

from talkbench.datasets.synthtalk.face import build_topology, grid_for, sample_shape, template
from talkbench.render import MeshRenderer, camera_for

N_FRAMES = 60


@pytest.fixture(scope="module", params=[1000, 5023])
def face(request):
    topo = build_topology(*grid_for(request.param))
    neutral = template(topo, sample_shape(np.random.default_rng(0)))
    # a moving face: every frame needs its own normals and vertex upload, as in a real clip
    wobble = 0.002 * np.sin(np.arange(N_FRAMES)[:, None, None] / 4 + neutral[None, :, :1] * 40)
    return topo.faces, (neutral[None] + wobble - neutral.mean(0)).astype(np.float32)


def test_render_throughput_512(benchmark, face):
    faces, frames = face
    with MeshRenderer(faces, camera_for("synthtalk"), 512) as renderer:
        result = benchmark.pedantic(lambda: sum(1 for _ in renderer.render_sequence(frames)), rounds=3)
    assert result == N_FRAMES
    fps = N_FRAMES / benchmark.stats.stats.mean
    benchmark.extra_info.update({"frames_per_second": round(fps, 1), "vertices": int(frames.shape[1])})
    print(f"\nrender 512x512, {frames.shape[1]} vertices: {fps:.1f} frames/s")
