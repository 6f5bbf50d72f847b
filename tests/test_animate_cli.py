"""`bench animate` on the 11.5 s demo WAV (44.1 kHz real speech) with a tiny trained run: an MP4 of
duration x fps frames (within one) with an audio stream of the same length, a .npy of the same
frame count, the stored template by default and a warning that the audio is unlike SynthTalk's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from _shared import DATA
from typer.testing import CliRunner

from talkbench.cli import app
from talkbench.contract import prediction_file

DEMO = Path(str(DATA / "speech/faceformer_demo.wav"))


def animate(uri: str, *args: str):
    return CliRunner().invoke(app, ["animate", "--tracking-uri", uri, *args])


@pytest.fixture(scope="module")
def run(synthtalk_tiny, tmp_path_factory):
    uri = f"sqlite:///{tmp_path_factory.mktemp('animate_cli')}/mlflow.db"
    out = CliRunner().invoke(
        app,
        ["run", "--method", "faceformer", "--preset", "tiny", "--data-root", str(synthtalk_tiny),
         "--tracking-uri", uri, "--no-progress", "--no-leaderboard", "--register", "anim"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    run_id = next(line.split()[1] for line in out.stdout.splitlines() if line.startswith("run "))
    return uri, run_id


def test_demo_wav_through_a_registered_model(run, tmp_path):
    import av

    uri, _ = run
    out = animate(uri, "--model", "models:/anim/1", "--audio", str(DEMO), "--out", str(tmp_path))
    assert out.exit_code == 0, out.output
    assert "resampled 44100 Hz -> 16000 Hz" in out.stdout and "stored in the model" in out.stdout
    assert "warning: audio unlike the training audio" in out.stderr  # real speech, SynthTalk model
    npys = sorted(tmp_path.glob("*.npy"))
    assert len(npys) == 1 and npys[0].name.startswith("faceformer_demo" + "_condition_")  # default: one
    fps = 30.0
    expected = sf.info(str(DEMO)).duration * fps
    verts = np.load(npys[0])
    assert abs(len(verts) - expected) <= 1
    with av.open(str(npys[0].with_suffix(".mp4"))) as container:
        fps = float(container.streams.video[0].average_rate)
        n_video = sum(1 for _ in container.decode(container.streams.video[0]))
    with av.open(str(npys[0].with_suffix(".mp4"))) as container:
        stream = container.streams.audio[0]
        audio_s = sum(f.samples for f in container.decode(stream)) / stream.rate
    assert n_video == len(verts)
    assert abs(n_video - expected) <= 1
    assert abs(audio_s - n_video / fps) <= 1 / fps


def test_run_id_template_file_and_all_conditions(run, tmp_path, synthtalk_tiny):
    uri, run_id = run
    from talkbench.datasets import load_dataset

    data = load_dataset("synthtalk", synthtalk_tiny)
    template = tmp_path / "face.npy"
    np.save(template, data.templates[data.spec.train_subjects[1]])
    audio = tmp_path / "short.wav"
    sig, rate = sf.read(str(DEMO))
    sf.write(str(audio), sig[: rate * 2], rate)
    out = animate(
        uri, "--model", run_id, "--audio", str(audio), "--template", str(template), "--condition", "all",
        "--out", str(tmp_path / "o"), "--no-render",
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    names = sorted(p.name for p in (tmp_path / "o").glob("*.npy"))
    assert names == sorted(prediction_file("short", s) for s in data.spec.train_subjects)


def test_bad_inputs_are_one_line_errors(run, tmp_path):
    uri, run_id = run
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((7, 3), np.float32))
    for args, needle in (
        (["--template", str(bad)], "7 vertices"),
        (["--condition", "Nobody"], "not a training speaker"),
    ):
        out = animate(uri, "--model", run_id, "--audio", str(DEMO), "--out", str(tmp_path), *args)
        assert out.exit_code == 2 and out.stderr.startswith("error: ") and needle in out.stderr, out.output
    out = animate(uri, "--model", "models:/nope/1", "--audio", str(DEMO), "--out", str(tmp_path))
    assert out.exit_code == 2 and "not in the model registry" in out.stderr
