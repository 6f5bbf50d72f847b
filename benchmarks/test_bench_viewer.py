"""The viewer's data size and load time for a FLAME-sized clip: 20 s at 30 fps, 5,023 vertices, the
ground truth and three runs.

    .venv/bin/python -m pytest benchmarks/test_bench_viewer.py -p no:xdist --benchmark-only -o addopts="" -s

The clip is synthetic: SynthTalk's face at 5,023 vertices moved by its seven articulatory fields (jaw,
lips, brows, blinks) with smooth speech-rate weights; each run is the truth's weights plus its own
smooth error. `smooth` meshes are exactly that; `jitter` adds 0.05 mm of per-vertex noise to every
frame (registered scans are not smooth), the harder case for the time-delta coding. Recorded in
extra_info and printed: bytes per second of animation per track (the data files, base64 included),
the folder for the clip, and the load time in headless Chromium from navigation to the first frame
drawn with all four tracks decoded (the page's own clock), from disk (file://).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from talkbench.datasets.synthtalk.blendshapes import fields
from talkbench.datasets.synthtalk.face import build_topology, grid_for, sample_shape, template
from talkbench.viewer import Track, ViewerClip, write_viewer

FPS, SECONDS, N_RUNS = 30.0, 20.0, 3
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
READY = "window.viewer && viewer.state.loaded && viewer.state.loadMs !== null"


def smooth(rng, n: int, k: int, width: int) -> np.ndarray:
    """(n, k) smooth random curves in about [-1, 1] (white noise through a Hann window)."""
    window = np.hanning(width)
    noise = rng.standard_normal((n + width, k))
    out = np.stack([np.convolve(noise[:, j], window, "same") for j in range(k)], 1)
    out = out[width // 2 : width // 2 + n]
    return out / np.abs(out).max()


@pytest.fixture(scope="module", params=["smooth", "jitter"])
def clip(request) -> ViewerClip:
    rng = np.random.default_rng(0)
    topo = build_topology(*grid_for(5023))
    neutral = template(topo, sample_shape(rng))
    basis = fields(topo, neutral)  # (7, V, 3) displacement at weight 1
    n = int(SECONDS * FPS)
    truth = np.clip(0.5 + 0.5 * smooth(rng, n, len(basis), 9), 0, 1)  # ~4 Hz articulation
    truth[:, 5:] *= 0.3  # brows and lids move less

    def rig(weights):
        return neutral[None] + np.einsum("tk,kvc->tvc", weights, basis)

    jitter = 5e-5 if request.param == "jitter" else 0.0
    tracks = [Track("gt", "ground truth", rig(truth) + jitter * rng.standard_normal((n, len(neutral), 3)))]
    for i in range(N_RUNS):
        error = (0.05 + 0.05 * i) * smooth(rng, n, len(basis), 15)
        tracks.append(Track.from_weights(f"run{i}", f"run {i}", np.clip(truth + error, 0, 1), rig))
    audio = (0.05 * rng.standard_normal(int(SECONDS * 16_000))).astype(np.float32)
    return ViewerClip(f"flame_{request.param}", FPS, neutral, topo.faces, audio, tracks, truth="gt")


def test_write_and_size(benchmark, clip, tmp_path):
    out = tmp_path / "view"
    benchmark.pedantic(lambda: write_viewer(out, [clip]), rounds=2)
    data = out / "data" / clip.name
    tracks = [data / f"{t.key}.js" for t in clip.tracks]
    per_track = [p.stat().st_size / SECONDS for p in tracks]
    folder = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    benchmark.extra_info.update(
        {
            "kB_per_second_per_track": [round(b / 1e3, 1) for b in per_track],
            "MB_clip_4_tracks": round(sum(p.stat().st_size for p in tracks) / 1e6, 2),
            "MB_folder_with_audio_and_three_js": round(folder / 1e6, 2),
            "kB_per_second_audio": round((data / "audio.wav").stat().st_size / SECONDS / 1e3, 1),
        }
    )
    print(f"\n{clip.name}: {benchmark.extra_info}")


@pytest.mark.skipif(not shutil.which("chromium"), reason="Debian chromium not installed")
def test_load_in_chromium(benchmark, clip, tmp_path):
    from playwright.sync_api import sync_playwright

    page_file = write_viewer(tmp_path / "view", [clip])
    load_ms = []
    with sync_playwright() as p:
        flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        browser = p.chromium.launch(executable_path=CHROMIUM, args=flags)

        def load() -> None:
            page = browser.new_page(viewport={"width": 1400, "height": 700})
            page.goto(page_file.as_uri())
            page.wait_for_function(READY, timeout=120_000)
            load_ms.append(page.evaluate("viewer.state.loadMs"))
            page.close()

        benchmark.pedantic(load, rounds=3)
        browser.close()
    benchmark.extra_info["load_ms_in_page"] = [round(ms) for ms in load_ms]
    print(f"\n{clip.name}: load to first frame {np.median(load_ms):.0f} ms (page clock), rounds {load_ms}")
