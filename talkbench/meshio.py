"""Vertex positions of a single mesh from .npy, .obj or .ply (ascii or binary), for templates.

Only the vertex positions are read (faces come from the dataset spec). Every bad file is one
DataError naming the file and what was expected. PLY faces are read by datasets/io.read_ply_faces.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from talkbench.errors import DataError

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip
FORMATS = (".npy", ".obj", ".ply")


def read_vertices(path: str | Path) -> np.ndarray:
    """(V, 3) float32 vertex positions of the mesh in ``path``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such mesh file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        verts = _read_npy(path)
    elif suffix == ".obj":
        verts = _read_obj(path)
    elif suffix == ".ply":
        verts = _read_ply(path)
    else:
        raise DataError(f"{path}: unknown mesh format '{suffix}'; expected one of {', '.join(FORMATS)}")
    if verts.shape[0] == 0:
        raise DataError(f"{path}: the mesh has no vertices")
    if not np.isfinite(verts).all():
        raise DataError(f"{path}: vertex positions contain NaN or inf")
    return np.ascontiguousarray(verts, np.float32)


def _read_npy(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npy array ({exc})") from exc
    arr = np.squeeze(arr)
    if arr.ndim == 1 and arr.size % 3 == 0:
        arr = arr.reshape(-1, 3)  # the flat (V*3,) layout of the dataset files
    if arr.ndim != 2 or arr.shape[1] != 3 or not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"{path}: expected vertex positions of shape (V, 3) or (V*3,), got {arr.shape}")
    return arr.astype(np.float32)


def _read_obj(path: Path) -> np.ndarray:
    rows = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if line.startswith("v "):
                parts = line.split()
                try:
                    rows.append([float(x) for x in parts[1:4]])
                except ValueError:
                    raise DataError(f"{path}:{n}: malformed vertex line {line.strip()!r}") from None
                if len(rows[-1]) != 3:
                    raise DataError(f"{path}:{n}: a vertex needs x y z, got {line.strip()!r}")
    return np.asarray(rows, np.float32).reshape(-1, 3)


def _read_ply(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    end = raw.find(b"end_header")
    if not raw.startswith(b"ply") or end < 0:
        raise DataError(f"{path}: not a PLY file (no 'ply' magic / 'end_header')")
    body = raw.index(b"\n", end) + 1
    fmt, elements = "", []  # [name, count, [(prop, type or None for lists)]]
    for line in raw[:end].decode("ascii", "replace").splitlines():
        parts = line.split()
        if parts and parts[0] == "format":
            fmt = parts[1]
        elif parts and parts[0] == "element":
            elements.append((parts[1], int(parts[2]), []))
        elif parts and parts[0] == "property" and elements:
            elements[-1][2].append((parts[-1], None if parts[1] == "list" else parts[1]))
    names = [e[0] for e in elements]
    if "vertex" not in names:
        raise DataError(f"{path}: PLY has no vertex element")
    _, count, props = elements[names.index("vertex")]
    cols = [p for p, _ in props]
    if not {"x", "y", "z"} <= set(cols) or any(t is None for _, t in props):
        raise DataError(f"{path}: PLY vertices need scalar x, y, z properties, got {cols}")
    before = elements[: names.index("vertex")]
    try:
        if fmt == "ascii":
            lines = raw[body:].decode("ascii").splitlines()
            skip = sum(c for _, c, _ in before)
            table = np.array([lines[skip + i].split()[: len(cols)] for i in range(count)], np.float64)
            verts = table[:, [cols.index(a) for a in "xyz"]]
        elif fmt in ("binary_little_endian", "binary_big_endian"):
            order = "<" if fmt.endswith("little_endian") else ">"
            if any(t is None for _, _, ps in before for _, t in ps):
                raise DataError(f"{path}: PLY with a list element before the vertices is not supported")
            def row(ps):
                return np.dtype([(p, order + _PLY_TYPES[t]) for p, t in ps])

            pos = body + sum(c * row(ps).itemsize for _, c, ps in before)
            dtype = row(props)
            table = np.frombuffer(raw, dtype, count, pos)
            verts = np.stack([table[a].astype(np.float64) for a in "xyz"], axis=1)
        else:
            raise DataError(f"{path}: unsupported PLY format '{fmt}'")
    except (KeyError, ValueError, IndexError) as exc:
        raise DataError(f"{path}: malformed PLY vertex data ({exc})") from exc
    return verts.astype(np.float32)
