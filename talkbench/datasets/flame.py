"""The FLAME head model read from a safe .npz, and its forward pass (linear blend skinning) in NumPy.

The official FLAME release (flame.is.tue.mpg.de, ``generic_model.pkl``) is a pickle holding chumpy
objects and a SciPy sparse matrix: loading it would run code from the file, so talkbench never opens
it. Convert it once, in an environment of your own that has chumpy installed::

    import pickle, numpy as np
    with open("generic_model.pkl", "rb") as f:
        m = pickle.load(f, encoding="latin1")          # the one time the official pickle is opened
    dense = lambda x: np.asarray(x.todense() if hasattr(x, "todense") else x)
    np.savez("flame2020.npz", v_template=np.asarray(m["v_template"]),
             shapedirs=np.asarray(m["shapedirs"]), posedirs=np.asarray(m["posedirs"]),
             J_regressor=dense(m["J_regressor"]), weights=np.asarray(m["weights"]),
             kintree=np.asarray(m["kintree_table"]), faces=np.asarray(m["f"]))

The .npz then holds (V vertices, J joints, FLAME: V = 5023, J = 5, 300 shape + 100 expression
components, P = 9 * (J - 1) = 36 pose-corrective components):

| key | shape | meaning |
|---|---|---|
| v_template | (V, 3) | mean head, metres |
| shapedirs | (V, 3, S + E) | identity (first S = 300) then expression (E = 100) components |
| posedirs | (V, 3, P) or (P, 3V) | pose correctives, driven by the rotation matrices minus I of joints 1.. |
| J_regressor | (J, V) | joint locations from the shaped mesh |
| weights | (V, J) | skinning weights |
| kintree | (2, J) | row 0: parent of each joint (root: any negative or out-of-range value) |
| faces | (F, 3) | triangles |

It is read with ``allow_pickle=False``: an array of Python objects is refused.

Joint order (FLAME): 0 global (root), 1 neck, 2 jaw, 3 left eye, 4 right eye; a pose is their
axis-angle rotations concatenated, (J * 3,).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from talkbench.errors import DataError

N_SHAPE = 300  # FLAME 2020/2023: identity components before the expression ones in shapedirs
JAW_JOINT = 2
CHUNK = 64  # frames per skinning step
KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree", "faces")


@dataclass(frozen=True)
class FlameModel:
    v_template: np.ndarray  # (V, 3) float64
    shapedirs: np.ndarray  # (V, 3, S + E)
    posedirs: np.ndarray  # (V, 3, P)
    J_regressor: np.ndarray  # (J, V)
    weights: np.ndarray  # (V, J)
    parents: np.ndarray  # (J,) int64, -1 for the root
    faces: np.ndarray  # (F, 3) int64
    n_shape: int = N_SHAPE

    @property
    def n_vertices(self) -> int:
        return int(self.v_template.shape[0])

    @property
    def n_joints(self) -> int:
        return int(self.parents.shape[0])

    @property
    def n_expression(self) -> int:
        return int(self.shapedirs.shape[2] - self.n_shape)


def load_flame(path: str | Path, n_shape: int = N_SHAPE) -> FlameModel:
    """The model in ``path`` (.npz with :data:`KEYS`), checked for shapes and finite values."""
    path = Path(path).expanduser()
    if path.suffix == ".pkl":
        raise DataError(
            f"{path}: the official FLAME pickle is not read (unpickling runs code from the file); convert it "
            "once to .npz as talkbench.datasets.flame's docstring shows, then pass the .npz"
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise DataError(f"{path}: no FLAME model file; expected an .npz with {', '.join(KEYS)}") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npz of plain arrays ({exc})") from None
    missing = [k for k in KEYS if k not in arrays]
    if missing:
        raise DataError(f"{path}: missing arrays {', '.join(missing)}; expected {', '.join(KEYS)}")
    v_template = np.asarray(arrays["v_template"], np.float64)
    if v_template.ndim != 2 or v_template.shape[1] != 3:
        raise DataError(f"{path}: v_template has shape {v_template.shape}; expected (V, 3)")
    v = v_template.shape[0]
    kintree = np.asarray(arrays["kintree"]).astype(np.int64)
    if kintree.ndim != 2 or kintree.shape[0] != 2:
        raise DataError(f"{path}: kintree has shape {kintree.shape}; expected (2, J)")
    j = kintree.shape[1]
    parents = np.where((kintree[0] < 0) | (kintree[0] >= j), -1, kintree[0])
    if parents[0] != -1 or np.any(parents[1:] >= np.arange(1, j)) or np.any(parents[1:] < 0):
        raise DataError(f"{path}: kintree must list joint 0 as the root and each parent before its child")
    shapedirs = np.asarray(arrays["shapedirs"], np.float64)
    posedirs = np.asarray(arrays["posedirs"], np.float64)
    p = 9 * (j - 1)
    if posedirs.shape == (p, 3 * v):  # the layout of the PyTorch FLAME ports
        posedirs = posedirs.T.reshape(v, 3, p)
    expected = {
        "shapedirs": (shapedirs, (v, 3, None)),
        "posedirs": (posedirs, (v, 3, p)),
        "J_regressor": (np.asarray(arrays["J_regressor"], np.float64), (j, v)),
        "weights": (np.asarray(arrays["weights"], np.float64), (v, j)),
        "faces": (np.asarray(arrays["faces"]), (None, 3)),
    }
    for key, (arr, shape) in expected.items():
        if arr.ndim != len(shape) or any(s is not None and a != s for a, s in zip(arr.shape, shape)):
            want = ", ".join("*" if s is None else str(s) for s in shape)
            raise DataError(f"{path}: {key} has shape {arr.shape}; expected ({want})")
    if shapedirs.shape[2] < n_shape:
        raise DataError(f"{path}: shapedirs has {shapedirs.shape[2]} components; expected at least {n_shape}")
    for key in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights"):
        if not np.isfinite(np.asarray(arrays[key], np.float64)).all():
            raise DataError(f"{path}: {key} contains NaN or inf")
    faces = expected["faces"][0].astype(np.int64)
    if faces.size and (faces.min() < 0 or faces.max() >= v):
        raise DataError(f"{path}: faces index vertices {faces.min()}..{faces.max()}; expected 0..{v - 1}")
    return FlameModel(
        v_template, shapedirs, posedirs, expected["J_regressor"][0], expected["weights"][0], parents, faces,
        n_shape,
    )  # fmt: skip


def rodrigues(axis_angle: np.ndarray) -> np.ndarray:
    """(..., 3) axis-angle vectors -> (..., 3, 3) rotation matrices (identity for a zero vector)."""
    aa = np.asarray(axis_angle, np.float64)
    angle = np.linalg.norm(aa, axis=-1, keepdims=True)
    axis = aa / np.maximum(angle, 1e-12)
    x, y, z = axis[..., 0], axis[..., 1], axis[..., 2]
    zero = np.zeros_like(x)
    k = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], axis=-1).reshape(*aa.shape[:-1], 3, 3)
    s, c = np.sin(angle)[..., None], np.cos(angle)[..., None]
    return np.eye(3) + s * k + (1.0 - c) * (k @ k)


def flame_vertices(
    model: FlameModel,
    shape: np.ndarray | None = None,
    expression: np.ndarray | None = None,
    pose: np.ndarray | None = None,
) -> np.ndarray:
    """Meshes (T, V, 3) float64 for T frames: ``shape`` (S',) or (T, S') identity coefficients,
    ``expression`` (T, E') and ``pose`` (T, J * 3) axis-angle, each zero-padded to the model's size
    (missing = zeros). The FLAME forward pass: blend shapes, joint regression, pose correctives,
    forward kinematics along the tree, linear blend skinning."""
    n = next((np.asarray(a).shape[0] for a in (expression, pose) if a is not None), 1)
    coeffs = np.zeros((n, model.shapedirs.shape[2]))
    if shape is not None:
        s = np.atleast_2d(np.asarray(shape, np.float64))
        coeffs[:, : s.shape[1]] = s[:, : model.n_shape]
    if expression is not None:
        e = np.asarray(expression, np.float64).reshape(n, -1)[:, : model.n_expression]
        coeffs[:, model.n_shape : model.n_shape + e.shape[1]] = e
    full_pose = np.zeros((n, model.n_joints, 3))
    if pose is not None:
        p = np.asarray(pose, np.float64).reshape(n, -1, 3)
        full_pose[:, : p.shape[1]] = p
    out = np.empty((n, model.n_vertices, 3))
    for lo in range(0, n, CHUNK):  # a chunk at a time: (frames, V, 4, 4) transforms stay small
        hi = min(n, lo + CHUNK)
        out[lo:hi] = _skin(model, coeffs[lo:hi], full_pose[lo:hi])
    return out


def _skin(model: FlameModel, coeffs: np.ndarray, full_pose: np.ndarray) -> np.ndarray:
    n = coeffs.shape[0]
    shaped = model.v_template[None] + np.einsum("vck,tk->tvc", model.shapedirs, coeffs)
    joints = np.einsum("jv,tvc->tjc", model.J_regressor, shaped)
    rot = rodrigues(full_pose)  # (T, J, 3, 3)
    pose_feature = (rot[:, 1:] - np.eye(3)).reshape(n, -1)
    posed = shaped + np.einsum("vcp,tp->tvc", model.posedirs, pose_feature)
    # world transforms of the joints, then relative to their rest position
    world = np.zeros((n, model.n_joints, 4, 4))
    for j in range(model.n_joints):
        parent = model.parents[j]
        local = np.zeros((n, 4, 4))
        local[:, :3, :3] = rot[:, j]
        local[:, :3, 3] = joints[:, j] - (joints[:, parent] if parent >= 0 else 0.0)
        local[:, 3, 3] = 1.0
        world[:, j] = local if parent < 0 else world[:, parent] @ local
    rel = world.copy()
    rel[..., :3, 3] -= np.einsum("tjab,tjb->tja", world[..., :3, :3], joints)
    blend = np.einsum("vj,tjab->tvab", model.weights, rel[..., :3, :])  # (T, V, 3, 4)
    return np.einsum("tvab,tvb->tva", blend[..., :3], posed) + blend[..., 3]
