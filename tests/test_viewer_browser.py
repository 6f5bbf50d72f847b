"""The viewer in headless Chromium: a report's clip opened from disk, the frame shown at audio time t,
the heatmap against the metric layer's per-vertex error, two panels on screen, playback over a server,
and a study trial answered in the viewer."""

from __future__ import annotations

import io
import math
import shutil
import threading

import numpy as np
import pytest

from talkbench.metrics import vertex_errors
from tests.study_fixtures import make_small_study
from tests.viewer_files import decoded_track, moving_clip

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# headless Chromium has no speakers: the autoplay flag lets the audio clock run without a click
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARGS = [*FLAGS, "--autoplay-policy=no-user-gesture-required"]
READY = "window.viewer && viewer.state.loaded && viewer.state.loadMs !== null && viewer.state.frame >= 0"
NEXT_FRAME = """new Promise(done => requestAnimationFrame(() =>
    done([viewer.state.frame, viewer.state.time, viewer.audio().currentTime])))"""
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not shutil.which("chromium"), reason="Debian chromium not installed (make system)"),
]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.errors = []
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    yield page
    page.close()


def frame_at(t: float, fps: float, n_frames: int) -> int:
    """round(t * fps) (halves up, as Math.round), clamped to the clip."""
    return min(n_frames - 1, max(0, math.floor(t * fps + 0.5)))


def seek(viewer, t: float) -> tuple[int, float]:
    shown = viewer.evaluate(f"viewer.seek({t})")
    return shown["frame"], shown["time"]


def test_a_report_clip_from_disk_follows_the_audio_and_shows_the_metric(page, report, store, tmp_path):
    from PIL import Image

    from talkbench.runs import TrackedRun

    uri, _ = store
    page.goto(report.html.as_uri())  # file://, no server
    page.locator("#viewer").scroll_into_view_if_needed()  # the iframe loads lazily
    viewer = page.locator("#viewer").element_handle().content_frame()
    viewer.wait_for_function(READY)
    state = viewer.evaluate("({clip: viewer.state.clip, fps: viewer.state.fps, n: viewer.state.nFrames})")
    clip, fps, n_frames = state["clip"], state["fps"], state["n"]

    # the frame drawn at audio time t is round(t * fps), after each seek (past the end: the last frame)
    for t in (0.0, 0.41, 0.7333, 1.0, 9.0):
        frame, audio_time = seek(viewer, t)
        assert frame == frame_at(audio_time, fps, n_frames), (t, audio_time)
        assert abs(frame - frame_at(t, fps, n_frames)) <= 1, (t, audio_time)

    # the heatmap's values are the metric layer's per-vertex error of that frame (in mm)
    viewer.evaluate("viewer.setHeatmap(true)")
    frame, _ = seek(viewer, 0.5)
    errors = viewer.evaluate(
        "Object.fromEntries(Object.entries(viewer.state.errors).map(([k, v]) => [k, Array.from(v)]))"
    )
    folder = report.out_dir / "viewer"
    truth_meta, truth_levels = decoded_track(folder, clip, "ground_truth")
    step_mm = truth_meta["step"] * 1000
    assert len(errors) == 3  # the three runs shown at start (of four rows); the truth has none
    gt = TrackedRun.open(next(iter(errors)), uri).test_clip(clip).vertices
    for run_id, shown in errors.items():
        metric = vertex_errors(TrackedRun.open(run_id, uri).prediction(clip), gt)[frame] * 1000
        assert np.abs(np.asarray(shown) - metric).max() <= math.sqrt(3) * step_mm  # quantisation bound
        _, levels = decoded_track(folder, clip, run_id)
        exact = step_mm * np.linalg.norm((levels[frame] - truth_levels[frame]).reshape(-1, 3), axis=1)
        np.testing.assert_allclose(shown, exact, rtol=1e-12, atol=1e-12)  # the page decodes exactly
    assert max(max(v) for v in errors.values()) > 100 * step_mm  # errors far above the bound

    # the fourth row loads only when ticked
    tracks = viewer.evaluate("viewer.state.shown")
    every = [t["key"] for t in truth_meta["tracks"]]
    (hidden,) = [k for k in every if k not in tracks]
    assert sorted(viewer.evaluate("viewer.state.loadedTracks")) == sorted(tracks)
    viewer.check(f'input[data-track="{hidden}"]')
    viewer.wait_for_function("(key) => viewer.state.shown.includes(key)", arg=hidden)
    assert hidden in viewer.evaluate("viewer.state.loadedTracks")

    # two panels on screen: the grey truth and a run coloured by its error
    mean_motion = next(k for k in errors if TrackedRun.open(k, uri).method == "mean-motion")
    for key in every:
        if key not in ("ground_truth", mean_motion):
            viewer.uncheck(f'input[data-track="{key}"]')
    viewer.wait_for_function("viewer.state.shown.length === 2")
    seek(viewer, 0.5)
    shot = Image.open(io.BytesIO(viewer.locator("#canvas").screenshot())).convert("RGB")
    shot.save(tmp_path / "two-panels.png")
    pixels = np.asarray(shot).astype(int)
    background = np.array([30, 31, 34])  # the scene's clear colour (0x1e1f22)
    halves = np.array_split(pixels, 2, axis=1)
    for half in halves:
        face = np.abs(half - background).sum(-1) > 30
        assert face.mean() > 0.1, face.mean()  # a face fills a good part of each panel
    colour = lambda half: (half.max(-1) - half.min(-1) > 40).mean()  # noqa: E731 (saturated pixels)
    assert colour(halves[0]) < 0.01 < 0.1 < colour(halves[1])  # grey truth, heatmap run

    # it plays from disk too
    viewer.evaluate("viewer.seek(0)")
    viewer.evaluate("viewer.play()")
    page.wait_for_timeout(500)
    state = viewer.evaluate("[viewer.state.frame, viewer.state.time, viewer.state.playing]")
    assert state[2] and state[1] > 0.2 and state[0] == frame_at(state[1], fps, n_frames)
    assert not page.errors


def test_playback_keeps_the_frame_on_the_audio_clock_for_two_seconds(page, tmp_path):
    from talkbench.viewer import write_viewer
    from talkbench.viewer.serve import make_server

    folder = write_viewer(tmp_path / "view", [moving_clip(n_frames=120)]).parent  # a 4 s clip
    server = make_server(folder, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page.goto(f"http://127.0.0.1:{server.server_port}/")
        page.wait_for_function(READY)
        fps, n_frames = page.evaluate("[viewer.state.fps, viewer.state.nFrames]")
        page.click("#play")
        page.wait_for_timeout(2000)
        # read in the next display frame, after the viewer drew it: the frame shown and the audio clock
        frame, drawn_at, now = page.evaluate(NEXT_FRAME)
        assert 1.5 < drawn_at < 3.0  # about 2 s of audio played
        assert frame == frame_at(drawn_at, fps, n_frames)
        assert abs(frame - frame_at(now, fps, n_frames)) <= 1
        page.click("#play")  # pause; then a frame forward and back
        page.wait_for_function("!viewer.state.playing")
        start = page.evaluate("viewer.state.frame")
        assert page.evaluate("viewer.step(1)")["frame"] == start + 1
        assert page.evaluate("viewer.step(-1)")["frame"] == start
        page.click('[data-view="side"]')
        assert page.evaluate("viewer.state.view") == "side"
    finally:
        server.shutdown()
        server.server_close()
    assert not page.errors


def test_a_study_trial_in_the_viewer_records_the_answers(page, tmp_path):
    from werkzeug.serving import make_server

    from talkbench.study.app import create_app
    from talkbench.study.store import AnswerStore

    study = make_small_study(tmp_path / "study", viewer=True)
    server = make_server("127.0.0.1", 0, create_app(study), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page.goto(f"http://127.0.0.1:{server.server_port}/?rater=r1")
        page.click("#agree")
        viewer = page.locator("#viewer").element_handle().content_frame()
        viewer.wait_for_function(READY)
        trial = viewer.evaluate("viewer.state.clip")
        labels = viewer.evaluate("[...document.querySelectorAll('.panel-label')].map(e => e.textContent)")
        assert labels == ["Left", "Right"]
        assert not viewer.is_visible("#heat-box") and not viewer.is_visible("#tracks")
        assert not page.is_visible("#video")
        for row in page.query_selector_all("#questions .question"):
            with page.expect_response("**/api/answer") as response:
                row.query_selector('button[data-choice="left"]').click()
            assert response.value.ok
    finally:
        server.shutdown()
    stored = AnswerStore(study / "answers.db").frame()
    assert set(stored["trial"]) == {trial} and set(stored["choice"]) == {"left"} and len(stored) == 2
    assert not page.errors
