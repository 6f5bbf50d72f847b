"""FaceFormer: speech-driven 3D facial animation with a one-layer transformer decoder (CVPR 2022)."""

from talkbench.methods.faceformer.config import FaceFormerConfig
from talkbench.methods.faceformer.model import FaceFormer

__all__ = ["FaceFormer", "FaceFormerConfig"]
