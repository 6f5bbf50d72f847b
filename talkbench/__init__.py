"""talkbench: a benchmark suite for speech-driven 3D facial animation."""

__version__ = "0.1.0"
