"""Per-vertex smooth normals, vectorised over frames."""

from __future__ import annotations

import numpy as np
from scipy import sparse


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals. vertices (T, V, 3) or (V, 3), faces (F, 3) -> same shape, unit."""
    single = vertices.ndim == 2
    verts = vertices[None] if single else vertices
    t, v, _ = verts.shape
    e1 = verts[:, faces[:, 1]] - verts[:, faces[:, 0]]
    e2 = verts[:, faces[:, 2]] - verts[:, faces[:, 0]]
    face_n = np.cross(e1, e2)  # (T, F, 3); length = 2 * area, so the sum is area-weighted
    n_faces = len(faces)
    incidence = sparse.csr_matrix(
        (np.ones(3 * n_faces), (faces.T.reshape(-1), np.tile(np.arange(n_faces), 3))), shape=(v, n_faces)
    )
    summed = incidence @ face_n.transpose(1, 0, 2).reshape(n_faces, -1)  # (V, T * 3)
    normals = summed.reshape(v, t, 3).transpose(1, 0, 2)
    normals = normals / np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-12)
    normals = normals.astype(np.float32)
    return normals[0] if single else normals
