"""Pretraining data: SynthTalk speakers of their own, disjoint from every benchmark split, with labels.

A benchmark speaker ``i`` of a SynthTalk dataset with seed ``s`` is drawn from
``SeedSequence([s, 1, i])`` (generate.speaker). Pretraining speakers are drawn from
``SeedSequence([seed, SPEAKER_TAG, k])``: the entropy words never end in ``[1, i]`` (the
second-to-last word is SPEAKER_TAG, not 1), whatever the benchmark seed, preset or index, so no
pretraining speaker is a benchmark speaker for any dataset the generator can make. Sentences and
synthesis noise use tags of their own too, so no benchmark clip's text or audio is reused.

Each clip comes with one phoneme label per 50 Hz encoder frame: frame ``j`` of the mel encoder's
stride-2 conv stack is centred on log-mel frame ``2j``, whose 25 ms window starts at sample
``160 * 2j``; its label is the phoneme whose segment holds the sample ``320 j + 200``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from talkbench.datasets.synthtalk.phonemes import INVENTORY
from talkbench.datasets.synthtalk.sentences import Segment, make_sentence, timing
from talkbench.datasets.synthtalk.speakers import Speaker, make_speaker
from talkbench.datasets.synthtalk.speech import SR, synthesize

PHONEMES: tuple[str, ...] = tuple(INVENTORY)  # class index = position in the generator's inventory
# entropy tags of the pretraining streams; the generator's own purposes are 1..6
SPEAKER_TAG = 0x5350_4B52  # "SPKR"
SENTENCE_TAG = 0x5345_4E54  # "SENT"
TIMING_TAG = 0x5449_4D45  # "TIME"
VOICE_TAG = 0x564F_4943  # "VOIC"
HELDOUT_OFFSET = 1_000_000  # held-out speakers are numbered from here: never a training speaker
WINDOW, HOP = 400, 160  # log-mel window and hop (samples), as talkbench.audio.signal.log_mel
FEATURE_RATE_HZ = SR // (2 * HOP)  # 50 Hz, the rate of the encoder's conv stack (and of wav2vec2)
COUPLING = 0.8  # style coupling: irrelevant to the audio (the voice depends on the latent only)


@dataclass(frozen=True)
class Utterance:
    speaker: str
    audio: np.ndarray  # float32, 16 kHz
    labels: np.ndarray  # int64 (S',): one phoneme index per 50 Hz encoder frame


def speaker_entropy(seed: int, number: int) -> list[int]:
    return [int(seed), SPEAKER_TAG, int(number)]


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


def pretrain_speaker(seed: int, number: int) -> Speaker:
    """Pretraining speaker ``number`` (training: 0.., held-out: HELDOUT_OFFSET..)."""
    rng = np.random.default_rng(np.random.SeedSequence(speaker_entropy(seed, number)))
    return make_speaker(rng, f"SynthTalkPretrain_P{number:07d}", "pretrain", COUPLING)


def n_frames_50hz(n_samples: int) -> int:
    """Frames of the mel encoder's 50 Hz output for a clip of ``n_samples`` (MelEncoder.cnn)."""
    m = (n_samples - WINDOW) // HOP + 1
    return (m - 1) // 2 + 1 if m > 0 else 0


def frame_labels(segs: list[Segment], n_samples: int) -> np.ndarray:
    """Phoneme index of every 50 Hz encoder frame (the segment holding the frame's centre)."""
    centres = (2 * HOP * np.arange(n_frames_50hz(n_samples)) + WINDOW // 2) / SR
    ends = np.array([s.end for s in segs])
    seg = np.minimum(np.searchsorted(ends, centres, side="right"), len(segs) - 1)
    index = {p: k for k, p in enumerate(PHONEMES)}
    return np.array([index[segs[k].symbol] for k in seg], dtype=np.int64)


def utterance(seed: int, number: int, sentence: int, words: tuple[int, int]) -> Utterance:
    spk = pretrain_speaker(seed, number)
    rng = _rng(seed, SENTENCE_TAG, number, sentence)
    tokens = make_sentence(rng, int(rng.integers(words[0], words[1] + 1)))
    segs = timing(tokens, spk.voice.rate, _rng(seed, TIMING_TAG, number, sentence))
    audio = synthesize(segs, spk.voice, _rng(seed, VOICE_TAG, number, sentence))
    return Utterance(spk.name, audio, frame_labels(segs, len(audio)))


def corpus(seed: int, speakers: range, sentences: int, words: tuple[int, int]) -> list[Utterance]:
    return [utterance(seed, n, s, words) for n in speakers for s in range(sentences)]
