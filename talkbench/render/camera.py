"""Camera and lighting conventions of the baselines' renderers (FaceFormer/CodeTalker render.py).

Baselines render 800 x 800 with an intrinsics camera at (0, 0, 1) looking down -z, fx = fy =
4754.97941935 / 2 for VOCASET (metres) and / 8 for BIWI (normalised units), znear 0.01, zfar 3.0,
five directional lights of intensity 2 (one at the camera, four rotated +-pi/6 about x and y),
ambient 0.2 and a grey (0.3) metallic-rough material. Other resolutions scale the focal length, so a
512 px render shows exactly what the 800 px one does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

BASE_SIZE = 800
VOCA_FOCAL = 4754.97941935


@dataclass(frozen=True)
class Camera:
    focal_800: float  # focal length in pixels for an 800 x 800 image
    distance: float = 1.0
    znear: float = 0.01
    zfar: float = 3.0
    center_mesh: bool = False  # translate the clip so its template centroid sits at the origin

    def projection(self, size: int) -> np.ndarray:
        """OpenGL projection matrix for a square image of ``size`` pixels (principal point centred)."""
        f = self.focal_800 * size / BASE_SIZE
        n, fa = self.znear, self.zfar
        p = np.zeros((4, 4), np.float32)
        p[0, 0] = 2 * f / size
        p[1, 1] = 2 * f / size
        p[2, 2] = -(fa + n) / (fa - n)
        p[2, 3] = -2 * fa * n / (fa - n)
        p[3, 2] = -1.0
        return p

    def view(self) -> np.ndarray:
        v = np.eye(4, dtype=np.float32)
        v[2, 3] = -self.distance
        return v

    def light_directions(self) -> np.ndarray:
        """Unit vectors pointing from the surface towards each of the five lights."""
        eye = np.array([0.0, 0.0, self.distance])
        dirs = [eye]
        for axis in ("x", "y"):
            for sign in (1, -1):
                dirs.append(_rotation(axis, sign * math.pi / 6) @ eye)
        d = np.stack(dirs)
        return (d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32)


def _rotation(axis: str, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


CAMERAS = {
    "vocaset": Camera(focal_800=VOCA_FOCAL / 2),
    "biwi": Camera(focal_800=VOCA_FOCAL / 8),
    # SynthTalk is in metres like VOCASET; its faces are not placed at the origin, so centre them
    "synthtalk": Camera(focal_800=VOCA_FOCAL / 2, center_mesh=True),
    "synthtalk-topology2": Camera(focal_800=VOCA_FOCAL / 2, center_mesh=True),
    "synthtalk-blendshape": Camera(focal_800=VOCA_FOCAL / 2, center_mesh=True),
    "3dmead": Camera(focal_800=VOCA_FOCAL / 2),  # FLAME in metres, as VOCASET
    # FaceDiffuser's [-1, 1] box: a face about 2 units wide, 2.5 times BIWI's normalised one
    "multiface": Camera(focal_800=VOCA_FOCAL / 20, center_mesh=True),
}


def camera_for(dataset: str) -> Camera:
    return CAMERAS.get(dataset, CAMERAS["vocaset"])
