"""style_coupling: with 1 a speaker's articulation gain is recoverable from voice features of its audio,
with 0 it is not. Voice features come from our own acoustic analysis of the synthesised audio."""

from __future__ import annotations

import numpy as np
import pytest

from talkbench.datasets.synthtalk import clip_audio, get_preset, speaker
from talkbench.datasets.synthtalk.analysis import voice_features

N_SPEAKERS = 60
SEED = 7


def _cv_r2(X: np.ndarray, y: np.ndarray, folds: int = 5) -> float:
    """Cross-validated R^2 of an ordinary least-squares fit (predictions on held-out speakers only)."""
    n = len(y)
    pred = np.empty(n)
    fold = np.arange(n) % folds
    for k in range(folds):
        tr, te = fold != k, fold == k
        A = np.c_[np.ones(tr.sum()), X[tr]]
        w = np.linalg.lstsq(A, y[tr], rcond=None)[0]
        pred[te] = np.c_[np.ones(te.sum()), X[te]] @ w
    return float(1.0 - ((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum())


@pytest.fixture(scope="module")
def voices():
    """Voice features of N_SPEAKERS speakers from one shared-text sentence each (audio analysis only)."""
    preset = get_preset("tiny")
    feats = []
    for i in range(N_SPEAKERS):
        spk = speaker(SEED, i, 1.0)
        _, audio = clip_audio(preset, SEED, spk, i, 1)
        f = voice_features(audio)
        feats.append([np.log(f["f0"]), np.log(f["f1"]), np.log(f["f2"]), np.log(f["f3"])])
    X = np.array(feats)
    assert np.isfinite(X).all()
    return X


def test_voice_does_not_depend_on_coupling():
    # the audio of a speaker is the same whatever the coupling; only the style changes
    a, b = speaker(SEED, 3, 1.0), speaker(SEED, 3, 0.0)
    assert a.voice == b.voice and a.latent == b.latent
    assert a.style != b.style


def test_measured_voice_tracks_true_voice(voices):
    spk = [speaker(SEED, i, 1.0).voice for i in range(N_SPEAKERS)]
    true = np.log([[v.f0_mean, v.formant_scale] for v in spk])
    assert np.corrcoef(true[:, 0], voices[:, 0])[0, 1] > 0.9  # measured F0 follows the speaker's F0
    assert np.corrcoef(true[:, 1], voices[:, 2])[0, 1] > 0.8  # measured F2 follows tract length


@pytest.mark.parametrize(("coupling", "lo", "hi"), [(1.0, 0.7, 1.0), (0.0, -np.inf, 0.25)])
def test_articulation_gain_from_voice(voices, coupling, lo, hi):
    y = np.log([speaker(SEED, i, coupling).style.articulation_gain for i in range(N_SPEAKERS)])
    assert y.std() > 0.15  # the styles vary as much at both couplings
    r2 = _cv_r2(voices, y)
    assert lo < r2 <= hi, r2
