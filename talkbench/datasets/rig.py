"""A blendshape rig: weights (T, K) -> vertices (T, V, 3), so weight predictions are scored and rendered
as meshes too ("vertex-space error through the dataset's rig").

vertices = template + sum_k w_k * delta_k[subject], then an optional lip closure: the gap between
paired upper and lower lip vertices is closed by the closure channel's weight, each correction
spreading to nearby vertices of the same mouth column (SynthTalk's rig; ARKit's ``mouthClose`` in
spirit). Stored as plain arrays (``rig.npz`` in a dataset, ``rig/...`` keys in a model bundle)::

    channels (K,) str, subjects (S,) str, deltas (S, K, V, 3) float32
    closure_channel () int, closure_upper (M,), closure_lower (M,), closure_near (N,),
    closure_column (N,), closure_weight (N,)          -- absent for a purely linear rig
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from talkbench.errors import DataError

FILE = "rig.npz"


@dataclass(frozen=True)
class LipClosure:
    channel: int  # the weight channel that closes the lips, in [0, 1]
    upper: np.ndarray  # (M,) upper lip edge vertices
    lower: np.ndarray  # (M,) their lower partners
    near: np.ndarray  # (N,) vertices moved by the closure
    column: np.ndarray  # (N,) the lip pair each of them follows
    weight: np.ndarray  # (N,) signed falloff: + follows the lower lip's way, - the upper's

    def apply(self, verts: np.ndarray, closure: np.ndarray) -> np.ndarray:
        """Close the gaps by ``closure`` (T,) in place (verts (T, V, 3) float64), then remove any
        vertical overlap left, so lips touch but never cross."""
        gap = verts[:, self.upper] - verts[:, self.lower]  # (T, M, 3)
        half = 0.5 * np.clip(closure, 0.0, 1.0)[:, None, None] * gap
        verts[:, self.near] += self.weight[None, :, None] * half[:, self.column]
        overlap = np.minimum(verts[:, self.upper, 1] - verts[:, self.lower, 1], 0.0)  # (T, M)
        verts[:, self.near, 1] += self.weight[None, :] * (0.5 * overlap)[:, self.column]
        return verts


@dataclass(frozen=True)
class Rig:
    channels: tuple[str, ...]
    deltas: dict[str, np.ndarray]  # subject -> (K, V, 3)
    closure: LipClosure | None = None

    @property
    def subjects(self) -> tuple[str, ...]:
        return tuple(self.deltas)

    def decode(self, weights: np.ndarray, template: np.ndarray, subject: str) -> np.ndarray:
        """(T, V, 3) float64 vertices of ``weights`` (T, K) on ``template`` with ``subject``'s shapes."""
        if subject not in self.deltas:
            raise DataError(
                f"rig: no blendshapes for subject '{subject}' (it has {', '.join(self.subjects[:6])}...)"
            )
        w = np.asarray(weights, np.float64)
        if w.ndim != 2 or w.shape[1] != len(self.channels):
            raise DataError(f"rig: weights of shape {w.shape}; expected (T, {len(self.channels)})")
        delta = self.deltas[subject]
        verts = np.asarray(template, np.float64)[None] + np.einsum("tk,kvc->tvc", w, delta, dtype=np.float64)
        if self.closure is not None:
            self.closure.apply(verts, w[:, self.closure.channel])
        return verts

    # ---- plain arrays
    def to_arrays(self, prefix: str = "", subjects: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
        keep = tuple(s for s in (subjects or self.subjects) if s in self.deltas)
        out = {
            "channels": np.array(self.channels, dtype=str),
            "subjects": np.array(keep, dtype=str),
            "deltas": np.stack([self.deltas[s] for s in keep]).astype(np.float32),
        }
        if self.closure is not None:
            c = self.closure
            out.update(closure_channel=np.array(c.channel), closure_upper=c.upper, closure_lower=c.lower,
                       closure_near=c.near, closure_column=c.column, closure_weight=c.weight)  # fmt: skip
        return {prefix + k: v for k, v in out.items()}

    @classmethod
    def from_arrays(cls, arrays, prefix: str = "", where: str = "rig") -> Rig:
        try:
            channels = tuple(str(c) for c in arrays[prefix + "channels"])
            subjects = [str(s) for s in arrays[prefix + "subjects"]]
            deltas = np.asarray(arrays[prefix + "deltas"])
        except KeyError as exc:
            raise DataError(f"{where}: missing array {exc}; expected channels, subjects, deltas") from None
        if deltas.ndim != 4 or deltas.shape[:2] != (len(subjects), len(channels)) or deltas.shape[3] != 3:
            raise DataError(
                f"{where}: deltas of shape {deltas.shape}; expected ({len(subjects)}, {len(channels)}, V, 3)"
            )
        if not np.isfinite(deltas).all():
            raise DataError(f"{where}: deltas contain NaN or inf")
        closure = None
        if prefix + "closure_channel" in arrays:
            keys = ("upper", "lower", "near", "column")
            ids = [np.asarray(arrays[f"{prefix}closure_{k}"], np.int64) for k in keys]
            weight = np.asarray(arrays[prefix + "closure_weight"], np.float64)
            closure = LipClosure(int(arrays[prefix + "closure_channel"]), *ids, weight)
        return cls(channels, {s: deltas[i] for i, s in enumerate(subjects)}, closure)


def load_rig(path: str | Path, n_vertices: int) -> Rig:
    """``rig.npz`` of a dataset, read without pickle and checked against the mesh size."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npz of plain arrays ({exc})") from None
    rig = Rig.from_arrays(arrays, where=str(path))
    v = next(iter(rig.deltas.values())).shape[1] if rig.deltas else n_vertices
    if v != n_vertices:
        raise DataError(f"{path}: blendshapes of {v} vertices; the dataset's meshes have {n_vertices}")
    return rig
