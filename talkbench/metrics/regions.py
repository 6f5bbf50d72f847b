"""Reading vertex index sets (region files) in the formats the reference repositories ship."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from talkbench.errors import DataError


def load_region(path: str | Path) -> np.ndarray:
    """Vertex ids from a ``.npy`` array or a text file of comma/whitespace-separated integers
    (CodeTalker's ``BIWI/regions/lve.txt``), as a 1-D int64 array in file order."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"region file {path} does not exist")
    if path.suffix == ".npy":
        a = np.load(path, allow_pickle=False)
        if not np.issubdtype(a.dtype, np.integer):
            raise DataError(f"region file {path}: expected integer vertex ids, got dtype {a.dtype}")
        ids = a.reshape(-1).astype(np.int64)
    else:
        tokens = path.read_text().replace(",", " ").split()
        try:
            ids = np.array([int(t) for t in tokens], dtype=np.int64)
        except ValueError as exc:
            raise DataError(
                f"region file {path}: expected comma-separated integer vertex ids ({exc})"
            ) from exc
    if ids.size == 0:
        raise DataError(f"region file {path} holds no vertex ids")
    if ids.min() < 0:
        raise DataError(f"region file {path} holds negative vertex ids (min {ids.min()})")
    return ids
