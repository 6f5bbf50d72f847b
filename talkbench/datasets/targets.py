"""What a dataset's motion is given as: vertices (T, V, 3), or blendshape weights (T, K) with named channels.

Blendshape channels use Apple ARKit's 52 names where they map (ARFaceAnchor.BlendShapeLocation, spelt
as ARKit spells them); the channel groups that weight-space metrics average over follow from the name
prefixes: ``lower`` = jaw*, mouth*, tongueOut (what lip sync moves), ``upper`` = eye*, brow*.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from talkbench.datasets.rig import FILE as RIG_FILE
from talkbench.datasets.rig import load_rig
from talkbench.errors import DataError

VERTICES = "vertices"
BLENDSHAPES = "blendshapes"
TARGETS = (VERTICES, BLENDSHAPES)

ARKIT_CHANNELS = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft", "eyeSquintLeft",
    "eyeWideLeft", "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight", "jawForward", "jawLeft", "jawRight", "jawOpen", "mouthClose",
    "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight", "mouthSmileLeft", "mouthSmileRight",
    "mouthFrownLeft", "mouthFrownRight", "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft",
    "mouthStretchRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthUpperUpLeft", "mouthUpperUpRight", "browDownLeft", "browDownRight", "browInnerUp",
    "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "noseSneerLeft", "noseSneerRight", "tongueOut",
)  # fmt: skip
GROUP_PREFIXES = {"lower": ("jaw", "mouth", "tongue"), "upper": ("eye", "brow")}


def channel_groups(channels: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Group name -> channel indices by ARKit prefix; a group no channel falls in is left out."""
    out = {}
    for group, prefixes in GROUP_PREFIXES.items():
        idx = [k for k, c in enumerate(channels) if c.startswith(prefixes)]
        if idx:
            out[group] = np.array(idx, np.int64)
    return out


def check_target(target: str, what: str) -> str:
    if target not in TARGETS:
        raise DataError(f"{what}: unknown target '{target}'; expected one of {', '.join(TARGETS)}")
    return target


def blendshape_fields(root: Path, channels, n_vertices: int) -> dict:
    """The DatasetSpec fields of a blendshape dataset at ``root``: target, channels, groups and the
    rig of ``rig.npz`` when there is one (its channels must be the dataset's)."""
    channels = tuple(str(c) for c in channels)
    if not channels or len(set(channels)) != len(channels):
        raise DataError(f"{root}: a blendshape dataset needs distinct channel names, got {list(channels)}")
    rig = None
    if (root / RIG_FILE).is_file():
        rig = load_rig(root / RIG_FILE, n_vertices)
        if rig.channels != channels:
            raise DataError(f"{root / RIG_FILE}: channels {list(rig.channels)} differ from the dataset's")
    groups = channel_groups(channels)
    return {"target": BLENDSHAPES, "channels": channels, "channel_groups": groups, "rig": rig}
