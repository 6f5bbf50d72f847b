"""VOCASET in the prepared layout: FaceFormer's standard split, 60 -> 30 fps with [::2], FLAME regions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from talkbench.datasets.io import load_index_file, load_templates, read_ply_faces
from talkbench.datasets.prepared import TEMPLATES, PreparedDataset, require_layout
from talkbench.datasets.spec import DatasetSpec, Split
from talkbench.errors import ConfigError, DataError

# specs/datasets.md §1.4; the train list order is the one-hot order
TRAIN_SUBJECTS = (
    "FaceTalk_170728_03272_TA",
    "FaceTalk_170904_00128_TA",
    "FaceTalk_170725_00137_TA",
    "FaceTalk_170915_00223_TA",
    "FaceTalk_170811_03274_TA",
    "FaceTalk_170913_03279_TA",
    "FaceTalk_170904_03276_TA",
    "FaceTalk_170912_03278_TA",
)
VAL_SUBJECTS = ("FaceTalk_170811_03275_TA", "FaceTalk_170908_03277_TA")
TEST_SUBJECTS = ("FaceTalk_170809_00138_TA", "FaceTalk_170731_00024_TA")
SPLITS = {
    "train": Split(TRAIN_SUBJECTS, (1, 40)),
    "val": Split(VAL_SUBJECTS, (21, 40)),
    "test": Split(TEST_SUBJECTS, (21, 40)),
}
N_VERTICES = 5023
FPS, CAPTURE_FPS = 30, 60
TABLE_SCALES = {"lve": 1e-5, "fdd": 1e-7, "mve": 1e-3}
# FLAME vertex ids of the upper and lower lip midpoints (mouth-opening curve)
MOUTH_PAIR = (np.array([3546], np.int64), np.array([3504], np.int64))

# where each region may live in a data root, first match wins
REGION_FILES = {
    "lips": ("regions/lips.npy", "regions/lips.txt", "regions/lve.txt", "range/lips_coordinates.npy"),
    "upper_face": ("regions/upper_face.npy", "regions/upper_face.txt", "regions/fdd.txt"),
}


def load_regions(
    root: Path, candidates: dict[str, tuple[str, ...]], n_vertices: int
) -> dict[str, np.ndarray]:
    """Each named region from its first existing file (sorted unique ids); extra regions/*.npy too."""
    regions: dict[str, np.ndarray] = {}
    for name, paths in candidates.items():
        found = next((root / p for p in paths if (root / p).is_file()), None)
        if found is None:
            raise DataError(
                f"{root}: no '{name}' region file; expected one of {', '.join(paths)} "
                "(0-based vertex ids, .npy or comma-separated .txt)"
            )
        regions[name] = np.unique(load_index_file(found, n_vertices))
    extra = root / "regions"
    if extra.is_dir():
        for p in sorted(extra.glob("*.npy")):
            regions.setdefault(p.stem, np.unique(load_index_file(p, n_vertices)))
    return regions


def load_raw_lips(root: Path, n_vertices: int) -> np.ndarray | None:
    """The lip index file as released (file order, duplicates kept), for the methods' lip loss;
    None when the lips come from elsewhere than a file that load_regions reads."""
    found = next((root / p for p in REGION_FILES["lips"] if (root / p).is_file()), None)
    return None if found is None else load_index_file(found, n_vertices)


def build_spec(root: Path, templates: dict[str, np.ndarray]) -> DatasetSpec:
    n_vertices = next(iter(templates.values())).shape[0]
    if n_vertices != N_VERTICES:
        raise DataError(
            f"{root / TEMPLATES}: templates have {n_vertices} vertices; VOCASET (FLAME) has {N_VERTICES}. "
            "Is this another dataset's templates.pkl?"
        )
    faces = None
    ply = root / "templates" / "FLAME_sample.ply"
    if ply.is_file():
        faces = read_ply_faces(ply)
        if faces.size and faces.max() >= n_vertices:
            raise DataError(f"{ply}: face indices reach {faces.max()}; expected < {n_vertices}")
    return DatasetSpec(
        name="vocaset",
        fps=FPS,
        capture_fps=CAPTURE_FPS,
        n_vertices=n_vertices,
        splits=dict(SPLITS),
        train_subjects=TRAIN_SUBJECTS,
        regions=load_regions(root, REGION_FILES, n_vertices),
        lip_loss_indices=load_raw_lips(root, n_vertices),
        faces=faces,
        audio_alignment="interpolate",
        period=30,
        unit="m",
        table_scales=dict(TABLE_SCALES),
        mouth_pair=MOUTH_PAIR,
        meta={"split": "faceformer", "vertex_stride": CAPTURE_FPS // FPS},
    )


def load_vocaset(root: str | Path | None = None, audio_cache_mb: int = 512) -> PreparedDataset:
    """Prepared VOCASET at ``root`` (see ``bench data prepare vocaset`` to convert the release)."""
    if root is None:
        raise ConfigError(
            "dataset 'vocaset' needs a data root (--data-root DIR with wav/, vertices_npy/, templates.pkl)"
        )
    root = require_layout(root, "vocaset")
    templates = load_templates(root / TEMPLATES)
    return PreparedDataset(root, build_spec(root, templates), templates, audio_cache_mb=audio_cache_mb)
