"""Articulation: phoneme timing -> blendshape weights -> vertex motion at the capture rate.

Viseme targets (scaled by the speaker's per-channel gains) are turned into trajectories by a critically
damped second-order system per channel (coarticulation: a phoneme's shape is reached only if it lasts
long enough, and spills into its neighbours). Targets are read slightly ahead of the sound because lips
move before the acoustic event. Lip press drives a closure that really closes the lips on bilabials.
Brows rise on pitch accents; blinks come at random times.
"""

from __future__ import annotations

import numpy as np

from .blendshapes import FIELDS, MOUTH_FIELDS, close_lips
from .dynamics import critically_damped
from .face import Topology
from .phonemes import INVENTORY
from .sentences import Segment
from .speakers import Style

OVERSAMPLE = 4  # internal rate = capture fps * OVERSAMPLE
LEAD = 0.035  # seconds the articulators anticipate the sound
# Base natural frequencies (rad/s) of each mouth channel; the lips are quicker than the jaw.
OMEGA = {"jaw": 36.0, "round": 40.0, "spread": 40.0, "press": 45.0, "labiodental": 50.0}
PRESS_TARGET = 1.5  # aim beyond contact so closure saturates (lips pressed) within the segment
# Lips start closing well before a bilabial (anticipation) and part at its acoustic release.
PRESS_ON, PRESS_OFF = 0.07, 0.02
BROW_WIDTH = 0.12  # seconds (Gaussian sd) of a brow raise
BROW_LEAD = 0.04


def mouth_weights(segs: list[Segment], style: Style, t: np.ndarray) -> np.ndarray:
    """(len(t), len(MOUTH_FIELDS)) smoothed channel weights; press is raw (closure = clip(press, 0, 1))."""
    gains = style.channel_gains()
    tgt = np.array([[INVENTORY[s.symbol].target(ch) for ch in MOUTH_FIELDS] for s in segs])
    tgt = tgt * np.array([gains[ch] for ch in MOUTH_FIELDS])
    tgt[:, MOUTH_FIELDS.index("press")] *= PRESS_TARGET
    ends = np.array([s.end for s in segs])
    idx = np.minimum(np.searchsorted(ends, t + LEAD, side="right"), len(segs) - 1)
    steps = tgt[idx]
    p = MOUTH_FIELDS.index("press")
    on_idx = np.minimum(np.searchsorted(ends, t + PRESS_ON, side="right"), len(segs) - 1)
    off_idx = np.minimum(np.searchsorted(ends, t + PRESS_OFF, side="right"), len(segs) - 1)
    steps[:, p] = np.maximum(tgt[on_idx, p], tgt[off_idx, p])  # closure held from onset-lead to release
    dt = float(t[1] - t[0])
    out = np.empty_like(steps)
    for k, ch in enumerate(MOUTH_FIELDS):
        out[:, k] = critically_damped(steps[:, k], OMEGA[ch] * style.stiffness, dt)
    return out


def brow_weights(segs: list[Segment], style: Style, t: np.ndarray) -> np.ndarray:
    w = np.zeros_like(t)
    for s in segs:
        if s.accent:
            ta = 0.5 * (s.start + s.end) - BROW_LEAD
            w += np.exp(-0.5 * ((t - ta) / BROW_WIDTH) ** 2)
    return style.brow_gain * w


def blink_weights(style: Style, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blinks as a Poisson process: quick close (~70 ms), slower open (~160 ms)."""
    total = float(t[-1]) + 1e-6
    n = int(rng.poisson(style.blink_rate * total))
    times = np.sort(rng.uniform(0.0, total, size=n))
    w = np.zeros_like(t)
    for tb in times:
        d = t - tb
        w += np.where(d < 0, np.exp(-((d / 0.035) ** 2)), np.exp(-((d / 0.08) ** 2)))
    return np.clip(w, 0.0, 1.0)


def weights(segs: list[Segment], style: Style, n_frames: int, fps: float, rng: np.random.Generator):
    """Per-frame blendshape weights (n_frames, len(FIELDS)) and lip closure (n_frames,) at ``fps``."""
    t = np.arange(n_frames * OVERSAMPLE) / (fps * OVERSAMPLE)
    mouth = mouth_weights(segs, style, t)
    w = np.concatenate([mouth, brow_weights(segs, style, t)[:, None], blink_weights(style, t, rng)[:, None]],
                       axis=1)[::OVERSAMPLE]
    p = FIELDS.index("press")
    closure = np.clip(w[:, p], 0.0, 1.0)
    w[:, p] = closure
    return w, closure


def animate(template: np.ndarray, field_stack: np.ndarray, topo: Topology, w: np.ndarray,
            closure: np.ndarray) -> np.ndarray:
    """(T, V, 3) float32 vertices: template + weighted fields, then lip closure."""
    verts = template[None].astype(np.float64) + np.einsum("tk,kvc->tvc", w, field_stack)
    close_lips(verts, topo, closure)
    return verts.astype(np.float32)
