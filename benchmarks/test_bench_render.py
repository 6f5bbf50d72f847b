"""Rendering throughput at 512 x 512 on this machine (frames per second), SynthTalk small and full faces."""

import numpy as np
import pytest

from talkbench.render import MeshRenderer, camera_for


@pytest.fixture(scope="module", params=["small", "full"])
def face(request, tmp_path_factory):
    from talkbench.datasets import load_dataset
    from talkbench.datasets.synthtalk import generate

    root = generate(tmp_path_factory.mktemp("render") / request.param, preset=request.param, seed=0)
    ds = load_dataset("synthtalk", root=root)
    clip = ds.split("test")[0]
    return request.param, ds.spec.faces, np.asarray(clip.vertices[:60]) - clip.template.mean(0)


def test_render_throughput_512(benchmark, face):
    name, faces, frames = face
    with MeshRenderer(faces, camera_for("synthtalk"), 512) as renderer:
        result = benchmark.pedantic(lambda: sum(1 for _ in renderer.render_sequence(frames)), rounds=3)
    assert result == len(frames)
    fps = len(frames) / benchmark.stats.stats.mean
    benchmark.extra_info.update({"frames_per_second": round(fps, 1), "vertices": int(frames.shape[1]), "face": name})
    print(f"\nrender 512x512 SynthTalk {name} ({frames.shape[1]} vertices): {fps:.1f} frames/s")
