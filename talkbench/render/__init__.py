"""Meshes to frames to MP4 with audio: a real OpenGL renderer with the baselines' conventions."""

from talkbench.render.camera import CAMERAS, Camera, camera_for
from talkbench.render.compose import render_clip, render_side_by_side
from talkbench.render.gl import MeshRenderer
from talkbench.render.video import read_mp4, write_mp4

__all__ = [
    "CAMERAS",
    "Camera",
    "MeshRenderer",
    "camera_for",
    "read_mp4",
    "render_clip",
    "render_side_by_side",
    "write_mp4",
]
