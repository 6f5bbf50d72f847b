"""Klatt-style source-filter speech synthesis at 16 kHz.

Source: Rosenberg glottal pulses at the speaker's F0 contour (declination, pitch accents, jitter) with
breathy aspiration; filter: a cascade of four time-varying formant resonators, run in 10 ms blocks whose
filter state carries across blocks (scipy.signal.lfilter zi); plus band-passed noise for frication and
stop bursts, amplitude envelopes, and a little background noise.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import signal
from scipy.ndimage import uniform_filter1d

from .dynamics import critically_damped
from .phonemes import BANDWIDTHS, INVENTORY, NOISE_BANDS
from .sentences import Segment
from .speakers import Voice

SR = 16_000
BLOCK = 160  # samples per filter-coefficient update (10 ms)
ACCENT_F0 = 0.22  # relative F0 rise on a pitch accent
ACCENT_WIDTH = 0.09  # seconds (Gaussian sd)


def _step_track(segs: list[Segment], values: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Piecewise-constant per-segment values sampled at ``times``: (len(times), ...)."""
    ends = np.array([s.end for s in segs])
    idx = np.minimum(np.searchsorted(ends, times, side="right"), len(segs) - 1)
    return values[idx]


def accent_times(segs: list[Segment]) -> np.ndarray:
    return np.array([(s.start + s.end) / 2 for s in segs if s.accent])


def f0_contour(segs: list[Segment], voice: Voice, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """F0 (Hz) at times t: declination, a rise on each pitch accent, slow jitter."""
    total = segs[-1].end
    decl = 1.08 - 0.16 * (t / total)
    bumps = np.zeros_like(t)
    for ta in accent_times(segs):
        bumps += ACCENT_F0 * np.exp(-0.5 * ((t - ta) / ACCENT_WIDTH) ** 2)
    # Jitter: a random perturbation of 1.2 % (sd), new every 10 ms and slightly smoothed.
    n_ctl = int(np.ceil(total / 0.01)) + 2
    jit = critically_damped(rng.standard_normal(n_ctl), 150.0, 0.01)
    jit = 0.012 * (jit - jit.mean()) / (jit.std() + 1e-12)
    jit = np.interp(t, np.arange(n_ctl) * 0.01, jit)
    return voice.f0_mean * decl * (1.0 + bumps) * (1.0 + jit)


def glottal_source(f0: np.ndarray, breathiness: float, rng: np.random.Generator) -> np.ndarray:
    """Differentiated Rosenberg flow pulses at a time-varying F0 plus flow-gated aspiration noise."""
    phase = np.cumsum(f0 / SR) % 1.0
    oq = 0.5 + 0.3 * breathiness  # open quotient
    tp, tn = 0.65 * oq, 0.35 * oq
    rise = phase < tp
    fall = (phase >= tp) & (phase < oq)
    flow = np.where(rise, 0.5 * (1.0 - np.cos(np.pi * phase / tp)), 0.0)
    flow = np.where(fall, np.cos(0.5 * np.pi * (phase - tp) / tn), flow)
    exc = np.diff(flow, prepend=0.0) * (SR / np.maximum(f0, 50.0)) * 0.05  # level independent of F0
    asp = rng.standard_normal(len(f0)) * (0.01 + 0.12 * breathiness) * (0.3 + flow)
    return exc + asp


@lru_cache(maxsize=16)
def _band_sos(band: str) -> np.ndarray:
    lo, hi = NOISE_BANDS[band]
    return signal.butter(2, [lo, min(hi, SR / 2 - 200)], btype="band", fs=SR, output="sos")


def cascade_coefficients(freqs: np.ndarray, bws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gain (N,) and denominator (N, 2K+1) of K cascaded unit-DC-gain resonators per row of freqs (N, K).

    Each resonator is 1 / (1 - c z^-1 + r^2 z^-2), r = exp(-pi B / SR), c = 2 r cos(2 pi F / SR), with gain
    1 - c + r^2 (Klatt's normalisation); the cascade's denominator is the product of the K polynomials.
    """
    r = np.exp(-np.pi * bws / SR)
    c = 2.0 * r * np.cos(2.0 * np.pi * freqs / SR)
    a2 = r * r
    gain = np.prod(1.0 - c + a2, axis=-1)
    den = np.ones(freqs.shape[:-1] + (1,))
    for k in range(freqs.shape[-1]):  # polynomial product, vectorised over rows
        sec = np.stack([np.ones_like(c[..., k]), -c[..., k], a2[..., k]], axis=-1)
        new = np.zeros(den.shape[:-1] + (den.shape[-1] + 2,))
        for j in range(3):
            new[..., j: j + den.shape[-1]] += sec[..., j: j + 1] * den
        den = new
    return gain, den


def formant_tracks(segs: list[Segment], voice: Voice, t: np.ndarray) -> np.ndarray:
    """(len(t), 4) formant frequencies: per-phoneme targets, smoothed transitions, tract-length scaled."""
    targets = np.array([INVENTORY[s.symbol].formants for s in segs])
    steps = _step_track(segs, targets, t)
    dt = float(t[1] - t[0]) if len(t) > 1 else 0.01
    smooth = critically_damped(steps, 90.0, dt)
    smooth = critically_damped(smooth[::-1], 90.0, dt)[::-1]  # zero-phase: transitions centred on boundaries
    return smooth * voice.formant_scale


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Triangular smoothing over about ``width`` samples (two box filters), for click-free envelopes."""
    half = max(1, width // 2)
    return uniform_filter1d(uniform_filter1d(x, half, mode="nearest"), half, mode="nearest")


def synthesize(segs: list[Segment], voice: Voice, rng: np.random.Generator) -> np.ndarray:
    """Audio (float32, 16 kHz) for the timed phoneme segments in the given voice."""
    n = int(round(segs[-1].end * SR))
    t = np.arange(n) / SR
    n_blocks = (n + BLOCK - 1) // BLOCK
    tb = (np.arange(n_blocks) + 0.5) * BLOCK / SR

    # Amplitude envelopes (voicing and each noise band), per sample.
    sample_seg = np.minimum(np.searchsorted(np.array([s.end for s in segs]) * SR, np.arange(n), "right"),
                            len(segs) - 1)
    av_seg = np.array([INVENTORY[s.symbol].voicing for s in segs])
    av = av_seg[sample_seg]
    noise_env: dict[str, np.ndarray] = {}
    for s in segs:
        p = INVENTORY[s.symbol]
        if p.noise is None:
            continue
        env = noise_env.setdefault(p.noise, np.zeros(n))
        a, b = int(round(s.start * SR)), int(round(s.end * SR))
        if p.burst:  # closure, then a short decaying release burst
            blen = int(min(0.02, 0.3 * (s.end - s.start)) * SR)
            env[b - blen:b] = p.noise_amp * np.exp(-np.arange(blen) / (0.006 * SR))
            av[a:b - blen] = p.voicing  # voice bar (voiced stops) or silence
            av[b - blen:b] = 0.0
        else:
            env[a:b] = p.noise_amp
    av = _smooth(av, 160)

    f0 = f0_contour(segs, voice, t, rng)
    src = glottal_source(f0, voice.breathiness, rng) * av

    # Time-varying cascade of four formant resonators; filter state carried block to block.
    fr = formant_tracks(segs, voice, tb)
    bw = np.broadcast_to(np.array(BANDWIDTHS) * (1.0 + 0.6 * voice.breathiness * np.array([1, 0.5, 0, 0])),
                         fr.shape)
    fr = np.minimum(fr, SR / 2 - 600)
    gain, den = cascade_coefficients(fr, bw)  # one 8th-order filter per block
    out = np.empty(n)
    zi = np.zeros(den.shape[1] - 1)
    num = np.zeros(den.shape[1])
    for k in range(n_blocks):
        a, b = k * BLOCK, min(n, (k + 1) * BLOCK)
        num[0] = gain[k]
        out[a:b], zi = signal.lfilter(num, den[k], src[a:b], zi=zi)

    for band, env in noise_env.items():
        width = 48 if band.startswith("burst") else 160
        noise = signal.sosfilt(_band_sos(band), rng.standard_normal(n))
        out += noise * _smooth(env, width)

    peak = np.max(np.abs(out)) + 1e-9
    out = 0.6 * out / peak + 0.0015 * rng.standard_normal(n)
    return np.clip(out, -1.0, 1.0).astype(np.float32)
