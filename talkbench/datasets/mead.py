"""3DMEAD: MEAD speech with per-frame FLAME reconstructions (EMOTE's EMICA fits), as ProbTalk3D and
the benchmark study prepare it (shared/specs/stochastic-metrics.md §1, §2, §6).

Prepared layout (``bench data prepare 3dmead`` writes it): ``wav/<key>.wav``, ``vertices_npy/<key>.npy``
(T, 15069) FLAME meshes at 25 fps in metres, ``templates.pkl``, ``regions/lve.txt`` (428 ids) and
``regions/fdd.txt`` (1,501), ``faces.npy``. A clip key is ProbTalk3D's
``<subject>_<sentence>_<emotion>_<intensity>`` (``M003_001_0_0``; emotion 0 = neutral, 1-7 happy, sad,
surprised, fear, disgusted, angry, contempt; intensity 0-2).

Splits (ProbTalk3D ``framework/data/mead.py``, kept by the benchmark): every subject in every split,
by sentence: train = neutral 1-32 and emotional 1-24, val = neutral 33-36 and emotional 25-27,
test = neutral 37-40 and emotional 28-30. Subjects (``subject_set``): ``benchmark`` (default) = the 47
of the benchmark's own scripts (ProbTalk3D's 32 plus its 15 ``rest``); ``probtalk3d`` = the 32. Which
of the two the published numbers use is not found. Every subject is a training speaker, so test clips
are predicted under their own speaker's condition (as BIWI's Test-A). Table scales: not found.
"""

from __future__ import annotations

import json
from pathlib import Path

from talkbench.datasets.io import load_index_file, load_templates
from talkbench.datasets.prepared import TEMPLATES, PreparedDataset, require_layout
from talkbench.datasets.spec import DatasetSpec, Split
from talkbench.errors import ConfigError, DataError

N_VERTICES = 5023
FPS = 25
PROBTALK3D_SUBJECTS = (
    "M003", "M005", "M007", "M009", "M011", "M012", "M013", "M019", "M022", "M023", "M024", "M025",
    "M026", "M027", "M028", "M029", "M030", "M031", "W009", "W011", "W014", "W015", "W016", "W018",
    "W019", "W021", "W023", "W024", "W025", "W026", "W028", "W029",
)  # fmt: skip
REST_SUBJECTS = (
    "M032", "M033", "M034", "M035", "W033", "W035", "W036", "M037", "M039", "M040", "M041", "M042",
    "W037", "W038", "W040",
)  # fmt: skip
SUBJECT_SETS = {"benchmark": PROBTALK3D_SUBJECTS + REST_SUBJECTS, "probtalk3d": PROBTALK3D_SUBJECTS}
EMOTIONS = ("neutral", "happy", "sad", "surprised", "fear", "disgusted", "angry", "contempt")
CLIP_PATTERN = r"(?P<subject>[^_]+)_(?P<sentence>\d+)_(?P<group>\d)_(?P<intensity>\d)"
# (neutral range, emotional range) per split
RANGES = {"train": ((1, 32), (1, 24)), "val": ((33, 36), (25, 27)), "test": ((37, 40), (28, 30))}
REGION_FILES = {"lips": "lve.txt", "upper_face": "fdd.txt"}
META_FILE = "3dmead.json"


def splits(subjects: tuple[str, ...]) -> dict[str, Split]:
    out = {}
    for name, (neutral, emotional) in RANGES.items():
        groups = (("0", *neutral),) + tuple((str(e), *emotional) for e in range(1, len(EMOTIONS)))
        out[name] = Split(subjects, neutral, by_group=groups)
    return out


def build_spec(root: Path, templates: dict, subject_set: str = "benchmark") -> DatasetSpec:
    if subject_set not in SUBJECT_SETS:
        raise ConfigError(f"3dmead subject_set '{subject_set}': expected one of {', '.join(SUBJECT_SETS)}")
    n_vertices = next(iter(templates.values())).shape[0]
    if n_vertices != N_VERTICES:
        raise DataError(
            f"{root / TEMPLATES}: templates have {n_vertices} vertices; 3DMEAD's FLAME has {N_VERTICES}"
        )
    regions = {}
    for name, file in REGION_FILES.items():
        path = root / "regions" / file
        if not path.is_file():
            raise DataError(
                f"{path}: missing region file (ProbTalk3D's datasets/regions/{file}, as FaceDiffuser's "
                "data/vocaset/regions; 0-based comma-separated FLAME vertex ids)"
            )
        regions[name] = load_index_file(path, n_vertices)
    faces = (
        load_index_file(root / "faces.npy", n_vertices).reshape(-1, 3)
        if (root / "faces.npy").is_file()
        else None
    )
    meta: dict = {"split": "probtalk3d", "subject_set": subject_set}
    if (root / META_FILE).is_file():
        try:
            meta["prepared"] = json.loads((root / META_FILE).read_text())
        except ValueError as exc:
            raise DataError(f"{root / META_FILE}: unreadable JSON ({exc})") from exc
    subjects = SUBJECT_SETS[subject_set]
    return DatasetSpec(
        name="3dmead",
        fps=FPS,
        capture_fps=FPS,
        n_vertices=n_vertices,
        splits=splits(subjects),
        train_subjects=subjects,
        regions=regions,
        faces=faces,
        audio_alignment="interpolate",
        period=25,
        unit="m",
        clip_pattern=CLIP_PATTERN,
        meta=meta,
    )


def load_3dmead(
    root: str | Path | None = None, subject_set: str = "benchmark", audio_cache_mb: int = 512
) -> PreparedDataset:
    """Prepared 3DMEAD at ``root`` (see the module docstring; ``bench data prepare 3dmead``)."""
    if root is None:
        raise ConfigError(
            "dataset '3dmead' needs a data root (--data-root DIR); convert ProbTalk3D's param/ and wav/ "
            "with `bench data prepare 3dmead --raw DIR --out DIR --flame FLAME.npz`"
        )
    root = require_layout(root, "3dmead")
    templates = load_templates(root / TEMPLATES)
    return PreparedDataset(
        root, build_spec(root, templates, subject_set), templates, audio_cache_mb=audio_cache_mb
    )
