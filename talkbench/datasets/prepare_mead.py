"""Convert 3DMEAD as ProbTalk3D prepares it to the prepared layout (mead.py), FLAME parameters -> meshes.

Input (``--raw DIR``), the output of ProbTalk3D's ``datasets/3DMEAD_preprocess`` scripts::

    <raw>/param/<key>.npy          (1, T, 403) or (T, 403) at 25 fps: 300 shape, 100 expression, 3 jaw
    <raw>/wav/<key>.wav            MEAD's audio of the same take
    <raw>/vertices_npy/<key>.npy   optional: meshes already made, (T, 15069) or (T, 5023, 3), used as is
    <raw>/regions/ or --regions DIR: lve.txt, fdd.txt

Meshes follow ProbTalk3D's evaluation (``transfer_to_vert``): the first 50 expression coefficients
(the rest zero), the jaw pose from the file, zero global, neck and eye poses, and zero shape, so
identity never enters the error (``shape="zero"``, the default; every template is FLAME's mean head).
``shape="subject"`` keeps each frame's own shape coefficients instead, and a subject's template is
FLAME at the mean of its shape coefficients (no expression, no pose). The FLAME model comes from a
safe .npz (``--flame``; see talkbench.datasets.flame for the one-time conversion of the official file).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from talkbench.audio.signal import audio_info
from talkbench.datasets import atomic
from talkbench.datasets.flame import JAW_JOINT, N_SHAPE, flame_vertices, load_flame
from talkbench.datasets.mead import CLIP_PATTERN, META_FILE, N_VERTICES, REGION_FILES
from talkbench.datasets.prepared import TEMPLATES, VERTS_DIR, WAV_DIR, parse_clip
from talkbench.errors import ConfigError, DataError

log = logging.getLogger("talkbench.datasets")

N_PARAMS = 403  # 300 shape + 100 expression + 3 jaw
N_EXPRESSION = 50  # ProbTalk3D uses the first 50 expression coefficients
SHAPES = ("zero", "subject")


@dataclass
class MeadReport:
    written: int = 0
    from_params: int = 0  # clips whose meshes were made from FLAME parameters here
    skipped: list[str] = field(default_factory=list)  # takes with motion but no audio
    out: Path | None = None


def read_params(path: Path) -> np.ndarray:
    """(T, 403) float64 FLAME parameters of one take, checked."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(
            f"{path}: unreadable parameter file ({exc}); expected float (1, T, {N_PARAMS})"
        ) from exc
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2 or arr.shape[1] != N_PARAMS or arr.shape[0] == 0:
        raise DataError(
            f"{path}: shape {arr.shape}; expected (1, T, {N_PARAMS}): 300 shape, 100 expression, 3 jaw"
        )
    if not np.isfinite(arr).all():
        raise DataError(f"{path}: FLAME parameters contain NaN or inf")
    return arr.astype(np.float64)


def params_to_vertices(model, params: np.ndarray, shape: str, n_expression: int = N_EXPRESSION) -> np.ndarray:
    """(T, 5023, 3) meshes from (T, 403) parameters under the module docstring's protocol."""
    pose = np.zeros((params.shape[0], model.n_joints * 3))
    pose[:, 3 * JAW_JOINT : 3 * JAW_JOINT + 3] = params[:, N_SHAPE + 100 :]
    betas = params[:, :N_SHAPE] if shape == "subject" else None
    return flame_vertices(model, betas, params[:, N_SHAPE : N_SHAPE + n_expression], pose)


def _given_vertices(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable vertex file ({exc})") from exc
    arr = arr.reshape(arr.shape[0], -1) if arr.ndim == 3 else arr
    if arr.ndim != 2 or arr.shape[1] != 3 * N_VERTICES:
        raise DataError(f"{path}: shape {arr.shape}; expected (T, {3 * N_VERTICES}) FLAME vertices")
    return arr.astype(np.float32)


def prepare_3dmead(
    raw: str | Path,
    out: str | Path,
    flame: str | Path | None = None,
    regions: str | Path | None = None,
    shape: str = "zero",
    n_expression: int = N_EXPRESSION,
) -> MeadReport:
    """Write ``out`` in the prepared layout; see the module docstring."""
    if shape not in SHAPES:
        raise ConfigError(f"3dmead shape '{shape}': expected one of {', '.join(SHAPES)}")
    raw, out = Path(raw).expanduser(), Path(out).expanduser()
    params = {p.stem: p for p in (raw / "param").glob("*.npy")}
    given = {p.stem: p for p in (raw / VERTS_DIR).glob("*.npy")}
    wavs = {p.stem: p for p in (raw / WAV_DIR).glob("*.wav")}
    if not (params or given) or not wavs:
        raise DataError(
            f"{raw}: not a prepared 3DMEAD folder: expected param/<key>.npy (or vertices_npy/<key>.npy) and "
            "wav/<key>.wav, as ProbTalk3D's datasets/3DMEAD_preprocess scripts write them"
        )
    for stem in sorted(params.keys() | given.keys()):
        parse_clip(stem, params.get(stem) or given[stem], CLIP_PATTERN)  # every name, before writing
    model = None
    if set(params) - set(given):
        if flame is None:
            raise ConfigError(
                "3dmead: FLAME parameters need the FLAME model to become meshes: pass --flame FLAME.npz "
                "(converted once from the official generic_model.pkl; see talkbench.datasets.flame)"
            )
        model = load_flame(flame)
        if model.n_vertices != N_VERTICES:
            raise DataError(f"{flame}: {model.n_vertices} vertices; FLAME has {N_VERTICES}")
    region_dir = Path(regions).expanduser() if regions is not None else raw / "regions"
    missing = [f for f in REGION_FILES.values() if not (region_dir / f).is_file()]
    if missing:
        raise DataError(
            f"{region_dir}: missing {', '.join(missing)} (the 3DMEAD lip and upper-face vertex sets)"
        )

    (out / WAV_DIR).mkdir(parents=True, exist_ok=True)
    (out / VERTS_DIR).mkdir(parents=True, exist_ok=True)
    report = MeadReport(out=out)
    shapes: dict[str, list[np.ndarray]] = {}
    stems = sorted(params.keys() | given.keys())
    for k, stem in enumerate(stems, 1):
        if stem not in wavs:
            report.skipped.append(stem)
            continue
        audio_info(wavs[stem])  # an unreadable WAV is named before anything of the take is written
        subject = parse_clip(stem, None, CLIP_PATTERN)[0]
        if stem in given:
            verts = _given_vertices(given[stem])
        else:
            p = read_params(params[stem])
            shapes.setdefault(subject, []).append(p[:, :N_SHAPE].mean(axis=0))
            verts = params_to_vertices(model, p, shape, n_expression).reshape(len(p), -1).astype(np.float32)
            report.from_params += 1
        atomic.save_npy(out / VERTS_DIR / f"{stem}.npy", verts)
        atomic.copy_file(wavs[stem], out / WAV_DIR / f"{stem}.wav")
        report.written += 1
        if k % 100 == 0 or k == len(stems):
            log.info("3dmead: %d/%d takes converted", k, len(stems))
    subjects = sorted({parse_clip(s, None, CLIP_PATTERN)[0] for s in stems if s in wavs})
    templates = {}
    for subject in subjects:
        if model is None:  # meshes given, no model: the subject's mean frame
            frames = [np.load(out / VERTS_DIR / f"{s}.npy") for s in stems if s.startswith(subject + "_")]
            templates[subject] = np.concatenate(frames).mean(axis=0).reshape(N_VERTICES, 3)
        elif shape == "subject" and subject in shapes:
            templates[subject] = flame_vertices(model, np.mean(shapes[subject], axis=0))[0]
        else:
            templates[subject] = model.v_template
    atomic.save_templates(out / TEMPLATES, templates)
    if model is not None:
        atomic.save_npy(out / "faces.npy", model.faces)
    (out / "regions").mkdir(exist_ok=True)
    for f in REGION_FILES.values():
        atomic.copy_file(region_dir / f, out / "regions" / f)
    meta = {
        "source": "3dmead (ProbTalk3D preprocessing)",
        "shape": shape,
        "n_expression": n_expression,
        "flame_sha256": hashlib.sha256(Path(flame).expanduser().read_bytes()).hexdigest() if flame else None,
        "from_params": report.from_params,
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")
    if report.skipped:
        log.warning(
            "3dmead: %d takes without audio skipped: %s", len(report.skipped), ", ".join(report.skipped[:5])
        )
    return report
