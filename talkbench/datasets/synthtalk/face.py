"""The parametric face: a (u, v) grid surface with a split mouth line, per-speaker shapes, regions, triangles.

u runs across the face (-1 right ... +1 left), v from chin (-1) to forehead (+1). The grid row nearest the
mouth line is duplicated inside the mouth span: the grid vertex is the lower lip's edge, an appended copy
the upper lip's, so the lips can part while the mouth corners (shared vertices) stay joined.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

MOUTH_V = -0.42  # mouth line in v
MOUTH_HALF_U = 0.3  # mouth span in u (canonical; a speaker's mouth width warps x, not topology)
EYE_U, EYE_V = 0.38, 0.22
REGION_NAMES = (
    "lips", "upper_lip", "lower_lip", "jaw", "cheeks", "eyes", "brows", "forehead", "upper_face",
)


@dataclass(frozen=True)
class Topology:
    """Speaker-independent structure: canonical coordinates of every vertex, triangles, regions."""

    nu: int
    nv: int
    u: np.ndarray  # (V,) canonical horizontal coordinate
    v: np.ndarray  # (V,) canonical vertical coordinate (the mouth row sits exactly at MOUTH_V)
    side: np.ndarray  # (V,) +1 above the mouth line / upper copies, -1 below / lower edge, 0 on it
    mouth_lower: np.ndarray  # (M,) ids of the lower lip edge (grid vertices of the mouth row)
    mouth_upper: np.ndarray  # (M,) ids of their upper copies, same order
    faces: np.ndarray  # (F, 3) int64
    regions: dict[str, np.ndarray]
    mouth_pair: tuple[np.ndarray, np.ndarray]  # (upper ids, lower ids) at the lip centre
    mouth_half_u: float  # |u| of the mouth corners: the lips part strictly inside it

    @property
    def n_vertices(self) -> int:
        return int(self.u.shape[0])


def _mouth_columns(u_cols: np.ndarray, n_mouth: int) -> np.ndarray:
    """The n_mouth columns nearest the centre (n_mouth has the parity of the column count)."""
    return np.sort(np.argsort(np.abs(u_cols), kind="stable")[:n_mouth])


def grid_for(n_vertices: int) -> tuple[int, int, int]:
    """(nu, nv, n_mouth): a near-square grid plus mouth copies, nu*nv + n_mouth nearest n_vertices.

    The mouth spans about 2 * MOUTH_HALF_U of the width; letting its column count vary a little makes
    exact counts (e.g. FLAME's 5023) reachable.
    """
    best = None
    side = int(round(np.sqrt(n_vertices)))
    for nu in range(max(8, side - 14), side + 3):
        m0 = MOUTH_HALF_U * (nu - 1)  # columns strictly inside the nominal span
        for m in range(max(2, int(m0) - 3), int(m0) + 4):
            if (m - nu) % 2:
                continue  # symmetric about u = 0
            nv = max(8, int(round((n_vertices - m) / nu)))
            if not nu <= nv <= 1.4 * nu:  # the face is taller than wide
                continue
            key = (abs(nu * nv + m - n_vertices), abs(m - m0), nv - nu)
            if best is None or key < best[0]:
                best = (key, (nu, nv, m))
    return best[1]


LAYOUTS = ("grid", "graded")


def _graded(x: np.ndarray, centre: float) -> np.ndarray:
    """Positions spread away from ``centre`` as |d|^1.5 (denser near it), ends and centre kept."""
    d = x - centre
    span = np.where(d < 0, centre - x.min(), x.max() - centre)
    return centre + np.sign(d) * span * (np.abs(d) / np.maximum(span, 1e-12)) ** 1.5


def graded_grid_for(n_vertices: int) -> tuple[int, int, int]:
    """(nu, nv, n_mouth) of the ``graded`` layout: columns and rows denser near the mouth, the mouth
    spanning the columns with |u| < MOUTH_HALF_U; nu * nv + n_mouth nearest ``n_vertices``."""
    best = None
    side = int(round(np.sqrt(n_vertices)))
    for nu in range(max(8, side - 14), side + 3):
        m = int((np.abs(_graded(np.linspace(-1.0, 1.0, nu), 0.0)) < MOUTH_HALF_U).sum())
        nv = max(8, int(round((n_vertices - m) / nu)))
        if m < 2 or not nu <= nv <= 1.4 * nu:
            continue
        key = (abs(nu * nv + m - n_vertices), nv - nu)
        if best is None or key < best[0]:
            best = (key, (nu, nv, m))
    return best[1]


@lru_cache(maxsize=8)
def build_topology(nu: int, nv: int, n_mouth: int, layout: str = "grid") -> Topology:
    """The face mesh. ``grid``: evenly spaced rows and columns, vertex ids row by row, cells split
    along one diagonal. ``graded`` (SynthTalk's second topology): rows and columns denser near the
    mouth, vertex ids column by column, cells split along the other diagonal; same regions by name."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown face layout {layout!r}; expected one of {LAYOUTS}")
    uc = np.linspace(-1.0, 1.0, nu)
    vr = np.linspace(-1.0, 1.0, nv)
    jm = int(np.argmin(np.abs(vr - MOUTH_V)))
    # Shift rows so the mouth row sits exactly on MOUTH_V (keeps the rest evenly spaced).
    vr = vr + (MOUTH_V - vr[jm])
    vr = np.clip(vr, -1.0, 1.0)
    if layout == "graded":
        uc, vr = _graded(uc, 0.0), _graded(vr, MOUTH_V)
    mcols = _mouth_columns(uc, n_mouth)
    corner = float(np.min(np.abs(np.delete(uc, mcols))))  # |u| of the shared mouth-corner columns
    gu, gv = np.meshgrid(uc, vr)  # (nv, nu)
    n_grid = nu * nv
    # ids[j, i]: the vertex of row j, column i
    ids = np.arange(n_grid).reshape(nv, nu) if layout == "grid" else np.arange(n_grid).reshape(nu, nv).T
    grid_u, grid_v = np.empty(n_grid), np.empty(n_grid)
    grid_u[ids], grid_v[ids] = gu, gv
    u = np.concatenate([grid_u, uc[mcols]])
    v = np.concatenate([grid_v, np.full(len(mcols), vr[jm])])
    mouth_lower = ids[jm, mcols].astype(np.int64)
    mouth_upper = np.arange(n_grid, n_grid + len(mcols), dtype=np.int64)

    side = np.sign(v - vr[jm]).astype(np.int64)
    side[mouth_lower] = -1
    side[mouth_upper] = 1

    # Triangles: the cells just above the mouth row use the upper copies.
    upper_row = ids[jm].copy()
    upper_row[mcols] = mouth_upper
    tris = []
    for j in range(nv - 1):
        lo = upper_row if j == jm else ids[j]
        hi = ids[j + 1]
        a, b = lo[:-1], lo[1:]
        c, d = hi[:-1], hi[1:]
        if layout == "grid":
            tris += [np.stack([a, b, d], 1), np.stack([a, d, c], 1)]
        else:
            tris += [np.stack([a, b, c], 1), np.stack([b, d, c], 1)]
    faces = np.concatenate(tris).astype(np.int64)

    t = v - vr[jm]
    au = np.abs(u)
    row_step = vr[1] - vr[0] if layout == "grid" else vr[jm + 1] - vr[jm]  # the rows at the mouth
    lips = (au <= corner * 1.25) & (np.abs(t) <= max(0.11, 1.6 * row_step))
    upper_lip = lips & (side >= 0)  # the mouth corners belong to both lips
    lower_lip = lips & (side <= 0)
    jaw = (t < 0) & ~lips & (au <= 0.8)
    eyes = ((au - EYE_U) / 0.2) ** 2 + ((v - EYE_V) / 0.13) ** 2 <= 1.0
    brows = (v > EYE_V + 0.1) & (v <= EYE_V + 0.32) & (au >= 0.12) & (au <= 0.7)
    forehead = v > EYE_V + 0.32
    cheeks = (au >= 0.4) & (au <= 0.9) & (v > MOUTH_V - 0.05) & (v < EYE_V - 0.15) & ~lips
    upper_face = eyes | brows | forehead
    masks = {
        "lips": lips, "upper_lip": upper_lip, "lower_lip": lower_lip, "jaw": jaw, "cheeks": cheeks,
        "eyes": eyes, "brows": brows, "forehead": forehead, "upper_face": upper_face,
    }
    regions = {k: np.flatnonzero(m).astype(np.int64) for k, m in masks.items()}
    centre = np.abs(uc[mcols]) <= 0.34 * corner + 1e-9
    if not centre.any():
        centre = np.abs(uc[mcols]) == np.abs(uc[mcols]).min()
    mouth_pair = (mouth_upper[centre], mouth_lower[centre])
    return Topology(nu, nv, u, v, side, mouth_lower, mouth_upper, faces, regions, mouth_pair, corner)


SHAPE_KEYS = ("width", "height", "depth", "mouth", "nose", "chin")


def sample_shape(rng: np.random.Generator) -> dict[str, float]:
    """Per-speaker face proportions (metres / relative factors)."""
    return {
        "width": float(0.15 * np.exp(0.06 * rng.standard_normal())),
        "height": float(0.20 * np.exp(0.06 * rng.standard_normal())),
        "depth": float(0.055 * np.exp(0.1 * rng.standard_normal())),
        "mouth": float(np.clip(0.08 * rng.standard_normal(), -0.15, 0.15)),
        "nose": float(0.022 * np.exp(0.15 * rng.standard_normal())),
        "chin": float(0.008 * np.exp(0.2 * rng.standard_normal())),
    }


def template(topo: Topology, shape: dict[str, float]) -> np.ndarray:
    """Neutral face (V, 3) float32 in metres, roughly centred on the origin, facing +z."""
    u, v = topo.u, topo.v
    # A speaker's mouth width warps x near the centre (monotonic for |mouth| <= 0.15).
    uw = u + shape["mouth"] * u * np.exp(-((u / 0.4) ** 2))
    taper = 1.0 - 0.28 * np.clip(-v - 0.25, 0.0, 1.0) ** 2  # narrower jaw and chin
    x = 0.5 * shape["width"] * uw * taper
    y = 0.5 * shape["height"] * v
    z = shape["depth"] * np.sqrt(np.clip(1.0 - 0.85 * u**2, 0.0, None)) * (1.0 - 0.25 * v**2)
    z = z + shape["nose"] * np.exp(-(u**2) / 0.012 - ((v + 0.08) ** 2) / 0.05)
    z = z + shape["chin"] * np.exp(-(u**2) / 0.08 - ((v + 0.85) ** 2) / 0.02)
    z = z + 0.006 * np.exp(-((u / MOUTH_HALF_U) ** 2) - ((v - MOUTH_V) / 0.12) ** 2)  # lips
    z = z - 0.007 * np.exp(-(((np.abs(u) - EYE_U) / 0.14) ** 2) - ((v - EYE_V) / 0.09) ** 2)  # sockets
    z = z + 0.004 * np.exp(-(((np.abs(u) - 0.4) / 0.2) ** 2) - ((v - (EYE_V + 0.2)) / 0.05) ** 2)  # brows
    return np.stack([x, y, z - shape["depth"] * 0.5], 1).astype(np.float32)
