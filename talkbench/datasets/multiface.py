"""Multiface as FaceDiffuser prepares it: meshtalk's 6,172-vertex re-topology, 30 fps, 13 subjects
(shared/specs/datasets.md §3, stochastic-metrics.md §2 and §6).

Prepared layout (``bench data prepare multiface`` writes it; FaceDiffuser's own output loads too):
``wav/<id>_<NN>.wav``, ``vertices_npy/<id>_<NN>.npy`` (T, 18516) at 30 fps, ``templates.pkl``
{id: (6172, 3)}, ``regions/`` with meshtalk's ``weighted_mouth_mask.txt`` and ``forehead_mask.txt``
(one weight per vertex) or ``lve.txt``/``fdd.txt`` index files, optional ``faces.npy``. Subject ids
are ``1``..``13``, sentence ids ``01``..``50`` (FaceDiffuser's table, prepare_multiface.SENTENCES).

Splits, as FaceDiffuser's loader and metric script and the benchmark's configs use them: the nine
training subjects train on sentences 1-40, validate on 41-45 and are tested on 46-50 conditioned on
themselves (the metric script iterates the training subjects); the four unseen subjects' 46-50 are
``test_unseen`` (one prediction per training condition, as BIWI's Test-B).

Regions (``region_set``): ``masks`` (default, FaceDiffuser's metric script): lips = vertices whose
mouth-mask weight exceeds 0.1 (1,438 on the real mask), upper face = forehead-mask weight above 0.4
(656); ``files``: the shipped ``lve.txt`` (1,035 ids) / ``fdd.txt`` (1,529). Which one the benchmark
used is not found; the choice is recorded in ``spec.meta``. Table scales: not found in any code, so
none are set (values are shown unscaled).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from talkbench.datasets.io import load_index_file, load_templates
from talkbench.datasets.prepared import TEMPLATES, PreparedDataset, require_layout
from talkbench.datasets.spec import DatasetSpec, Split
from talkbench.errors import ConfigError, DataError

N_VERTICES = 6172
FPS = 30
TRAIN_SUBJECTS = ("2", "3", "6", "7", "9", "10", "11", "12", "13")
UNSEEN_SUBJECTS = ("1", "4", "5", "8")
SPLITS = {
    "train": Split(TRAIN_SUBJECTS, (1, 40)),
    "val": Split(TRAIN_SUBJECTS, (41, 45)),
    "test": Split(TRAIN_SUBJECTS, (46, 50)),
    "test_unseen": Split(UNSEEN_SUBJECTS, (46, 50)),
}
MASK_FILES = {"lips": ("weighted_mouth_mask.txt", 0.1), "upper_face": ("forehead_mask.txt", 0.4)}
INDEX_FILES = {"lips": "lve.txt", "upper_face": "fdd.txt"}
REGION_SETS = ("masks", "files")
META_FILE = "multiface.json"


def read_mask(path: Path, n_vertices: int) -> np.ndarray:
    """One weight per line (meshtalk's mask files), as float64 (n_vertices,)."""
    try:
        values = np.array([float(x) for x in path.read_text().split()], np.float64)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable vertex mask ({exc}); expected one weight per line") from exc
    if values.shape != (n_vertices,):
        raise DataError(f"{path}: {values.size} weights; expected one per vertex ({n_vertices})")
    return values


def load_regions(root: Path, region_set: str, n_vertices: int) -> dict[str, np.ndarray]:
    regions: dict[str, np.ndarray] = {}
    for name in MASK_FILES:
        if region_set == "masks":
            file, threshold = MASK_FILES[name]
            path = root / "regions" / file
            if not path.is_file():
                raise DataError(
                    f"{path}: missing vertex mask (meshtalk's {file}; region_set 'files' uses "
                    f"regions/{INDEX_FILES[name]} instead)"
                )
            regions[name] = np.flatnonzero(read_mask(path, n_vertices) > threshold).astype(np.int64)
            if regions[name].size == 0:
                raise DataError(f"{path}: no vertex weighs more than {threshold}; the region would be empty")
        else:
            path = root / "regions" / INDEX_FILES[name]
            if not path.is_file():
                raise DataError(f"{path}: missing region file (0-based vertex ids, comma-separated)")
            regions[name] = np.unique(load_index_file(path, n_vertices))
    return regions


def build_spec(root: Path, templates: dict[str, np.ndarray], region_set: str = "masks") -> DatasetSpec:
    if region_set not in REGION_SETS:
        raise ConfigError(f"multiface region_set '{region_set}': expected one of {', '.join(REGION_SETS)}")
    n_vertices = next(iter(templates.values())).shape[0]
    if n_vertices != N_VERTICES:
        raise DataError(
            f"{root / TEMPLATES}: templates have {n_vertices} vertices; Multiface in meshtalk's re-topology "
            f"has {N_VERTICES}. Is this another dataset's templates.pkl?"
        )
    faces = None
    if (root / "faces.npy").is_file():
        faces = load_index_file(root / "faces.npy", n_vertices).reshape(-1, 3)
    meta = {"split": "facediffuser", "region_set": region_set}
    if (root / META_FILE).is_file():
        try:
            meta["prepared"] = json.loads((root / META_FILE).read_text())
        except ValueError as exc:
            raise DataError(f"{root / META_FILE}: unreadable JSON ({exc})") from exc
    units = meta.get("prepared", {}).get("units", "facediffuser")
    return DatasetSpec(
        name="multiface",
        fps=FPS,
        capture_fps=FPS,
        n_vertices=n_vertices,
        splits=dict(SPLITS),
        train_subjects=TRAIN_SUBJECTS,
        regions=load_regions(root, region_set, n_vertices),
        faces=faces,
        audio_alignment="interpolate",
        period=30,
        unit="m" if units == "metres" else f"{units}-normalised",
        meta=meta,
    )


def load_multiface(
    root: str | Path | None = None, region_set: str = "masks", audio_cache_mb: int = 512
) -> PreparedDataset:
    """Prepared Multiface at ``root`` (see the module docstring; ``bench data prepare multiface``)."""
    if root is None:
        raise ConfigError(
            "dataset 'multiface' needs a data root (--data-root DIR); convert the Multiface release "
            "with `bench data prepare multiface --raw DIR --out DIR`"
        )
    root = require_layout(root, "multiface")
    templates = load_templates(root / TEMPLATES)
    spec = build_spec(root, templates, region_set)
    return PreparedDataset(root, spec, templates, audio_cache_mb=audio_cache_mb)
