"""Rendering a SynthTalk clip to MP4 with the real OpenGL renderer, checked on the decoded frames."""

import json

import numpy as np
import pytest

from talkbench.datasets import load_dataset
from talkbench.errors import TalkbenchError
from talkbench.render import MeshRenderer, camera_for, read_mp4, render_clip, render_side_by_side
from talkbench.render.mesh import vertex_normals

SIZE = 256


@pytest.fixture(scope="module")
def tiny(synthtalk_tiny):
    return load_dataset("synthtalk", root=synthtalk_tiny)


def _pixel(point, camera, size):
    """Project a (centred) 3-D point with the renderer's camera to (row, col)."""
    p = camera.projection(size) @ camera.view() @ np.append(point, 1.0)
    ndc = p[:3] / p[3]
    return int((1 - ndc[1]) / 2 * size), int((ndc[0] + 1) / 2 * size)


def _frame_in(segments, categories, fps, n_frames):
    for s in segments:
        if s["category"] in categories and s["end"] - s["start"] > 2 / fps:
            t = int(round((s["start"] + s["end"]) / 2 * fps))
            if t < n_frames:
                return t
    return None


def test_clip_renders_to_mp4_with_face_mouth_motion_and_audio(tiny, synthtalk_tiny, tmp_path):
    spec = tiny.spec
    camera = camera_for("synthtalk")
    # the clip with the clearest open vowel and bilabial closure
    for clip in tiny.split("train"):
        segs = json.loads((synthtalk_tiny / "alignments" / f"{clip.name}.json").read_text())["segments"]
        t_open = _frame_in(
            [s for s in segs if s["phoneme"] in ("a", "o")], {"vowel"}, clip.fps, clip.n_frames
        )
        t_closed = _frame_in(segs, {"bilabial"}, clip.fps, clip.n_frames)
        if t_open is not None and t_closed is not None:
            break
    assert t_open is not None and t_closed is not None
    out = render_clip(
        clip.vertices,
        spec.faces,
        tmp_path / "clip.mp4",
        clip.fps,
        camera,
        clip.audio,
        clip.template,
        size=SIZE,
    )
    frames, audio, fps, rate = read_mp4(out)
    assert frames.shape == (clip.n_frames, SIZE, SIZE, 3)
    assert fps == pytest.approx(clip.fps)
    # the audio track has the clip's length (AAC pads at most one frame of 1024 samples at each end)
    assert rate == 16_000
    assert abs(len(audio) - len(clip.audio)) <= 2048
    # the face is in frame: lit pixels around the centre, none touching the border
    lit = frames[0].max(axis=2) > 20
    assert lit[SIZE // 4 : 3 * SIZE // 4, SIZE // 4 : 3 * SIZE // 4].mean() > 0.5
    assert not lit[0].any() and not lit[-1].any() and not lit[:, 0].any() and not lit[:, -1].any()
    # the mouth region changes between an open vowel and a closure, far more than the forehead
    centre = clip.template.mean(axis=0)
    mouth = _pixel(clip.template[spec.regions["lips"]].mean(axis=0) - centre, camera, SIZE)
    brow = _pixel(clip.template[spec.regions["forehead"]].mean(axis=0) - centre, camera, SIZE)

    def change(rc):
        r, c = rc
        a = frames[t_open, r - 12 : r + 12, c - 20 : c + 20].astype(float)
        b = frames[t_closed, r - 12 : r + 12, c - 20 : c + 20].astype(float)
        return np.abs(a - b).mean()

    assert change(mouth) > 3.0
    assert change(mouth) > 3 * change(brow)


def test_side_by_side_panels_and_labels(tiny, tmp_path):
    clip = tiny.split("test")[0]
    static = np.repeat(clip.template[None], clip.n_frames, axis=0)
    out = render_side_by_side(
        [("ground truth", clip.vertices), ("template", static)],
        tiny.spec.faces,
        tmp_path / "sbs.mp4",
        clip.fps,
        camera_for("synthtalk"),
        clip.audio,
        clip.template,
        size=128,
    )
    frames, _, _, _ = read_mp4(out)
    assert frames.shape[1:] == (128, 256, 3)
    # the label is drawn in the top strip of each panel
    assert frames[0, :16, :128].max() > 100 and frames[0, :16, 128:].max() > 100


def test_normals_are_unit_and_point_towards_the_camera(tiny):
    clip = tiny.split("test")[0]
    n = vertex_normals(np.asarray(clip.vertices[:3]), tiny.spec.faces)
    assert np.allclose(np.linalg.norm(n, axis=-1), 1, atol=1e-5)


def test_bad_meshes_are_refused(tiny, tmp_path):
    clip = tiny.split("test")[0]
    camera = camera_for("synthtalk")
    bad = np.array(clip.vertices, copy=True)
    bad[0, 0, 0] = np.nan
    with pytest.raises(TalkbenchError, match="NaN"):
        render_clip(bad, tiny.spec.faces, tmp_path / "x.mp4", clip.fps, camera, size=64)
    with pytest.raises(TalkbenchError, match="faces index vertex"):
        render_clip(clip.vertices[:, :10], tiny.spec.faces, tmp_path / "x.mp4", clip.fps, camera, size=64)
    assert not (tmp_path / "x.mp4").exists()


def test_an_empty_view_is_detected_as_a_failed_render(tiny, tmp_path):
    clip = tiny.split("test")[0]
    far = np.asarray(clip.vertices) + np.array([0, 0, 50.0], np.float32)  # behind the camera
    with pytest.raises(TalkbenchError, match="all black"):
        render_clip(far, tiny.spec.faces, tmp_path / "black.mp4", clip.fps, camera_for("vocaset"), size=64)
    assert not (tmp_path / "black.mp4").exists()
    with MeshRenderer(tiny.spec.faces, camera_for("synthtalk"), 64) as r:
        assert r.render(np.asarray(clip.template) - clip.template.mean(0)).any()


def test_vertices_no_face_uses_are_accepted(tiny):
    # a mesh whose last vertices belong to no triangle (Multiface's re-topology files can be so)
    clip = tiny.split("test")[0]
    verts = np.asarray(clip.template) - clip.template.mean(0)
    extra = np.concatenate([verts, np.zeros((7, 3), np.float32)])
    with MeshRenderer(tiny.spec.faces, camera_for("synthtalk"), 64) as r:
        np.testing.assert_array_equal(r.render(extra), r.render(verts))
