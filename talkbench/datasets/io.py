"""File readers of the dataset layer: safe pickles, region files, PLY faces.

Everything here turns a bad file into one ``DataError`` that names the file and what was expected.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from talkbench.errors import DataError

# --------------------------------------------------------------------------------------------- pickles
# What a templates/audio/index pickle may contain: dicts, lists, strings and numbers are built by opcodes
# without find_class; the only globals admitted are those numpy needs to rebuild arrays, dtypes, scalars.
_NUMPY_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    # protocol-2 pickles from Python 3 store bytes (the array data) as _codecs.encode(str, 'latin1')
    ("_codecs", "encode"),
}


class _PlainDataUnpickler(pickle.Unpickler):
    def __init__(self, file, path: Path):
        super().__init__(file, encoding="latin1")
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY_GLOBALS:
            return super().find_class(module, name)
        raise DataError(
            f"{self._path}: refused to load pickle: it references {module}.{name}; only plain data "
            "(dicts, strings, numbers, numpy arrays) is allowed"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(f"{self._path}: refused to load pickle: it uses persistent ids")


def _check_plain(obj: Any, path: Path, depth: int = 0) -> None:
    """Second line of defence: the loaded tree holds only plain containers, numbers, strings, arrays."""
    if depth > 64:
        raise DataError(f"{path}: pickle nests deeper than 64 levels")
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check_plain(k, path, depth + 1)
            _check_plain(v, path, depth + 1)
    elif isinstance(obj, list | tuple | set | frozenset):
        for v in obj:
            _check_plain(v, path, depth + 1)
    elif isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise DataError(f"{path}: pickle holds an object-dtype array; only numeric arrays are allowed")
    elif obj is None or isinstance(obj, str | bytes | bool | int | float | complex | np.generic):
        if isinstance(obj, np.generic) and obj.dtype.hasobject:
            raise DataError(f"{path}: pickle holds an object scalar; only numeric values are allowed")
    else:
        raise DataError(f"{path}: pickle holds a {type(obj).__name__}; only plain data is allowed")


def load_pickle(path: str | Path) -> Any:
    """Load a pickle of plain data (Python 2 pickles too: encoding='latin1'); never runs code."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    try:
        obj = _PlainDataUnpickler(io.BytesIO(raw), path).load()
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: not a readable pickle ({type(exc).__name__}: {exc})") from exc
    _check_plain(obj, path)
    return obj


def load_templates(path: str | Path) -> dict[str, np.ndarray]:
    """templates.pkl -> {subject: (V, 3) float32}; flat (V*3,) templates are reshaped."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: missing; expected a templates.pkl with {{subject: (V, 3) array}}")
    obj = load_pickle(path)
    if not isinstance(obj, dict) or not obj:
        raise DataError(
            f"{path}: expected a non-empty dict {{subject: (V, 3) array}}, got {type(obj).__name__}"
        )
    out: dict[str, np.ndarray] = {}
    n_vertices = None
    for key, value in obj.items():
        key = key.decode("latin1") if isinstance(key, bytes) else key
        if not isinstance(key, str):
            raise DataError(f"{path}: template keys must be subject names, got {key!r}")
        arr = np.asarray(value)
        if arr.ndim == 1 and arr.size % 3 == 0:
            arr = arr.reshape(-1, 3)
        if arr.ndim != 2 or arr.shape[1] != 3 or not np.issubdtype(arr.dtype, np.number):
            raise DataError(f"{path}: template of '{key}' has shape {arr.shape}; expected (V, 3) numbers")
        if not np.isfinite(arr).all():
            raise DataError(f"{path}: template of '{key}' contains NaN or inf")
        if n_vertices is not None and arr.shape[0] != n_vertices:
            raise DataError(
                f"{path}: template of '{key}' has {arr.shape[0]} vertices, others have {n_vertices}"
            )
        n_vertices = arr.shape[0]
        out[key] = np.ascontiguousarray(arr, np.float32)
    return out


# --------------------------------------------------------------------------------------------- regions
def load_index_file(path: str | Path, n_vertices: int | None = None) -> np.ndarray:
    """A vertex index set from .npy (int array) or .txt (comma/whitespace separated, 0-based)."""
    path = Path(path)
    try:
        if path.suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        else:
            text = path.read_text().replace(",", " ").split()
            arr = np.array([int(float(t)) for t in text], dtype=np.int64)
    except (OSError, ValueError) as exc:
        raise DataError(
            f"{path}: unreadable vertex index file ({exc}); expected 0-based integer ids"
        ) from exc
    arr = np.asarray(arr).reshape(-1)
    if arr.size == 0:
        raise DataError(f"{path}: empty vertex index file")
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.floating) or not np.all(arr == np.round(arr)):
            raise DataError(f"{path}: vertex ids must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.min() < 0 or (n_vertices is not None and arr.max() >= n_vertices):
        raise DataError(
            f"{path}: vertex ids span {arr.min()}..{arr.max()}; expected 0..{(n_vertices or 0) - 1}"
        )
    return arr


# ------------------------------------------------------------------------------------------------- PLY
_PLY_TYPES = {
    "char": "i1",
    "int8": "i1",
    "uchar": "u1",
    "uint8": "u1",
    "short": "i2",
    "int16": "i2",
    "ushort": "u2",
    "uint16": "u2",
    "int": "i4",
    "int32": "i4",
    "uint": "u4",
    "uint32": "u4",
    "float": "f4",
    "float32": "f4",
    "double": "f8",
    "float64": "f8",
}


def read_ply_faces(path: str | Path) -> np.ndarray:
    """Triangle list (F, 3) int64 of a PLY mesh (ascii or binary); vertices are skipped."""
    path = Path(path)
    raw = path.read_bytes()
    end = raw.find(b"end_header")
    if not raw.startswith(b"ply") or end < 0:
        raise DataError(f"{path}: not a PLY file (no 'ply' magic / 'end_header')")
    header = raw[:end].decode("ascii", "replace").splitlines()
    body_start = raw.index(b"\n", end) + 1
    fmt = ""
    elements: list[list] = []  # [name, count, [(prop, type) or (prop, (count_type, item_type))]]
    for line in header:
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "format":
            fmt = parts[1]
        elif parts[0] == "element":
            elements.append([parts[1], int(parts[2]), []])
        elif parts[0] == "property" and elements:
            if parts[1] == "list":
                elements[-1][2].append((parts[4], (parts[2], parts[3])))
            else:
                elements[-1][2].append((parts[2], parts[1]))
    try:
        if fmt == "ascii":
            return _ply_faces_ascii(raw[body_start:], elements)
        if fmt in ("binary_little_endian", "binary_big_endian"):
            return _ply_faces_binary(raw, body_start, elements, "<" if fmt.endswith("little_endian") else ">")
    except (KeyError, ValueError, IndexError) as exc:
        raise DataError(f"{path}: malformed PLY body ({exc})") from exc
    raise DataError(f"{path}: unsupported PLY format '{fmt}'")


def _ply_faces_ascii(body: bytes, elements: list[list]) -> np.ndarray:
    lines = body.decode("ascii").splitlines()
    pos = 0
    for name, count, _props in elements:
        if name == "face":
            rows = []
            for i in range(count):
                vals = [int(float(x)) for x in lines[pos + i].split()]
                rows.append(vals[1 : 1 + vals[0]])  # a list property starts with its length
            return _triangulate(rows)
        pos += count
    return np.zeros((0, 3), np.int64)


def _ply_faces_binary(raw: bytes, pos: int, elements: list[list], order: str) -> np.ndarray:
    for name, count, props in elements:
        has_list = any(isinstance(t, tuple) for _, t in props)
        if not has_list:
            dtype = np.dtype([(p, order + _PLY_TYPES[t]) for p, t in props])
            if name == "face":
                raise ValueError("face element without a vertex index list")
            pos += dtype.itemsize * count
            continue
        rows = []
        for _ in range(count):
            row = None
            for _p, t in props:
                if isinstance(t, tuple):
                    ct, it = (np.dtype(order + _PLY_TYPES[x]) for x in t)
                    n = int(np.frombuffer(raw, ct, 1, pos)[0])
                    pos += ct.itemsize
                    vals = np.frombuffer(raw, it, n, pos)
                    pos += it.itemsize * n
                    row = row if row is not None else vals.tolist()
                else:
                    pos += np.dtype(_PLY_TYPES[t]).itemsize
            rows.append(row or [])
        if name == "face":
            return _triangulate(rows)
    return np.zeros((0, 3), np.int64)


def _triangulate(rows: list[list[int]]) -> np.ndarray:
    """Fan-triangulate polygons given as vertex index lists."""
    tris = []
    for idx in rows:
        for k in range(1, len(idx) - 1):
            tris.append((idx[0], idx[k], idx[k + 1]))
    return np.asarray(tris, np.int64).reshape(-1, 3)


# ------------------------------------------------------------------------------------------------- OBJ
def read_obj_faces(path: str | Path) -> np.ndarray:
    """Triangle list (F, 3) int64 of an OBJ mesh, 0-based (``f a/b/c ...`` polygons fan-triangulated)."""
    path = Path(path)
    rows = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(f, 1):
                if line.startswith("f "):
                    try:
                        rows.append([int(tok.split("/")[0]) - 1 for tok in line.split()[1:]])
                    except ValueError:
                        raise DataError(f"{path}:{n}: malformed face line {line.strip()!r}") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not rows:
        raise DataError(f"{path}: no faces ('f' lines) in this OBJ file")
    return _triangulate(rows)
