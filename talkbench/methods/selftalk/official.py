"""SelfTalk checkpoints as psyai-net/SelfTalk_release saves them (specs/selftalk.md, Checkpoints).

``torch.save(model.state_dict())`` of the whole module: the frozen recognizer travels inside
(``text_encoder.*``). Our modules keep the release's names except inside the two speech models:
``audio_encoder.*`` is our ``audio_encoder.model.*``, ``text_encoder.wav2vec2.*`` /
``text_encoder.lm_head.*`` our ``text_encoder.encoder.model.*`` / ``text_encoder.head.*``. Older
transformers wrote the positional conv's weight norm as ``weight_g`` / ``weight_v``: renamed.
The release's code and checkpoints are CC BY-NC 4.0 (:data:`LICENCE`, recorded on imported runs).
"""

from __future__ import annotations

from pathlib import Path

import torch

from talkbench.errors import TalkbenchError
from talkbench.methods import official as common
from talkbench.methods.selftalk.config import LICENCE
from talkbench.methods.selftalk.model import SelfTalk

_PREFIXES = (
    ("audio_encoder.model.", "audio_encoder."),
    ("text_encoder.encoder.model.", "text_encoder.wav2vec2."),
    ("text_encoder.head.", "text_encoder.lm_head."),
)
_BACK = tuple((new, old) for old, new in _PREFIXES)
__all__ = ["LICENCE", "from_official", "import_checkpoint", "save_official", "to_official"]


def to_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return common.rename_prefixes(state, _PREFIXES)


def from_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return common.rename_prefixes(state, _BACK)


def import_checkpoint(model: SelfTalk, checkpoint: str | Path, vqvae: str | Path | None = None) -> dict:
    """Our state dict for ``model`` from an official SelfTalk file (``weights_only`` loading)."""
    path = Path(checkpoint)
    if vqvae is not None:
        raise TalkbenchError(f"--vqvae {vqvae}: only CodeTalker checkpoints take a VQ-VAE file")
    preset = f"paper-{model.spec.name}"
    official, _ = common.read_checkpoint(path)
    common.require_method(official, "selftalk", path, preset)
    expected = model.state_dict()
    state = common.upgrade_hf_names(from_official(official), expected)
    common.check_state(state, expected, path, f"selftalk {preset}",
                       rename=lambda k: common.rename_key(k, _PREFIXES))
    return state


def save_official(model: SelfTalk, path: str | Path, legacy_names: bool = True) -> Path:
    """Write ``model``'s weights as the release's main.py does (a bare state dict)."""
    state = to_official(model.state_dict())
    if legacy_names:
        state = common.legacy_hf_names(state)
    path = Path(path)
    torch.save(state, path)
    return path
