"""talkbench: a benchmark suite for speech-driven 3D facial animation."""

from __future__ import annotations

__version__ = "0.1.0"


def load_model(ref, tracking_uri: str | None = None):
    """A trained model, verified against its sha256 digests, from a run id, a ``runs:/`` or
    ``models:/`` URI, or a local model folder; ``.predict(None, {"audio", "template"}, params)``,
    ``.method`` and ``.bundle``. Runs no code of the model (:mod:`talkbench.model_loader`)."""
    from talkbench.model_loader import load

    return load(ref, tracking_uri)
