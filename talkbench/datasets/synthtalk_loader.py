"""Loads a generated SynthTalk directory through the prepared loader; the spec comes from synthtalk.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from talkbench.datasets.io import load_index_file, load_templates
from talkbench.datasets.prepared import TEMPLATES, PreparedDataset, require_layout
from talkbench.datasets.spec import DatasetSpec, Split
from talkbench.datasets.targets import blendshape_fields
from talkbench.datasets.vocaset import TABLE_SCALES
from talkbench.errors import ConfigError, DataError

META_FILE = "synthtalk.json"
REQUIRED_REGIONS = ("lips", "upper_face")


def read_meta(root: Path) -> dict:
    path = root / META_FILE
    if not path.is_file():
        raise DataError(
            f"{root}: not a SynthTalk directory (no {META_FILE}); make one with `bench data make synthtalk`"
        )
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable JSON ({exc})") from exc
    missing = [k for k in ("fps", "capture_fps", "split", "train_subjects") if k not in meta]
    if missing:
        raise DataError(f"{path}: missing keys {', '.join(missing)}")
    return meta


def _split(path: Path, name: str, entry: dict) -> Split:
    try:
        subjects = tuple(entry["subjects"])
        sentences = entry.get("sentences")
        return Split(subjects, None if sentences is None else (int(sentences[0]), int(sentences[1])))
    except (KeyError, TypeError, IndexError, ValueError) as exc:
        raise DataError(
            f"{path}: split '{name}' must be {{'subjects': [...], 'sentences': [lo, hi]}} ({exc})"
        ) from exc


def _order(split: str) -> tuple[int, str]:
    """train, val, test first (the JSON may hold its keys sorted), then anything else by name."""
    known = ("train", "val", "test")
    return (known.index(split) if split in known else len(known), split)


def build_spec(root: Path, templates: dict[str, np.ndarray], meta: dict) -> DatasetSpec:
    n_vertices = next(iter(templates.values())).shape[0]
    path = root / META_FILE
    if int(meta.get("n_vertices", n_vertices)) != n_vertices:
        raise DataError(
            f"{root / TEMPLATES}: templates have {n_vertices} vertices, {path} says {meta['n_vertices']}"
        )
    names = list(meta.get("regions") or [p.stem for p in sorted((root / "regions").glob("*.npy"))])
    names += [r for r in REQUIRED_REGIONS if r not in names]
    regions = {}
    for name in names:
        file = root / "regions" / f"{name}.npy"
        if not file.is_file():
            raise DataError(f"{file}: missing region file (listed in {path} or required: lips, upper_face)")
        regions[name] = load_index_file(file, n_vertices)
    faces = None
    if (root / "faces.npy").is_file():
        faces = load_index_file(root / "faces.npy", n_vertices).reshape(-1, 3)
    mouth_pair = None
    if meta.get("mouth_pair"):
        upper, lower = meta["mouth_pair"]
        mouth_pair = (np.asarray(upper, np.int64).reshape(-1), np.asarray(lower, np.int64).reshape(-1))
    fps = float(meta["fps"])
    targets = {}
    if meta.get("target", "vertices") == "blendshapes":
        targets = blendshape_fields(root, meta.get("channels") or (), n_vertices)
    return DatasetSpec(
        name=meta.get("dataset", "synthtalk"),
        fps=fps,
        capture_fps=float(meta["capture_fps"]),
        n_vertices=n_vertices,
        splits={name: _split(path, name, meta["split"][name]) for name in sorted(meta["split"], key=_order)},
        train_subjects=tuple(meta["train_subjects"]),
        regions=regions,
        faces=faces,
        audio_alignment="interpolate",
        frame_rule="samples",  # the generator's frame count, which the ground truth follows
        period=int(round(fps)),
        unit=meta.get("unit", "m"),
        table_scales=dict(TABLE_SCALES),
        mouth_pair=mouth_pair,
        meta={
            k: meta[k]
            for k in ("generator_version", "variant", "preset", "seed", "style_coupling", "speakers")
            if k in meta
        },
        **targets,
    )


def load_synthtalk(
    root: str | Path | None = None,
    preset: str = "small",
    seed: int = 0,
    style_coupling: float = 0.8,
    audio_cache_mb: int = 512,
) -> PreparedDataset:
    """A SynthTalk dir; with no root, the cached generation of (preset, seed, style_coupling)."""
    return _load(root, preset, seed, style_coupling, audio_cache_mb, "main")


def load_synthtalk_topology2(
    root: str | Path | None = None,
    preset: str = "small",
    seed: int = 0,
    style_coupling: float = 0.8,
    audio_cache_mb: int = 512,
) -> PreparedDataset:
    """SynthTalk on its second face mesh (``bench data make synthtalk --variant topology2``)."""
    return _load(root, preset, seed, style_coupling, audio_cache_mb, "topology2")


def load_synthtalk_blendshape(
    root: str | Path | None = None,
    preset: str = "small",
    seed: int = 0,
    style_coupling: float = 0.8,
    audio_cache_mb: int = 512,
) -> PreparedDataset:
    """SynthTalk with ARKit-named rig weights as targets (``--variant blendshape``)."""
    return _load(root, preset, seed, style_coupling, audio_cache_mb, "blendshape")


def _load(root, preset: str, seed: int, style_coupling: float, audio_cache_mb: int, variant: str):
    if root is None:
        try:
            from talkbench.datasets.synthtalk import ensure_synthtalk
        except ImportError as exc:
            raise ConfigError(f"the SynthTalk generator is not available ({exc}); pass a data root") from exc
        root = ensure_synthtalk(preset=preset, seed=seed, style_coupling=style_coupling, variant=variant)
    root = require_layout(root, "synthtalk")
    meta = read_meta(root)
    found = meta.get("variant", "main")
    if found != variant:
        wanted = "synthtalk" if variant == "main" else f"synthtalk-{variant}"
        raise DataError(
            f"{root / META_FILE}: a SynthTalk '{found}' dataset, not '{variant}'; load it as "
            f"'{meta.get('dataset', 'synthtalk')}' (or give {wanted} its own data root)"
        )
    templates = load_templates(root / TEMPLATES)
    return PreparedDataset(root, build_spec(root, templates, meta), templates, audio_cache_mb=audio_cache_mb)
