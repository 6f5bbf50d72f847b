"""MemoryTalker: speech-driven 3D facial animation with a motion memory stylized from the audio."""

from talkbench.methods.memorytalker.config import MemoryTalkerConfig
from talkbench.methods.memorytalker.model import MemoryTalker

__all__ = ["MemoryTalker", "MemoryTalkerConfig"]
