"""The viewer's data files and folder, `bench view`, its server and the study's viewer trials (no browser:
tests/test_viewer_browser.py drives Chromium on the same files)."""

from __future__ import annotations

import json
import re
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
from typer.testing import CliRunner

from talkbench.errors import DataError, TalkbenchError
from talkbench.metrics import vertex_errors
from talkbench.viewer import Track, ViewerClip, write_viewer
from talkbench.viewer.data import MAX_LEVEL, decode_levels, encode_levels, quant_step, quantise
from tests.study_fixtures import grid_face, make_small_study
from tests.viewer_files import decoded_track, moving_clip, positions, read_call


# -- the data format ------------------------------------------------------------------------------------
def test_levels_round_trip_and_bound_the_error_against_the_metric():
    rng = np.random.default_rng(1)
    template = rng.standard_normal((50, 3))
    truth = template + 0.01 * rng.standard_normal((20, 50, 3))
    pred = truth + 0.003 * rng.standard_normal(truth.shape)
    step = 1e-5
    q_truth, q_pred = quantise(truth - template, step), quantise(pred - template, step)
    for q in (q_truth, q_pred):
        assert np.array_equal(decode_levels(encode_levels(q), *q.shape), q)
    assert np.abs(template + q_pred.reshape(pred.shape) * step - pred).max() <= step / 2 + 1e-12
    # the viewer's error: integer level differences, within sqrt(3) steps of the exact metric
    viewer = step * np.linalg.norm((q_pred - q_truth).reshape(20, 50, 3), axis=-1)
    exact = vertex_errors(pred, truth)
    assert np.abs(viewer - exact).max() <= np.sqrt(3) * step
    assert exact.mean() > 100 * step  # the bound is far below the errors it colours


def test_step_choice_and_a_step_too_small_is_a_clear_error():
    assert quant_step(0.2, 0.01) == 1e-5  # a 20 cm face moving 1 cm: 0.01 mm
    assert quant_step(200.0, 10.0) == 1e-2  # the same face in mm
    assert quant_step(0.2, 0.3) == 1e-4  # offsets beyond 8,000 steps: coarser
    for extent, max_offset in ((0.2, 0.0), (0.2, 0.08), (0.2, 0.5), (3.0, 2.0)):
        assert max_offset / quant_step(extent, max_offset) <= MAX_LEVEL
    with pytest.raises(DataError, match="more than 8000 steps of 1e-06; pass a larger step"):
        quantise(np.full((2, 3, 3), 0.05), 1e-6, "clip x")


def test_decoding_checks_the_length():
    blob = encode_levels(np.zeros((4, 6), np.int16))
    with pytest.raises(DataError, match="holds 48 bytes; expected 60"):
        decode_levels(blob, 5, 6)


# -- the folder -----------------------------------------------------------------------------------------
def test_folder_holds_the_page_three_js_its_licence_and_one_file_per_track(tmp_path):
    clip = moving_clip()
    page = write_viewer(tmp_path / "view", [clip], title="demo")
    folder = page.parent
    for name in ("index.html", "static/viewer.js", "static/three.min.js", "static/THREE_LICENSE"):
        assert (folder / name).stat().st_size > 0, name
    assert "MIT License" in (folder / "static" / "THREE_LICENSE").read_text()
    manifest = read_call(folder / "data" / "manifest.js")[0]
    assert manifest["title"] == "demo" and [c["name"] for c in manifest["clips"]] == ["clip one"]
    meta, levels = decoded_track(folder, "clip one", "a")
    assert meta["n_frames"] == 42  # cut to the shortest track
    assert meta["display_unit"] == "mm" and meta["display_scale"] == 1000
    assert meta["heat"]["colormap"] == "viridis" and meta["heat"]["max"] > 0
    assert meta["audio"] == "data/clip_one/audio.wav" and (folder / meta["audio"]).is_file()
    shown = positions(meta, levels)
    assert np.abs(shown - clip.tracks[1].vertices[:42]).max() <= meta["step"] / 2 + 1e-6
    # the page loads its scripts and data with relative paths only: from disk and from a server alike
    html = (folder / "index.html").read_text()
    scripts = ["static/three.min.js", "static/viewer.js", "data/manifest.js"]
    assert re.findall(r'src="([^"]+)"', html) == scripts


def test_a_rig_turns_weights_into_the_meshes_the_viewer_shows(tmp_path):
    """Blendshape or parameter outputs reach the viewer through a rig: here a tiny linear one."""
    template, faces = grid_face(6)
    rng = np.random.default_rng(2)
    basis = 0.004 * rng.standard_normal((4, len(template), 3))  # 4 blendshapes

    def rig(weights: np.ndarray) -> np.ndarray:
        return template[None] + np.einsum("tk,kvc->tvc", weights, basis)

    weights = np.clip(rng.standard_normal((30, 4)), -1, 1)
    track = Track.from_weights("bs", "blendshapes", weights, rig)
    truth = Track.from_weights("gt", "ground truth", np.zeros((30, 4)), rig)
    clip = ViewerClip("rigged", 30.0, template, faces, np.zeros(16_000, np.float32), [truth, track], "gt")
    folder = write_viewer(tmp_path / "rig", [clip]).parent
    meta, levels = decoded_track(folder, "rigged", "bs")
    assert np.abs(positions(meta, levels) - rig(weights)).max() <= meta["step"] / 2 + 1e-6
    with pytest.raises(DataError, match=r"rig turned weights \(30, 4\) into \(30, 108\)"):
        Track.from_weights("bad", "bad rig", weights, lambda w: rig(w).reshape(30, -1))
    with pytest.raises(DataError, match=r"expected weights of shape \(T, K\)"):
        Track.from_weights("bad", "bad", weights[None], rig)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c.tracks[1].vertices.__setitem__((0, 0, 0), np.nan), "'method A': vertices contain NaN"),
        (lambda c: setattr(c.tracks[1], "vertices", c.tracks[1].vertices[:, :5]), r"expected \(T, 100, 3\)"),
        (lambda c: setattr(c, "faces", c.faces + 100), "faces reach vertex"),
        (lambda c: setattr(c, "truth", "nobody"), "truth 'nobody' is not one of its tracks"),
        (lambda c: c.tracks.append(Track("a", "again", c.tracks[0].vertices)), "track keys repeat"),
    ],
)
def test_bad_clips_are_one_clear_error_and_the_old_folder_stays(tmp_path, change, message):
    good = write_viewer(tmp_path / "view", [moving_clip()]).parent
    before = sorted(p.relative_to(good) for p in good.rglob("*"))
    clip = moving_clip()
    change(clip)
    with pytest.raises(DataError, match=message):
        write_viewer(good, [clip])
    assert sorted(p.relative_to(good) for p in good.rglob("*") if ".data-partial" not in p.parts) == before


def test_a_folder_that_is_not_a_viewer_is_not_overwritten(tmp_path):
    (tmp_path / "index.html").write_text("mine")
    with pytest.raises(TalkbenchError, match="holds an index.html that is not a talkbench viewer"):
        write_viewer(tmp_path, [moving_clip()])
    assert (tmp_path / "index.html").read_text() == "mine"


def test_clip_folders_are_file_safe_and_unique(tmp_path):
    clips = [moving_clip(), moving_clip()]
    clips[1].name = "clip/one"
    folder = write_viewer(tmp_path / "view", clips).parent
    files = [c["file"] for c in read_call(folder / "data" / "manifest.js")[0]["clips"]]
    assert files == ["data/clip_one/clip.js", "data/clip_one_2/clip.js"]


# -- bench view and its server --------------------------------------------------------------------------
def test_bench_view_writes_the_runs_and_the_ground_truth(store, tmp_path):
    from talkbench import cli
    from talkbench.runs import TrackedRun

    uri, ids = store
    runs = [ids["template"], ids["mean-motion"][0]]
    args = ["view", "--tracking-uri", uri, "--out", str(tmp_path / "v")]
    result = CliRunner().invoke(cli.app, [*args, "--run", runs[0], "--run", runs[1]])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "python3 -m http.server -b 127.0.0.1" in result.output
    run = TrackedRun.open(runs[1], uri)
    clip_name = read_call(tmp_path / "v" / "data" / "manifest.js")[0]["clips"][0]["name"]
    meta, levels = decoded_track(tmp_path / "v", clip_name, runs[1])
    assert [t["label"] for t in meta["tracks"]] == ["ground truth", "template", "mean-motion"]
    saved = run.prediction(clip_name)[: meta["n_frames"]]
    assert np.abs(positions(meta, levels) - saved).max() <= meta["step"] / 2 + 1e-6

    bad = CliRunner().invoke(cli.app, [*args, "--run", runs[0], "--clip", "nope"])
    assert bad.exit_code == 2 and "--clip 'nope' is not a test clip of 'synthtalk'" in bad.output


def test_the_server_answers_loopback_names_only(tmp_path):
    from talkbench.viewer.serve import make_server

    folder = write_viewer(tmp_path / "view", [moving_clip()]).parent
    server = make_server(folder, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        with urllib.request.urlopen(f"{base}/data/manifest.js") as response:
            assert response.read().startswith(b"TalkbenchViewer.manifest(")
        request = urllib.request.Request(f"{base}/index.html", headers={"Host": "evil.example"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request)
        assert refused.value.code == 421
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(TalkbenchError, match="has no index.html"):
        make_server(tmp_path, 0)


# -- the study ------------------------------------------------------------------------------------------
def test_a_study_can_show_its_trials_in_the_viewer_without_naming_the_methods(tmp_path):
    from talkbench.study.app import create_app

    study = make_small_study(tmp_path / "study", viewer=True)
    manifest = json.loads((study / "manifest.json").read_text())
    assert not (study / "videos").exists()
    for trial in manifest["trials"]:
        assert trial["viewer"] == f"viewer/index.html?clip={trial['id']}" and "video" not in trial
        meta, _ = decoded_track(study / "viewer", trial["id"], "left")
        assert [t["label"] for t in meta["tracks"]] == ["Left", "Right"] and meta["truth"] is None
    # nothing a rater's browser receives names a method or the clip: file names, track keys and labels
    named = [str(p.relative_to(study)) for p in (study / "viewer").rglob("*")]
    for clip in (study / "viewer" / "data").glob("*/clip.js"):
        meta = read_call(clip)[0]
        named += [meta["name"], meta["title"], *(f"{t['key']} {t['label']}" for t in meta["tracks"])]
    assert not re.search(r"\bA\b|\bB\b|catch|ground|sentence", " ".join(named)), named
    assert read_call(study / "viewer" / "data" / "manifest.js")[0]["study"] is True
    client = create_app(study).test_client()
    trials = client.get("/api/study?rater=r1").get_json()["trials"]
    assert {t["viewer"] for t in trials} == {t["viewer"] for t in manifest["trials"]}
    assert client.get("/viewer/index.html").status_code == 200
    assert client.get(f"/viewer/data/{trials[0]['id']}/left.js").status_code == 200
