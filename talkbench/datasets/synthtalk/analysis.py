"""Independent acoustic analysis of audio (no generator internals): F0 by autocorrelation, formants by LPC.

Used to check that SynthTalk audio is speech-like and that voice features carry speaker identity.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg, signal

SR = 16_000


def frame_signal(x: np.ndarray, win: int, hop: int) -> np.ndarray:
    n = 1 + max(0, (len(x) - win) // hop)
    idx = np.arange(win)[None, :] + hop * np.arange(n)[:, None]
    return x[idx]


def f0_autocorr(frames: np.ndarray, sr: int = SR, fmin: float = 60.0, fmax: float = 450.0):
    """(f0 Hz, periodicity in [0, 1]) per frame from the normalised autocorrelation peak."""
    x = frames - frames.mean(axis=1, keepdims=True)
    x = x * np.hanning(x.shape[1])
    n = 2 * x.shape[1]
    spec = np.fft.rfft(x, n)
    ac = np.fft.irfft(np.abs(spec) ** 2, n)[:, : x.shape[1]]
    win_ac = np.fft.irfft(np.abs(np.fft.rfft(np.hanning(x.shape[1]), n)) ** 2, n)[: x.shape[1]]
    ac = ac / np.maximum(ac[:, :1], 1e-12) / np.maximum(win_ac / win_ac[0], 1e-3)  # unbias the taper
    lo, hi = int(sr / fmax), int(sr / fmin)
    seg = ac[:, lo:hi]
    # The first local peak within 85 % of the best one: avoids picking a multiple of the period.
    peak = (seg[:, 1:-1] >= seg[:, :-2]) & (seg[:, 1:-1] >= seg[:, 2:])
    good = peak & (seg[:, 1:-1] >= 0.85 * seg.max(axis=1, keepdims=True))
    first = np.where(good.any(axis=1), np.argmax(good, axis=1) + 1, np.argmax(seg, axis=1))
    lag = lo + first
    # Parabolic interpolation around the peak.
    rows = np.arange(len(lag))
    y0, y1, y2 = ac[rows, lag - 1], ac[rows, lag], ac[rows, np.minimum(lag + 1, ac.shape[1] - 1)]
    denom = y0 - 2 * y1 + y2
    shift = np.where(np.abs(denom) > 1e-12, 0.5 * (y0 - y2) / np.where(denom == 0, 1, denom), 0.0)
    return sr / (lag + np.clip(shift, -0.5, 0.5)), np.clip(y1, 0.0, 1.0)


def lpc(frame: np.ndarray, order: int) -> np.ndarray:
    """LPC polynomial [1, a1, ..., ap] by the autocorrelation method."""
    r = np.correlate(frame, frame, "full")[len(frame) - 1: len(frame) + order]
    r[0] *= 1.0 + 1e-9
    a = linalg.solve_toeplitz(r[:order], -r[1: order + 1])
    return np.concatenate([[1.0], a])


def formants(frame: np.ndarray, sr: int = SR, order: int | None = None, max_bw: float = 600.0) -> np.ndarray:
    """Formant frequencies (Hz, ascending) of one frame: LPC pole angles with narrow bandwidths."""
    x = signal.lfilter([1.0, -0.9], [1.0], frame) * np.hamming(len(frame))  # pre-emphasis
    order = order or int(2 + sr / 1000)
    roots = np.roots(lpc(x, order))
    roots = roots[np.imag(roots) > 0]
    freq = np.angle(roots) * sr / (2 * np.pi)
    bw = -np.log(np.abs(roots)) * sr / np.pi
    keep = (freq > 150) & (freq < sr / 2 - 200) & (bw < max_bw)
    return np.sort(freq[keep])


def resample_8k(audio: np.ndarray, sr: int = SR) -> np.ndarray:
    """Formants below 4 kHz are steadier with LPC at 8 kHz (fewer poles spent on the noise bands)."""
    return signal.resample_poly(audio, 1, sr // 8000)


def voice_features(audio: np.ndarray, sr: int = SR) -> dict[str, float]:
    """Median F0 and median F1-F3 (Hz) over strongly periodic, loud frames of an utterance."""
    win, hop = int(0.04 * sr), int(0.01 * sr)
    fr = frame_signal(audio.astype(np.float64), win, hop)
    f0, per = f0_autocorr(fr, sr)
    rms = np.sqrt((fr**2).mean(axis=1))
    voiced = (per > 0.6) & (rms > 0.25 * np.percentile(rms, 95))
    out = {"f0": float(np.median(f0[voiced])) if voiced.any() else float("nan")}
    a8 = resample_8k(audio.astype(np.float64), sr)
    w8, h8 = int(0.03 * 8000), int(0.01 * 8000)
    fr8 = frame_signal(a8, w8, h8)
    n = min(len(fr8), len(voiced))
    tracks = []
    for k in np.flatnonzero(voiced[:n]):
        f = formants(fr8[k], 8000, order=10)
        if len(f) >= 3:
            tracks.append(f[:3])
    tracks = np.array(tracks) if tracks else np.full((1, 3), np.nan)
    for i in range(3):
        out[f"f{i + 1}"] = float(np.median(tracks[:, i]))
    return out
