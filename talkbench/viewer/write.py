"""Write a self-contained viewer folder: the page, three.js, and one data file per clip and track.

```
<out>/index.html              the page (static/ beside it: viewer.js, viewer.css, three.min.js, licence)
<out>/data/manifest.js        the clips, in order
<out>/data/<clip>/clip.js     fps, template, faces, quantisation step, tracks, colour scale
<out>/data/<clip>/<track>.js  one track's meshes (see data.py), loaded when its panel is shown
<out>/data/<clip>/audio.wav   the clip's speech (16-bit PCM), the clock the page plays to
```

Opened from disk or served, the page works the same (scripts, not fetches, carry the data).
"""

from __future__ import annotations

import json
import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from talkbench.errors import DataError, TalkbenchError
from talkbench.viewer.data import FORMAT, Track, b64, encode_levels, quant_step, quantise

STATIC = Path(__file__).parent / "static"
PAGE = "index.html"
ASSETS = ("viewer.js", "viewer.css", "three.min.js", "THREE_LICENSE")
MANIFEST = "manifest.js"
SAMPLE_RATE = 16_000
COLORMAP = "viridis"  # perceptually uniform, readable in grey and by most colour-blind readers
HEAT_QUANTILE = 99.0  # the colour scale's default top: the 99th percentile of the clip's errors
DISPLAY_UNITS = {"m": ("mm", 1000.0), "mm": ("mm", 1.0)}  # the dataset unit -> shown unit, factor


@dataclass
class ViewerClip:
    """One clip to view: its template, faces and audio, and the tracks that animate it."""

    name: str
    fps: float
    template: np.ndarray  # (V, 3)
    faces: np.ndarray  # (F, 3) vertex indices
    audio: np.ndarray  # float32 mono at 16 kHz
    tracks: list[Track] = field(default_factory=list)
    truth: str | None = None  # key of the track errors are measured against (the ground truth)
    unit: str = "m"  # the dataset's unit of vertex positions
    title: str | None = None


def write_viewer(
    out: str | Path,
    clips: list[ViewerClip],
    title: str = "talkbench viewer",
    study: bool = False,
    step: float | None = None,
) -> Path:
    """Write the viewer folder for ``clips`` and return its index.html.

    ``study`` hides what a rater must not see or change (track choice, layout, heatmap); ``step`` overrides
    the quantisation step (dataset unit; default: :func:`~talkbench.viewer.data.quant_step` per clip).
    An existing viewer folder is replaced, data last, so an interrupted write leaves the old one whole.
    """
    if not clips:
        raise TalkbenchError("nothing to view: no clips given")
    out = Path(out)
    if (out / PAGE).exists() and not (out / "data" / MANIFEST).exists():
        raise TalkbenchError(f"{out} holds an {PAGE} that is not a talkbench viewer; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    fresh = out / ".data-partial"
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir()
    entries = []
    for clip, folder in zip(clips, folder_names([c.name for c in clips])):
        entries.append(_write_clip(fresh, folder, clip, not study, step))
    manifest = {"format": FORMAT, "title": title, "study": study, "clips": entries}
    (fresh / MANIFEST).write_text(_call("manifest", manifest))
    (out / "static").mkdir(exist_ok=True)
    for name in ASSETS:
        shutil.copyfile(STATIC / name, out / "static" / name)
    shutil.copyfile(STATIC / PAGE, out / PAGE)
    old = out / ".data-old"
    shutil.rmtree(old, ignore_errors=True)
    if (out / "data").exists():
        (out / "data").rename(old)
    fresh.rename(out / "data")
    shutil.rmtree(old, ignore_errors=True)
    return out / PAGE


def folder_names(names: list[str]) -> list[str]:
    """File-safe, unique folder names for clips (clip names come from dataset file names)."""
    used: set[str] = set()
    out = []
    for name in names:
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "clip"
        folder, n = base, 1
        while folder in used:
            n += 1
            folder = f"{base}_{n}"
        used.add(folder)
        out.append(folder)
    return out


def _write_clip(data_dir: Path, folder: str, clip: ViewerClip, heatmap: bool, step: float | None) -> dict:
    import soundfile as sf

    template = np.asarray(clip.template, np.float64)
    faces = np.asarray(clip.faces)
    tracks = _checked_tracks(clip, template, faces)
    n_frames = min(len(t.vertices) for t in tracks)  # every panel shows the same frame of the audio
    offsets = {t.key: np.asarray(t.vertices, np.float64)[:n_frames] - template for t in tracks}
    extent = float(np.linalg.norm(template.max(axis=0) - template.min(axis=0)))
    step = step or quant_step(extent, max(float(np.abs(o).max()) for o in offsets.values()))
    files = folder_names([t.key for t in tracks])
    where = data_dir / folder
    where.mkdir()
    for track, name in zip(tracks, files):
        blob = encode_levels(quantise(offsets[track.key], step, f"clip {clip.name}, track '{track.label}'"))
        (where / f"{name}.js").write_text(_call("track", clip.name, track.key, b64(blob)))
    sf.write(where / "audio.wav", np.asarray(clip.audio, np.float32), SAMPLE_RATE, subtype="PCM_16")
    shown_unit, factor = DISPLAY_UNITS.get(clip.unit, (clip.unit, 1.0))
    meta = {
        "format": FORMAT,
        "name": clip.name,
        "title": clip.title or clip.name,
        "fps": float(clip.fps),
        "n_frames": n_frames,
        "n_vertices": len(template),
        "step": step,
        "unit": clip.unit,
        "display_unit": shown_unit,
        "display_scale": factor,
        "template": b64(template.astype("<f4").tobytes()),
        "faces": b64(faces.astype("<u2" if len(template) <= 0xFFFF else "<u4").tobytes()),
        "faces_type": "uint16" if len(template) <= 0xFFFF else "uint32",
        "audio": f"data/{folder}/audio.wav",
        "tracks": [
            {"key": t.key, "label": t.label, "file": f"data/{folder}/{f}.js"} for t, f in zip(tracks, files)
        ],
        "truth": clip.truth if heatmap else None,
    }
    if meta["truth"] is not None:
        meta["heat"] = _heat_scale(offsets, clip.truth, factor)
    (where / "clip.js").write_text(_call("clip", meta))
    return {"name": clip.name, "title": meta["title"], "file": f"data/{folder}/clip.js"}


def _call(name: str, *args) -> str:
    """A data file: one call of the page's loader with JSON arguments."""
    return f"TalkbenchViewer.{name}({', '.join(json.dumps(a) for a in args)});\n"


def _checked_tracks(clip: ViewerClip, template: np.ndarray, faces: np.ndarray) -> list[Track]:
    if template.ndim != 2 or template.shape[1] != 3:
        raise DataError(f"clip {clip.name}: expected a template of shape (V, 3), got {template.shape}")
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.size == 0:
        raise DataError(f"clip {clip.name}: expected faces of shape (F, 3), got {faces.shape}")
    if faces.min() < 0 or faces.max() >= len(template):
        raise DataError(f"clip {clip.name}: faces reach vertex {faces.max()}, template has {len(template)}")
    if not clip.tracks:
        raise DataError(f"clip {clip.name}: no tracks to show")
    keys = [t.key for t in clip.tracks]
    if len(set(keys)) != len(keys):
        raise DataError(f"clip {clip.name}: track keys repeat: {keys}")
    if clip.truth is not None and clip.truth not in keys:
        raise DataError(f"clip {clip.name}: truth '{clip.truth}' is not one of its tracks {keys}")
    for t in clip.tracks:
        v = np.asarray(t.vertices)
        if v.ndim != 3 or v.shape[1:] != template.shape or len(v) == 0:
            raise DataError(
                f"clip {clip.name}, track '{t.label}': vertices of shape {v.shape}, "
                f"expected (T, {len(template)}, 3)"
            )
        if not np.isfinite(v).all():
            raise DataError(f"clip {clip.name}, track '{t.label}': vertices contain NaN or inf")
    return list(clip.tracks)


def _heat_scale(offsets: dict[str, np.ndarray], truth: str, factor: float) -> dict:
    """The colour scale: its name, 256 sRGB entries, and a default top (shown unit) that is round."""
    import matplotlib

    from talkbench.metrics import vertex_errors

    errors = [vertex_errors(o, offsets[truth]).ravel() for key, o in offsets.items() if key != truth]
    top = float(np.percentile(np.concatenate(errors), HEAT_QUANTILE)) * factor if errors else 0.0
    lut = (matplotlib.colormaps[COLORMAP](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)
    return {"colormap": COLORMAP, "lut": b64(lut.tobytes()), "max": _round_up(top)}


def _round_up(x: float) -> float:
    """x rounded up to one significant digit (0.37 -> 0.4), 1 where there is no error at all."""
    if not x > 0:
        return 1.0
    unit = 10.0 ** math.floor(math.log10(x))
    return float(f"{math.ceil(x / unit - 1e-9) * unit:.3g}")
