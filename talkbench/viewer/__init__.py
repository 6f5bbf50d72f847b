"""The interactive 3D viewer: a folder (index.html, three.js, one data file per clip and track) that plays
the ground truth and any number of runs of a clip, synced to its audio, from disk or served."""

from talkbench.viewer.data import Rig, Track
from talkbench.viewer.write import ViewerClip, write_viewer

__all__ = ["Rig", "Track", "ViewerClip", "write_viewer"]
