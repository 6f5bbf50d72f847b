"""SynthTalk building blocks: resonator cascade, block filtering, coarticulation dynamics, speakers, text."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from talkbench.datasets.synthtalk.dynamics import critically_damped
from talkbench.datasets.synthtalk.phonemes import INVENTORY, vowel_formants
from talkbench.datasets.synthtalk.sentences import make_sentence, timing
from talkbench.datasets.synthtalk.speakers import make_speaker
from talkbench.datasets.synthtalk.speech import BLOCK, SR, cascade_coefficients
from talkbench.errors import ConfigError

FREQS = np.array([[700.0, 1200.0, 2500.0, 3600.0]])
BWS = np.array([[70.0, 100.0, 140.0, 200.0]])


def test_cascade_equals_four_resonators_in_series():
    gain, den = cascade_coefficients(FREQS, BWS)
    x = np.random.default_rng(0).standard_normal(4000)
    y = signal.lfilter([gain[0]], den[0], x)
    sos = []
    for f, b in zip(FREQS[0], BWS[0]):
        r = np.exp(-np.pi * b / SR)
        c = 2 * r * np.cos(2 * np.pi * f / SR)
        sos.append([1 - c + r * r, 0, 0, 1, -c, r * r])
    np.testing.assert_allclose(y, signal.sosfilt(np.array(sos), x), rtol=1e-7, atol=1e-9)
    # unit gain at DC, and peaks at the formant frequencies
    w, h = signal.freqz([gain[0]], den[0], worN=np.arange(0, 4000, 5.0), fs=SR)
    assert abs(abs(h[0]) - 1) < 1e-9
    mag = np.abs(h)
    peaks = w[signal.argrelmax(mag)[0]]
    for f in FREQS[0, :3]:
        assert np.min(np.abs(peaks - f)) < 25


def test_block_filtering_with_carried_state_is_exact_for_constant_formants():
    gain, den = cascade_coefficients(FREQS, BWS)
    x = np.random.default_rng(1).standard_normal(BLOCK * 12 + 37)
    whole = signal.lfilter([gain[0]], den[0], x)
    out, zi = np.empty_like(x), np.zeros(den.shape[1] - 1)
    for a in range(0, len(x), BLOCK):
        out[a: a + BLOCK], zi = signal.lfilter([gain[0]], den[0], x[a: a + BLOCK], zi=zi)
    np.testing.assert_allclose(out, whole, rtol=1e-9, atol=1e-12)


def test_critically_damped_reaches_target_without_overshoot():
    dt = 1 / 240
    step = np.r_[np.zeros(24), np.ones(240)]
    y = critically_damped(step, 40.0, dt)
    assert y.max() <= 1.0 + 1e-12 and y[-1] > 0.999
    t = (np.arange(240) + 1) * dt  # analytic step response 1 - (1 + w t) e^{-w t}
    np.testing.assert_allclose(y[24:], 1 - (1 + 40 * t) * np.exp(-40 * t), atol=0.03)
    # starts at rest on its first value (no start-up transient)
    np.testing.assert_allclose(critically_damped(np.full(50, 0.7), 40.0, dt), 0.7)


def test_vowel_acoustics_follow_articulation():
    # an open jaw raises F1, rounding lowers F2, fronting raises F2
    assert vowel_formants(0.9, 0, 0, 0)[0] > vowel_formants(0.2, 0, 0, 0)[0] + 300
    assert vowel_formants(0.3, 1.0, 0, 0)[1] < vowel_formants(0.3, 0, 0, 0)[1] - 300
    assert vowel_formants(0.3, 0, 0, 1.0)[1] > vowel_formants(0.3, 0, 0, -1.0)[1] + 1000
    a, i, u = INVENTORY["a"], INVENTORY["i"], INVENTORY["u"]
    assert a.formants[0] > i.formants[0] and a.formants[0] > u.formants[0]
    assert u.formants[1] < a.formants[1] < i.formants[1]
    # bilabials close the lips (press) and are silent or murmured
    for s in ("p", "b", "m"):
        assert INVENTORY[s].target("press") == 1.0 and INVENTORY[s].voicing < 0.5
    assert len(INVENTORY) >= 20


def test_sentence_structure_and_timing():
    rng = np.random.default_rng(3)
    toks = make_sentence(rng, 5)
    assert toks[0].pause and toks[-1].pause
    assert sum(t.accent for t in toks) == 2 and all(INVENTORY[t.symbol].category == "vowel" for t in toks
                                                    if t.accent)
    segs = timing(toks, 1.0, rng)
    end = segs[-1].end
    assert abs(end * 10 - round(end * 10)) < 1e-6  # a multiple of 0.1 s: audio/motion lengths align
    fast = timing(toks, 1.3, np.random.default_rng(3))
    slow = timing(toks, 0.8, np.random.default_rng(3))
    speech = [s for s in zip(fast, slow) if s[0].category != "silence"]
    assert all(f.end - f.start < s.end - s.start for f, s in speech)  # the rate sets durations


def test_speaker_coupling_bounds_and_spread():
    with pytest.raises(ConfigError, match="style_coupling"):
        make_speaker(np.random.default_rng(0), "S", "train", 1.2)
    gains = {c: [make_speaker(np.random.default_rng(k), "S", "train", c).style.articulation_gain
                 for k in range(300)] for c in (0.0, 1.0)}
    for c, g in gains.items():
        assert 0.15 < np.std(np.log(g)) < 0.3, c  # same spread of styles whatever the coupling
        assert 0.6 < min(g) and max(g) < 1.6  # and no absurd extremes
