"""Clip-level rendering: one sequence, or several side by side with labels, to MP4 with audio."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from talkbench.errors import TalkbenchError
from talkbench.render.camera import Camera
from talkbench.render.gl import MeshRenderer
from talkbench.render.video import write_mp4


def _placed(vertices: np.ndarray, template: np.ndarray | None, camera: Camera) -> np.ndarray:
    vertices = np.asarray(vertices, np.float32)
    if camera.center_mesh:
        anchor = template if template is not None else vertices[0]
        vertices = vertices - np.asarray(anchor, np.float32).mean(axis=0)
    return vertices


def _check(vertices: np.ndarray, faces: np.ndarray, what: str) -> None:
    if vertices.ndim != 3 or vertices.shape[-1] != 3:
        raise TalkbenchError(f"{what}: expected vertices of shape (T, V, 3), got {vertices.shape}")
    if faces.max() >= vertices.shape[1]:
        raise TalkbenchError(
            f"{what}: faces index vertex {faces.max()} but the mesh has {vertices.shape[1]} vertices"
        )
    if not np.isfinite(vertices).all():
        raise TalkbenchError(f"{what}: vertices contain NaN or inf")


def render_clip(
    vertices: np.ndarray,
    faces: np.ndarray,
    out: str | Path,
    fps: float,
    camera: Camera,
    audio: np.ndarray | None = None,
    template: np.ndarray | None = None,
    size: int = 512,
    label: str | None = None,
) -> Path:
    """Render one (T, V, 3) sequence to an MP4 with the clip's audio."""
    return render_side_by_side([(label, vertices)], faces, out, fps, camera, audio, template, size)


def render_side_by_side(
    sequences: Sequence[tuple[str | None, np.ndarray]],
    faces: np.ndarray,
    out: str | Path,
    fps: float,
    camera: Camera,
    audio: np.ndarray | None = None,
    template: np.ndarray | None = None,
    size: int = 512,
    progress: Callable[[int, int], None] | None = None,
    columns: int | None = None,
) -> Path:
    """Render several sequences of one clip next to each other, each under its label, one audio track.

    Sequences are cut to the shortest, so every panel shows the same frame of the same audio.
    ``progress(done, total)`` is called after each frame (long clips take a while on CPU).
    ``columns``: panels per row (a grid, the last row padded with blank panels); None: one row.
    """
    if not sequences:
        raise TalkbenchError("nothing to render: no sequences given")
    faces = np.asarray(faces)
    for label, verts in sequences:
        _check(np.asarray(verts), faces, label or "sequence")
    n = min(len(v) for _, v in sequences)
    placed = [_placed(np.asarray(v)[:n], template, camera) for _, v in sequences]
    labels = [label for label, _ in sequences]
    with MeshRenderer(faces, camera, size) as renderer:
        streams = [renderer.render_sequence(v) for v in placed]
        frames = (_stack([next(s) for s in streams], labels, columns) for _ in range(n))
        if progress is not None:
            frames = _reporting(frames, n, progress)
        if audio is not None:
            audio = np.asarray(audio, np.float32)[: int(round(n / fps * 16_000))]
        return write_mp4(frames, out, fps, audio)


def _reporting(frames, total: int, progress: Callable[[int, int], None]):
    for i, frame in enumerate(frames, 1):
        yield frame
        progress(i, total)


def _stack(images: list[np.ndarray], labels: list[str | None], columns: int | None = None) -> np.ndarray:
    if any(labels):
        images = [_label(img, text) if text else img for img, text in zip(images, labels)]
    if columns is None or columns >= len(images):
        return np.concatenate(images, axis=1) if len(images) > 1 else images[0]
    images = images + [np.zeros_like(images[0])] * (-len(images) % columns)
    rows = [np.concatenate(images[i : i + columns], axis=1) for i in range(0, len(images), columns)]
    return np.concatenate(rows, axis=0)


def _label(image: np.ndarray, text: str) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    pil = Image.fromarray(image)
    draw = ImageDraw.Draw(pil)
    font = ImageFont.load_default(size=max(12, image.shape[0] // 24))
    draw.text((image.shape[1] // 2, 8), text, fill=(230, 230, 230), font=font, anchor="mt")
    return np.asarray(pil)
