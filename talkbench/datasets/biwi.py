"""BIWI (B3D(AC)^2) in the prepared layout: 25 fps, 23,370 vertices, Test-A / Test-B (specs/datasets.md §2).

Two preprocessing conventions exist and their numbers are NOT comparable: 'codetalker' (per-frame
centring and sqrt(area) scaling, emotional takes e01..e40; the de-facto standard) and 'facexhubert'
(per-subject min/max normalisation, emotional takes renumbered 41..80). The one in use is recorded in
``spec.meta['preprocessing']``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from talkbench.datasets.io import load_index_file, load_templates
from talkbench.datasets.prepared import TEMPLATES, PreparedDataset, require_layout
from talkbench.datasets.spec import DatasetSpec, Split
from talkbench.errors import ConfigError, DataError

log = logging.getLogger("talkbench.datasets")

TRAIN_SUBJECTS = ("F2", "F3", "F4", "M3", "M4", "M5")
TEST_B_SUBJECTS = ("F1", "F5", "F6", "F7", "F8", "M1", "M2", "M6")
N_VERTICES = 23370
FPS = 25
TABLE_SCALES = {"lve": 1e-4, "fdd": 1e-5}
PREPROCESSING = {
    # convention -> offset of sentence ids (facexhubert renumbers the emotional takes e01..e40 to 41..80)
    "codetalker": 0,
    "facexhubert": 40,
}
PACKAGED_REGIONS = Path(__file__).resolve().parent.parent / "data" / "regions" / "biwi"
REGION_FILES = {"lips": "lve.txt", "upper_face": "fdd.txt"}


def splits(preprocessing: str = "codetalker") -> dict[str, Split]:
    """train e01-32, val e33-36, Test-A e37-40 (same 6 subjects), Test-B e37-40 (8 unseen subjects)."""
    o = PREPROCESSING[preprocessing]
    return {
        "train": Split(TRAIN_SUBJECTS, (1 + o, 32 + o)),
        "val": Split(TRAIN_SUBJECTS, (33 + o, 36 + o)),
        "test_a": Split(TRAIN_SUBJECTS, (37 + o, 40 + o)),
        "test_b": Split(TEST_B_SUBJECTS, (37 + o, 40 + o)),
    }


def load_regions(root: Path, n_vertices: int) -> tuple[dict[str, np.ndarray], str]:
    """lve.txt / fdd.txt from <root>/regions/ when present, else the packaged CodeTalker copies."""
    local = root / "regions"
    source = local if all((local / f).is_file() for f in REGION_FILES.values()) else PACKAGED_REGIONS
    regions = {name: np.unique(load_index_file(source / f, n_vertices)) for name, f in REGION_FILES.items()}
    return regions, str(source)


def build_spec(root: Path, templates: dict[str, np.ndarray], preprocessing: str) -> DatasetSpec:
    n_vertices = next(iter(templates.values())).shape[0]
    if n_vertices != N_VERTICES:
        raise DataError(
            f"{root / TEMPLATES}: templates have {n_vertices} vertices; BIWI has {N_VERTICES}. "
            "Is this another dataset's templates.pkl?"
        )
    regions, region_source = load_regions(root, n_vertices)
    return DatasetSpec(
        name="biwi",
        fps=FPS,
        capture_fps=FPS,
        n_vertices=n_vertices,
        splits=splits(preprocessing),
        train_subjects=TRAIN_SUBJECTS,
        regions=regions,
        faces=None,
        audio_alignment="pairs",
        period=25,
        eval_split="test_a",  # LVE/FDD are reported on Test-A (seen speakers, their own condition)
        unit=f"{preprocessing}-normalised",
        table_scales=dict(TABLE_SCALES),
        mouth_pair=None,
        meta={
            "preprocessing": preprocessing,
            "comparable_with": f"only BIWI results preprocessed with the '{preprocessing}' convention",
            "region_source": region_source,
        },
    )


def load_biwi(
    root: str | Path | None = None, preprocessing: str = "codetalker", audio_cache_mb: int = 512
) -> PreparedDataset:
    """Prepared BIWI at ``root`` (wav/<subj>_eXX.wav, vertices_npy/<subj>_eXX.npy, templates.pkl)."""
    if preprocessing not in PREPROCESSING:
        raise ConfigError(
            f"unknown BIWI preprocessing '{preprocessing}'; expected one of {', '.join(PREPROCESSING)}"
        )
    if root is None:
        raise ConfigError(
            "dataset 'biwi' needs a data root (--data-root DIR): B3D(AC)^2 is no longer distributed by ETH, "
            "talkbench cannot fetch it; prepare it with CodeTalker's preprocessing"
        )
    root = require_layout(root, "biwi")
    log.warning(
        "BIWI loaded with the '%s' preprocessing convention: its numbers are not comparable with BIWI "
        "numbers from the other convention (%s)",
        preprocessing,
        ", ".join(p for p in PREPROCESSING if p != preprocessing),
    )
    templates = load_templates(root / TEMPLATES)
    return PreparedDataset(
        root, build_spec(root, templates, preprocessing), templates, audio_cache_mb=audio_cache_mb
    )
