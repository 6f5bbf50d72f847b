"""Articulatory blendshapes: smooth displacement fields over the face, plus the lip-closure operation.

Each field is the displacement (metres) at weight 1. Fields fall off smoothly with (u, v) distance so the
skin moves as a sheet. Lip press (closure) is applied multiplicatively on the lip gap (``close_lips``), so a
bilabial closes the mouth whatever the jaw is doing, and lips never pass through each other.
"""

from __future__ import annotations

import numpy as np

from talkbench.datasets.rig import LipClosure

from .face import EYE_U, EYE_V, MOUTH_V, Topology

MOUTH_FIELDS = ("jaw", "round", "spread", "press", "labiodental")
FIELDS = (*MOUTH_FIELDS, "brow", "blink")
JAW_HINGE = (0.06, -0.09)  # (y, z) of the jaw's rotation axis in metres
JAW_ANGLE = 0.12  # radians at weight 1 (about 12 mm of lower-lip travel)


def _mouth_span(u: np.ndarray, half: float) -> np.ndarray:
    """1 at the lip centre, 0 at and beyond the mouth corners (|u| >= half)."""
    return np.where(np.abs(u) < half, np.cos(0.5 * np.pi * u / half) ** 2, 0.0)


def lower_weight(topo: Topology) -> np.ndarray:
    """How much a vertex follows the jaw: 1 on the chin, 0 above the mouth, split at the lip line."""
    u, t = topo.u, topo.v - MOUTH_V
    half = topo.mouth_half_u
    sigma = 0.05 + 0.6 * np.clip(np.abs(u) - half, 0.0, None) ** 2
    w = 0.5 * (1.0 - np.tanh(t / sigma))
    on_line = np.abs(t) < 1e-9
    m = _mouth_span(u, half)
    w = np.where(on_line, 0.5 - 0.5 * topo.side * m, w)  # the lip edges split: lower follows the jaw
    return np.clip(w, 0.0, 1.0)


def fields(topo: Topology, tmpl: np.ndarray, asymmetry: float = 0.0) -> np.ndarray:
    """(len(FIELDS), V, 3) displacement fields for one speaker's template and left/right asymmetry."""
    u, v, side = topo.u, topo.v, topo.side.astype(np.float64)
    t = v - MOUTH_V
    x, y, z = (tmpl[:, k].astype(np.float64) for k in range(3))
    V = topo.n_vertices
    out = np.zeros((len(FIELDS), V, 3))
    lw = lower_weight(topo)
    half = topo.mouth_half_u
    lip = np.exp(-((u / (1.25 * half)) ** 4) - (t / 0.16) ** 2)  # lips and their surround
    lip_line = np.exp(-((u / (1.1 * half)) ** 4) - (t / 0.07) ** 2)
    m = _mouth_span(u, half)

    # jaw open: rotate the lower face about the hinge (small-angle), chin down and slightly back.
    hy, hz = JAW_HINGE
    out[0, :, 1] = -JAW_ANGLE * (z - hz) * lw
    out[0, :, 2] = JAW_ANGLE * (y - hy) * lw * 0.5
    # lip round: protrude and narrow, with a small rounded opening.
    out[1, :, 0] = -0.3 * x * lip
    out[1, :, 1] = 0.0015 * side * m * np.exp(-((t / 0.05) ** 2))
    out[1, :, 2] = 0.006 * lip
    # lip spread: corners out and slightly back.
    out[2, :, 0] = 0.2 * x * lip
    out[2, :, 1] = 0.0008 * lip
    out[2, :, 2] = -0.0015 * lip
    # lip press: lips thin and bulge slightly (the closure itself is close_lips()).
    out[3, :, 2] = 0.0015 * lip_line
    out[3, :, 1] = -0.0008 * (1.0 - 2.0 * lw) * lip_line  # +1 above the lips, -1 below, 0 at corners
    # labiodental: lower lip up and back under the upper teeth.
    low = lw * lip_line  # follows the lower face smoothly, so the mouth corners do not crease
    out[4, :, 1] = 0.004 * low
    out[4, :, 2] = -0.003 * low
    # Left/right asymmetry scales the mouth fields on one side.
    out[:5] *= (1.0 + asymmetry * u)[None, :, None]
    # brow raise: brows up, forehead follows, fading upwards.
    au = np.abs(u)
    brow = np.exp(-(((au - 0.4) / 0.3) ** 2)) * np.clip((v - EYE_V) / 0.25, 0.0, 1.0) ** 1.5
    brow = brow * np.exp(-np.clip(v - (EYE_V + 0.35), 0.0, None) / 0.4)
    out[5, :, 1] = 0.0065 * brow
    out[5, :, 2] = 0.0008 * brow
    # blink: lids close over the eye (upper part down, lower part slightly up).
    eye = np.exp(-(((au - EYE_U) / 0.13) ** 2) - ((v - EYE_V) / 0.065) ** 2)
    above = np.clip((v - EYE_V) / 0.065 + 0.5, 0.0, 1.0)
    out[6, :, 1] = eye * (-0.008 * above + 0.002 * (1.0 - above))
    return out


def _lip_columns(topo: Topology):
    """For vertices near the open mouth: ids, their mouth column, falloff, and direction (+1 lower lip)."""
    cols_u = topo.u[topo.mouth_upper]
    col_of = {float(cu): k for k, cu in enumerate(cols_u)}
    t = topo.v - MOUTH_V
    near = np.flatnonzero((np.abs(t) < 0.2) & (np.abs(topo.u) < topo.mouth_half_u))
    idx = np.array([col_of[float(cu)] for cu in topo.u[near]], dtype=np.int64)
    fall = np.exp(-np.abs(t[near]) / 0.05)
    sign = -topo.side[near].astype(np.float64)  # upper side moves against the gap, the lower side with it
    return near, idx, fall * sign


def lip_closure(topo: Topology, channel: int) -> LipClosure:
    """The closure step of this topology, driven by weight ``channel``."""
    near, idx, w = _lip_columns(topo)
    return LipClosure(channel, topo.mouth_upper, topo.mouth_lower, near, idx, w)


def close_lips(verts: np.ndarray, topo: Topology, closure: np.ndarray) -> np.ndarray:
    """Bring upper and lower lips together by ``closure`` in [0, 1] per frame (1 = touching), in place.

    The lip gap at each mouth column is scaled by (1 - closure); then any vertical overlap left (a lip
    pushed past the other) is removed, so lips touch but never cross. Each correction spreads to the
    neighbouring rows of the same column with a short falloff. verts: (T, V, 3) float64.
    """
    return lip_closure(topo, FIELDS.index("press")).apply(verts, closure)


# -- the rig as ARKit blendshapes (the 'blendshape' variant) -------------------------------------------
# Each generator channel drives the nearest ARKit shape(s); a bilateral channel is split into the
# subject's left and right (u > 0 is the subject's left) by a smooth partition of unity, so the ARKit
# shapes sum back to the generator's field exactly and left = right in the data:
#   jaw -> jawOpen; round (protrude, narrow) -> mouthPucker; spread (corners out) -> mouthStretchLeft
#   and mouthStretchRight; press (lip closure) -> mouthClose (it also drives the closure step);
#   labiodental (lower lip under the upper teeth) -> mouthRollLower; brow -> browInnerUp,
#   browOuterUpLeft, browOuterUpRight; blink -> eyeBlinkLeft, eyeBlinkRight
ARKIT_MAP: dict[str, tuple[tuple[str, str], ...]] = {
    "jaw": (("jawOpen", "all"),),
    "round": (("mouthPucker", "all"),),
    "spread": (("mouthStretchLeft", "left"), ("mouthStretchRight", "right")),
    "press": (("mouthClose", "all"),),
    "labiodental": (("mouthRollLower", "all"),),
    "brow": (
        ("browInnerUp", "inner"), ("browOuterUpLeft", "outer_left"), ("browOuterUpRight", "outer_right"),
    ),
    "blink": (("eyeBlinkLeft", "left"), ("eyeBlinkRight", "right")),
}
ARKIT_CHANNELS = tuple(name for ch in FIELDS for name, _ in ARKIT_MAP[ch])
ARKIT_SOURCE = np.array([FIELDS.index(ch) for ch in FIELDS for _ in ARKIT_MAP[ch]], np.int64)
SIDE_WIDTH = 0.05  # u over which a bilateral shape hands over from one side to the other
INNER_BROW = 0.25  # u scale of the inner-brow share


def _parts(u: np.ndarray) -> dict[str, np.ndarray]:
    left = 0.5 * (1.0 + np.tanh(u / SIDE_WIDTH))
    inner = np.exp(-((u / INNER_BROW) ** 2))
    return {
        "all": np.ones_like(u), "left": left, "right": 1.0 - left, "inner": inner,
        "outer_left": (1.0 - inner) * left, "outer_right": (1.0 - inner) * (1.0 - left),
    }  # fmt: skip


def arkit_deltas(topo: Topology, field_stack: np.ndarray) -> np.ndarray:
    """(len(ARKIT_CHANNELS), V, 3) shapes: each generator field times its parts' partition."""
    parts = _parts(topo.u)
    return np.stack(
        [field_stack[FIELDS.index(ch)] * parts[part][:, None] for ch in FIELDS for _, part in ARKIT_MAP[ch]]
    )


def arkit_weights(w: np.ndarray) -> np.ndarray:
    """(T, len(ARKIT_CHANNELS)) weights: each generator channel's weight on each of its shapes."""
    return w[:, ARKIT_SOURCE]
