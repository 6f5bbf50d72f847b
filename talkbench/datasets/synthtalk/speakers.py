"""Speakers: a latent z drives both the voice and the speaking style; ``style_coupling`` sets how much.

Voice parameters are deterministic functions of z (the voice *is* the speaker's audible identity). Each
style parameter is exp/affine of a standard-normal score  s = c * (a . z) / |a| + sqrt(1 - c^2) * eps
with eps independent noise, so at c = 1 the style is a function of the voice and at c = 0 it is
independent of it, while its spread across speakers is the same for every c.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from talkbench.errors import ConfigError

LATENT_DIM = 4
# Directions in latent space of each style score (z0 ~ pitch, z1 ~ vocal-tract length, z2 ~ rate,
# z3 ~ breathiness). Articulation gain rides mostly on pitch and tract length.
STYLE_DIRS = {
    "articulation_gain": (0.8, -0.6, 0.0, 0.0),
    "jaw_lip_ratio": (0.0, 0.7, 0.0, 0.7),
    "asymmetry": (0.0, 0.0, 0.6, 0.8),
    "stiffness": (0.3, 0.0, 0.95, 0.0),
    "brow_gain": (0.7, 0.0, 0.0, 0.7),
    "blink_rate": (0.0, 0.0, -0.6, 0.8),
}


@dataclass(frozen=True)
class Voice:
    f0_mean: float  # Hz
    formant_scale: float  # 1 / relative vocal-tract length
    rate: float  # speaking-rate factor (>1 faster)
    breathiness: float  # 0..1, aspiration noise and open quotient


@dataclass(frozen=True)
class Style:
    articulation_gain: float  # overall size of mouth motion
    jaw_lip_ratio: float  # >1: more jaw, less lip motion
    asymmetry: float  # left/right imbalance of mouth motion
    stiffness: float  # coarticulation speed factor
    brow_gain: float  # brow raise on pitch accents
    blink_rate: float  # blinks per second

    def channel_gains(self) -> dict[str, float]:
        """Per-blendshape articulation gains (lip press is not scaled: closures always close)."""
        r = np.sqrt(self.jaw_lip_ratio)
        g = self.articulation_gain
        return {"jaw": g * r, "round": g / r, "spread": g / r, "press": 1.0, "labiodental": g / r}


@dataclass(frozen=True)
class Speaker:
    name: str
    split: str
    latent: tuple[float, ...]
    voice: Voice
    style: Style
    shape: dict

    def to_json(self) -> dict:
        return {
            "split": self.split,
            "latent": [round(float(x), 6) for x in self.latent],
            "voice": {k: round(float(v), 6) for k, v in asdict(self.voice).items()},
            "style": {k: round(float(v), 6) for k, v in asdict(self.style).items()},
            "channel_gains": {k: round(float(v), 6) for k, v in self.style.channel_gains().items()},
            "shape": {k: round(float(v), 6) for k, v in self.shape.items()},
        }


def voice_from_latent(z: np.ndarray) -> Voice:
    return Voice(
        f0_mean=float(140.0 * np.exp(0.22 * z[0])),
        formant_scale=float(np.exp(0.08 * z[1])),
        rate=float(np.exp(0.09 * z[2])),
        breathiness=float(1.0 / (1.0 + np.exp(-(z[3] - 0.5)))),
    )


def style_scores(z: np.ndarray, eps: np.ndarray, coupling: float) -> dict[str, float]:
    c = float(coupling)
    out = {}
    for k, (name, a) in enumerate(STYLE_DIRS.items()):
        a = np.asarray(a)
        out[name] = float(c * (a @ z) / np.linalg.norm(a) + np.sqrt(max(0.0, 1.0 - c * c)) * eps[k])
    return out


def _soft(s: float, limit: float = 2.0) -> float:
    """Soft-clip a standard-normal score to +-limit: no physically absurd speakers in the tails."""
    return float(limit * np.tanh(s / limit))


def style_from_scores(s: dict[str, float]) -> Style:
    return Style(
        articulation_gain=float(np.exp(0.22 * _soft(s["articulation_gain"]))),
        jaw_lip_ratio=float(np.exp(0.2 * _soft(s["jaw_lip_ratio"]))),
        asymmetry=float(0.12 * np.tanh(s["asymmetry"])),
        stiffness=float(np.exp(0.12 * _soft(s["stiffness"]))),
        brow_gain=float(np.exp(0.3 * _soft(s["brow_gain"]))),
        blink_rate=float(0.3 * np.exp(0.3 * _soft(s["blink_rate"]))),
    )


def make_speaker(rng: np.random.Generator, name: str, split: str, coupling: float) -> Speaker:
    """Draw one speaker from its own generator (so speakers do not depend on generation order)."""
    from .face import sample_shape

    if not 0.0 <= coupling <= 1.0:
        raise ConfigError(f"style_coupling: expected a value in [0, 1], got {coupling}")
    z = rng.standard_normal(LATENT_DIM)
    eps = rng.standard_normal(len(STYLE_DIRS))
    shape = sample_shape(rng)
    return Speaker(name, split, tuple(z.tolist()), voice_from_latent(z),
                   style_from_scores(style_scores(z, eps, coupling)), shape)
