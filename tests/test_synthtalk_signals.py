"""SynthTalk audio and motion, checked by independent analysis of the written files (not generator arrays).

Audio: F0 by autocorrelation, formants by LPC, band energies. Motion: the mouth opening (distance between
the mouth_pair means) and region displacements, against the phoneme alignment json.
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import soundfile as sf

from talkbench.datasets.synthtalk.analysis import f0_autocorr, formants, resample_8k
from talkbench.datasets.synthtalk.phonemes import INVENTORY


@pytest.fixture(scope="module")
def data(synthtalk_tiny):
    root = synthtalk_tiny
    meta = json.loads((root / "synthtalk.json").read_text())
    templates = pickle.loads((root / "templates.pkl").read_bytes())
    clips = []
    for path in sorted((root / "alignments").glob("*.json")):
        segs = json.loads(path.read_text())["segments"]
        audio, sr = sf.read(root / "wav" / f"{path.stem}.wav", dtype="float64")
        assert sr == 16000
        verts = np.load(root / "vertices_npy" / f"{path.stem}.npy")
        subject = path.stem.rsplit("_", 1)[0]
        clips.append({"name": path.stem, "subject": subject, "segs": segs, "audio": audio,
                      "verts": verts.reshape(len(verts), -1, 3), "template": templates[subject]})
    return meta, clips


def _mouth_open(meta, verts):
    up, lo = (np.asarray(x) for x in meta["mouth_pair"])
    return np.linalg.norm(verts[:, up].mean(1) - verts[:, lo].mean(1), axis=1)


def _frames(seg, fps=60):
    return slice(int(np.floor(seg["start"] * fps)), int(np.ceil(seg["end"] * fps)) + 1)


def test_vowel_formants_near_targets(data):
    meta, clips = data
    errs = []
    for c in clips:
        scale = meta["speakers"][c["subject"]]["voice"]["formant_scale"]
        x8 = resample_8k(c["audio"])
        for s in c["segs"]:
            if s["category"] != "vowel" or s["end"] - s["start"] < 0.08:
                continue
            mid = 0.5 * (s["start"] + s["end"])
            est = formants(x8[int((mid - 0.015) * 8000): int((mid + 0.015) * 8000)], 8000, order=10)
            target = np.array(INVENTORY[s["phoneme"]].formants[:2]) * scale
            assert len(est) >= 2, (c["name"], s)
            nearest = np.array([est[np.argmin(np.abs(est - t))] for t in target])
            errs.append(np.abs(nearest / target - 1))
    errs = np.array(errs)
    assert len(errs) > 50
    assert np.median(errs, axis=0).max() < 0.08  # F1 and F2 typically within 8 %
    assert (errs.max(axis=1) < 0.2).mean() > 0.85  # and nearly always within 20 %


def test_voiced_segments_have_energy_at_f0(data):
    meta, clips = data
    ratios, periodic, harmonic_db = [], [], []
    for c in clips:
        f0_mean = meta["speakers"][c["subject"]]["voice"]["f0_mean"]
        for s in c["segs"]:
            if s["category"] != "vowel" or s["end"] - s["start"] < 0.08:
                continue
            mid = 0.5 * (s["start"] + s["end"])
            frame = c["audio"][int((mid - 0.02) * 16000): int((mid + 0.02) * 16000)]
            f0, per = f0_autocorr(frame[None])
            ratios.append(f0[0] / f0_mean)
            periodic.append(per[0])
            # the spectrum has a peak at the estimated F0, well above the level half a harmonic away
            spec = np.abs(np.fft.rfft(frame * np.hanning(len(frame)), 16000)) ** 2  # 1 Hz bins
            at = spec[int(0.93 * f0[0]): int(1.07 * f0[0]) + 1].max()
            between = spec[int(1.4 * f0[0]): int(1.6 * f0[0]) + 1].mean()
            harmonic_db.append(10 * np.log10(at / between))
    ratios = np.array(ratios)
    # declination and pitch accents move F0 around the speaker's mean by -15 % ... +30 %
    assert 0.9 < np.median(ratios) < 1.1
    assert np.mean((ratios > 0.75) & (ratios < 1.4)) > 0.85
    assert np.median(periodic) > 0.8
    assert np.median(harmonic_db) > 10


def test_bilabial_closure_silences_and_sibilants_hiss(data):
    _, clips = data
    closure_rms, vowel_rms, sib_hf, vowel_hf = [], [], [], []
    for c in clips:
        x = c["audio"]
        for s in c["segs"]:
            a, b = int(s["start"] * 16000), int(s["end"] * 16000)
            if s["phoneme"] == "p":  # the closure part, before the release burst
                closure_rms.append(np.sqrt(np.mean(x[a + 160: a + int(0.5 * (b - a))] ** 2)))
            seg = x[a:b]
            mid = x[a + (b - a) // 4: b - (b - a) // 4]  # steady part, away from transitions
            spec = np.abs(np.fft.rfft(mid)) ** 2
            hf = spec[int(len(spec) * 4000 / 8000):].sum() / spec.sum()
            if s["category"] == "vowel":
                vowel_rms.append(np.sqrt(np.mean(seg**2)))
                vowel_hf.append(hf)
            elif s["phoneme"] in ("s", "z"):
                sib_hf.append(hf)
    assert closure_rms and sib_hf
    assert np.median(closure_rms) < 0.1 * np.median(vowel_rms)
    assert np.median(sib_hf) > 0.4 and np.median(sib_hf) > 50 * np.median(vowel_hf)


def test_bilabials_close_the_lips_and_open_vowels_open_them(data):
    meta, clips = data
    closed, by_vowel = [], {"a": [], "i": [], "u": []}
    for c in clips:
        opening = _mouth_open(meta, c["verts"])
        for s in c["segs"]:
            if s["category"] == "bilabial":
                closed.append(opening[_frames(s)].min())
            elif s["phoneme"] in by_vowel:
                by_vowel[s["phoneme"]].append(opening[_frames(s)].max())
    assert len(closed) > 10
    assert max(closed) < 0.3e-3  # every bilabial reaches closure (< 0.3 mm)
    assert 4e-3 < np.mean(by_vowel["a"]) < 20e-3  # open vowels open the mouth by millimetres
    assert np.mean(by_vowel["a"]) > 1.5 * np.mean(by_vowel["i"])
    assert np.mean(by_vowel["a"]) > 1.5 * max(closed) + 3e-3


def test_rest_and_smoothness(data):
    meta, clips = data
    for c in clips:
        v = c["verts"]
        disp = np.linalg.norm(v - c["template"][None], axis=2)
        assert disp.max() < 0.03  # nothing flies off
        step = np.linalg.norm(np.diff(v, axis=0), axis=2)
        assert step.max() < 5e-3  # at 60 fps: < 30 cm/s, lips in speech move up to ~20-30 cm/s
        assert _mouth_open(meta, v)[0] < 0.5e-3  # starts at rest, lips together
        # smooth: almost all motion energy lies below 10 Hz (speech articulators move at ~2-8 Hz)
        d = (v - v[0]).reshape(len(v), -1).astype(np.float64)
        power = (np.abs(np.fft.rfft(d - d.mean(0), n=512, axis=0)) ** 2).sum(1)
        freq = np.fft.rfftfreq(512, 1 / 60)
        assert power[freq > 10].sum() < 0.03 * power.sum(), c["name"]


def test_brows_rise_on_pitch_accents(data, synthtalk_tiny):
    _, clips = data
    brows = np.load(synthtalk_tiny / "regions" / "brows.npy")
    at_accent, away = [], []
    for c in clips:
        dy = (c["verts"][:, brows, 1] - c["template"][None, brows, 1]).mean(1)
        acc = [0.5 * (s["start"] + s["end"]) for s in c["segs"] if s.get("accent")]
        assert acc, c["name"]
        t = np.arange(len(dy)) / 60
        far = np.min(np.abs(t[:, None] - np.array(acc)[None]), axis=1) > 0.45
        at_accent += [dy[int(round(a * 60))] for a in acc]
        away += list(dy[far])
    assert np.mean(at_accent) > 1.5e-3
    assert np.mean(at_accent) > 5 * abs(np.mean(away))


def _log_bands(audio: np.ndarray, n_frames: int, fps: float = 30.0, n_bands: int = 40) -> np.ndarray:
    """Log energies in log-spaced bands (25 ms windows, 10 ms hop), sampled at the motion frames, with
    +-80 ms of context: (n_frames, 9 * n_bands)."""
    from scipy import signal

    _, _, z = signal.stft(audio, 16000, nperseg=400, noverlap=240, boundary=None, padded=True)
    power = np.abs(z) ** 2  # (201, M) at 100 Hz
    edges = np.geomspace(80, 7600, n_bands + 1) / 8000 * (power.shape[0] - 1)
    bands = np.stack([power[int(a): max(int(a) + 1, int(b))].sum(0) for a, b in zip(edges, edges[1:])], 1)
    feats = np.log(bands + 1e-8)
    feats = (feats - feats.mean(0)) / (feats.std(0) + 1e-5)  # per-utterance normalisation
    idx = np.clip(np.round(np.arange(n_frames) * 100 / fps).astype(int), 0, len(feats) - 1)
    return np.concatenate([feats[np.clip(idx + o, 0, len(feats) - 1)] for o in range(-8, 9, 2)], 1)


def test_lip_motion_is_learnable_from_audio(data, synthtalk_tiny):
    # A linear map from audio context to lip displacement, fitted on the training speakers, must already
    # beat the static template by a wide margin on the unseen test speaker (what trained methods must do).
    meta, clips = data
    lips = np.load(synthtalk_tiny / "regions" / "lips.npy")
    test_subject = meta["split"]["test"]["subjects"][0]
    lo, hi = meta["split"]["test"]["sentences"]

    def xy(c):
        v = c["verts"][::2]  # 30 fps, as loaded
        return _log_bands(c["audio"], len(v)), (v - c["template"][None])[:, lips].reshape(len(v), -1)

    train = [xy(c) for c in clips if c["subject"] in meta["split"]["train"]["subjects"]]
    test = [xy(c) for c in clips if c["subject"] == test_subject and lo <= int(c["name"][-2:]) <= hi]
    X = np.concatenate([x for x, _ in train])
    Y = np.concatenate([y for _, y in train])
    X1 = np.c_[X, np.ones(len(X))]
    W = np.linalg.solve(X1.T @ X1 + 10.0 * np.eye(X1.shape[1]), X1.T @ Y)
    err, base = [], []
    for x, y in test:
        pred = np.c_[x, np.ones(len(x))] @ W
        err.append((((pred - y).reshape(len(y), -1, 3)) ** 2).sum(-1).max(1))  # LVE per frame
        base.append((y.reshape(len(y), -1, 3) ** 2).sum(-1).max(1))  # the static template's
    lve, lve_template = np.concatenate(err).mean(), np.concatenate(base).mean()
    assert lve < 0.5 * lve_template, (lve, lve_template)
