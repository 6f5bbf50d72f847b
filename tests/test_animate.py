"""animate: any WAV and template in, .npy and an MP4 with the audio out; real speech on a SynthTalk
model warns; bad audio and templates fail with one line naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from _shared import DATA

from talkbench.animate import (
    animate,
    audio_profile,
    audio_reference,
    domain_warnings,
    load_audio,
    load_template,
)
from talkbench.config import load_config
from talkbench.contract import prediction_file
from talkbench.datasets import load_dataset
from talkbench.errors import ConfigError, DataError
from talkbench.registry import METHODS

DEMO = Path(str(DATA / "speech/faceformer_demo.wav"))


@pytest.fixture(scope="module")
def tiny(synthtalk_tiny):
    """A tiny FaceFormer with random weights on SynthTalk tiny (the mechanics need no training)."""
    data = load_dataset("synthtalk", synthtalk_tiny)
    cfg = load_config("faceformer", dataset="synthtalk", preset="tiny")
    torch.manual_seed(0)
    model = METHODS.get("faceformer")(cfg.method_config, data.spec)
    torch.nn.init.normal_(model.vertice_map_r.weight, std=1e-3)  # zero-initialised head: give motion
    return model.eval(), data


def test_demo_wav_gives_mp4_and_npy_of_the_audio_length(tiny, tmp_path):
    import av

    model, data = tiny
    template = data.templates[data.spec.train_subjects[0]]
    result = animate(model, data.spec, DEMO, template, None, tmp_path)
    duration = sf.info(str(DEMO)).duration
    expected = duration * data.spec.fps
    npy = tmp_path / prediction_file("faceformer_demo", data.spec.train_subjects[0])
    assert result.predictions == {data.spec.train_subjects[0]: npy}
    verts = np.load(npy)
    assert verts.shape == (result.n_frames, data.spec.n_vertices, 3)
    assert abs(len(verts) - expected) <= 1
    with av.open(str(result.videos[data.spec.train_subjects[0]])) as container:
        assert container.streams.audio  # the MP4 carries the speech
        n_video = sum(1 for _ in container.decode(container.streams.video[0]))
    with av.open(str(npy.with_suffix(".mp4"))) as container:
        stream = container.streams.audio[0]
        n_audio = sum(f.samples for f in container.decode(stream))
        rate = stream.rate
    assert n_video == len(verts)
    assert abs(n_video - expected) <= 1
    assert abs(n_audio / rate - n_video / data.spec.fps) <= 1 / data.spec.fps
    assert "resampled 44100 Hz -> 16000 Hz" in result.notes[0]


def test_real_speech_on_a_synthtalk_model_warns(tiny, tmp_path, caplog):
    model, data = tiny
    train = [data.audio(r) for r in data.split("train").refs]
    reference = audio_reference(train)
    speech, _ = load_audio(DEMO)
    assert domain_warnings(audio_profile(speech), reference)  # real speech is not SynthTalk audio
    held_out = [data.audio(r) for r in data.split("test").refs]
    assert not any(domain_warnings(audio_profile(a), reference) for a in held_out)
    template = data.templates[data.spec.train_subjects[0]]
    with caplog.at_level("WARNING", logger="talkbench.animate"):
        result = animate(
            model, data.spec, speech[:16000], template, "all", tmp_path, render=False, reference=reference
        )
    assert result.warnings and "unlike the audio this model was trained on" in caplog.text
    assert set(result.predictions) == set(data.spec.train_subjects)  # "all": every training speaker
    assert not result.videos


def test_load_audio_any_rate_and_channels(tmp_path):
    t = np.arange(22050) / 22050
    stereo = np.stack([np.sin(2 * np.pi * 220 * t), np.sin(2 * np.pi * 330 * t)], axis=1) * 0.3
    sf.write(tmp_path / "s.wav", stereo, 22050)
    audio, note = load_audio(tmp_path / "s.wav")
    assert audio.dtype == np.float32 and audio.shape == (16000,)
    assert "2 channels mixed down to mono" in note and "resampled 22050 Hz -> 16000 Hz" in note
    sf.write(tmp_path / "m.wav", stereo[:, 0], 16000)
    assert "used as is" in load_audio(tmp_path / "m.wav")[1]
    (tmp_path / "bad.wav").write_bytes(b"nope")
    with pytest.raises(DataError, match="bad.wav"):
        load_audio(tmp_path / "bad.wav")


def test_too_short_audio_and_bad_condition(tiny, tmp_path):
    model, data = tiny
    template = data.templates[data.spec.train_subjects[0]]
    with pytest.raises(DataError, match="too short to animate"):
        animate(model, data.spec, np.zeros(300, np.float32), template, None, tmp_path, render=False)
    with pytest.raises(ConfigError, match="not a training speaker"):
        animate(model, data.spec, np.zeros(16000, np.float32), template, "Nobody", tmp_path, render=False)


def write_obj(path: Path, verts: np.ndarray) -> None:
    lines = ["# test mesh", *(f"v {x} {y} {z}" for x, y, z in verts), "vt 0 0", "f 1 2 3"]
    path.write_text("\n".join(lines) + "\n")


def write_ply(path: Path, verts: np.ndarray, binary: bool) -> None:
    fmt = "binary_little_endian" if binary else "ascii"
    header = (
        f"ply\nformat {fmt} 1.0\nelement vertex {len(verts)}\nproperty float x\nproperty float y\n"
        "property float z\nproperty uchar red\nelement face 1\nproperty list uchar int vertex_indices\n"
        "end_header\n"
    )
    if binary:
        rows = np.zeros(len(verts), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1")])
        rows["x"], rows["y"], rows["z"] = verts.T
        face = np.array([3], np.uint8).tobytes() + np.array([0, 1, 2], "<i4").tobytes()
        path.write_bytes(header.encode() + rows.tobytes() + face)
    else:
        body = "".join(f"{x} {y} {z} 7\n" for x, y, z in verts) + "3 0 1 2\n"
        path.write_text(header + body)


@pytest.mark.parametrize("kind", ["npy", "flat_npy", "obj", "ply_ascii", "ply_binary"])
def test_templates_from_mesh_files(tmp_path, kind):
    verts = np.random.default_rng(0).standard_normal((7, 3)).astype(np.float32)
    path = tmp_path / ("t.npy" if kind == "flat_npy" else f"t.{kind.split('_')[0]}")
    if kind == "npy":
        np.save(path, verts)
    elif kind == "flat_npy":
        np.save(path, verts.reshape(-1))
    elif kind == "obj":
        write_obj(path, verts)
    else:
        write_ply(path, verts, binary=kind == "ply_binary")
    np.testing.assert_allclose(load_template(path, 7), verts, rtol=1e-6)
    with pytest.raises(DataError, match=r"t\.\w+: the template has 7 vertices; the model animates .* of 9"):
        load_template(path, 9)


def test_bad_template_files(tmp_path):
    (tmp_path / "t.stl").write_text("solid")
    with pytest.raises(DataError, match="unknown mesh format '.stl'"):
        load_template(tmp_path / "t.stl", 3)
    (tmp_path / "t.ply").write_text("not a ply")
    with pytest.raises(DataError, match="t.ply: not a PLY file"):
        load_template(tmp_path / "t.ply", 3)
    np.save(tmp_path / "t.npy", np.zeros((4, 2)))
    with pytest.raises(DataError, match=r"t.npy: expected vertex positions of shape \(V, 3\)"):
        load_template(tmp_path / "t.npy", 4)
