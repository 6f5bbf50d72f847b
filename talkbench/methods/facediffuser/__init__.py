"""FaceDiffuser (MIG 2023): a speech-conditioned DDPM over whole vertex sequences (specs/facediffuser.md)."""

from talkbench.methods.facediffuser.model import FaceDiffuser

__all__ = ["FaceDiffuser"]
