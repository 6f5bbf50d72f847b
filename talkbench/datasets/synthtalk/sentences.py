"""Sentences: syllable-structured phoneme strings with word pauses and pitch accents, and their timing."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .phonemes import INVENTORY, VOWELS

# Onset/coda consonants, weighted so lip-visible classes (bilabials, labiodentals) are frequent.
_ONSETS = ("p", "b", "m", "f", "v", "s", "z", "sh", "t", "d", "k", "g", "n", "l", "r", "w")
_ONSET_W = np.array([3, 3, 3, 2, 1.5, 2, 1, 1.5, 2, 2, 2, 1.5, 2, 2, 2, 1.5])
_CODAS = ("m", "n", "s", "t", "k", "p", "l", "r", "f", "z")
_CODA_W = np.array([3, 3, 2, 2, 1.5, 2, 1.5, 1.5, 1, 1])
_VOWEL_W = np.array([3, 2, 2, 2, 1.5, 1.5])  # a e i o u @


@dataclass(frozen=True)
class Token:
    symbol: str
    word: int
    stressed: bool = False
    accent: bool = False  # nucleus of a pitch-accented syllable (F0 peak, brow raise)
    pause: bool = False  # silence between words / at the edges


def _pick(rng: np.random.Generator, items: tuple[str, ...], w: np.ndarray, avoid: str | None = None) -> str:
    p = w / w.sum()
    while True:
        s = items[int(rng.choice(len(items), p=p))]
        if s != avoid:
            return s


def make_sentence(rng: np.random.Generator, n_words: int) -> list[Token]:
    """A phoneme string: words of 1-3 CV(C) syllables, some separated by pauses, 1-2 accented words."""
    n_acc = 1 if n_words < 4 else 2
    accented = set(rng.choice(n_words, size=min(n_acc, n_words), replace=False).tolist())
    toks = [Token("sil", -1, pause=True)]
    for w in range(n_words):
        n_syl = int(rng.choice([1, 2, 3], p=[0.35, 0.45, 0.2]))
        for s in range(n_syl):
            last = toks[-1].symbol
            if s == 0 or rng.random() < 0.8:
                c = _pick(rng, _ONSETS, _ONSET_W, avoid=last)
                toks.append(Token(c, w))
            v = VOWELS[int(rng.choice(len(VOWELS), p=_VOWEL_W / _VOWEL_W.sum()))]
            if s == 0 and v == "@":  # stressed syllables carry full vowels
                v = "a"
            toks.append(Token(v, w, stressed=s == 0, accent=(s == 0 and w in accented)))
            if rng.random() < 0.3:
                toks.append(Token(_pick(rng, _CODAS, _CODA_W, avoid=v), w))
        if w < n_words - 1 and rng.random() < 0.4:
            toks.append(Token("sil", w, pause=True))
    toks.append(Token("sil", n_words, pause=True))
    return toks


@dataclass(frozen=True)
class Segment:
    symbol: str
    category: str
    start: float
    end: float
    accent: bool = False


def timing(tokens: list[Token], rate: float, rng: np.random.Generator, quantum: float = 0.1) -> list[Segment]:
    """Durations for each token at a speaking rate (>1 = faster); the total is a multiple of ``quantum``
    seconds so audio (16 kHz) and motion (60 fps) have exactly aligned lengths."""
    durs = []
    for k, tok in enumerate(tokens):
        lo, hi = INVENTORY[tok.symbol].duration
        if tok.pause:
            lo, hi = ((0.16, 0.24) if k == 0 else (0.2, 0.3)) if k in (0, len(tokens) - 1) else (0.08, 0.16)
            d = rng.uniform(lo, hi)
        else:
            d = rng.uniform(lo, hi) / rate
            if tok.stressed:
                d *= 1.3
            if tok.accent:
                d *= 1.15
        durs.append(d)
    total = float(np.sum(durs))
    durs[-1] += np.ceil(total / quantum - 1e-9) * quantum - total  # pad the final silence
    ends = np.cumsum(durs)
    starts = np.concatenate([[0.0], ends[:-1]])
    segs = [
        Segment(t.symbol, INVENTORY[t.symbol].category, round(float(s), 6), round(float(e), 6), t.accent)
        for t, s, e in zip(tokens, starts, ends)
    ]
    return segs
