"""FaceFormer checkpoints as EvelynFan/FaceFormer saves them (specs/official-checkpoints.md).

The file is ``torch.save(model.state_dict(), ...)``: a bare state dict with the wav2vec2 weights
under ``audio_encoder.``, the decoder under ``transformer_decoder.`` and the fixed ``PPE.pe`` table.
Every parameter maps one to one onto ours; ``PPE.pe`` is recomputed, never required.
"""

from __future__ import annotations

from pathlib import Path

import torch

from talkbench.errors import TalkbenchError
from talkbench.methods import official as common
from talkbench.methods.faceformer.model import FaceFormer

# ours -> official, first match wins; everything else keeps its name
_PREFIXES = (("audio.model.", "audio_encoder."), ("decoder.", "transformer_decoder."))
_BACK = tuple((new, old) for old, new in _PREFIXES)


def to_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return common.rename_prefixes(state, _PREFIXES)


def from_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return common.rename_prefixes({k: v for k, v in state.items() if not common.is_buffer_copy(k)}, _BACK)


def import_checkpoint(model: FaceFormer, checkpoint: str | Path, vqvae: str | Path | None = None) -> dict:
    """Our state dict for ``model`` from an official FaceFormer file (``weights_only`` loading)."""
    path = Path(checkpoint)
    what = f"faceformer {_preset(model)}"
    if vqvae is not None:
        raise TalkbenchError(f"--vqvae {vqvae}: only CodeTalker checkpoints take a VQ-VAE file")
    official, _ = common.read_checkpoint(path)
    common.require_method(official, "faceformer", path, _preset(model))
    expected = model.state_dict()
    state = common.upgrade_hf_names(from_official(official), expected)
    common.check_state(state, expected, path, what, rename=lambda k: common.rename_key(k, _PREFIXES))
    return state


def save_official(model: FaceFormer, path: str | Path, legacy_names: bool = True) -> Path:
    """Write ``model``'s weights as the official training script does (a bare state dict).

    ``legacy_names``: the positional conv's weight norm as ``weight_g`` / ``weight_v``, as in the
    published files (saved with an older transformers)."""
    state = to_official(model.state_dict())
    if legacy_names:
        state = common.legacy_hf_names(state)
    state["PPE.pe"] = common.periodic_table(model.config.feature_dim, model.period)
    path = Path(path)
    torch.save(state, path)
    return path


def _preset(model: FaceFormer) -> str:
    return f"paper-{model.spec.name}" if model.spec.name in ("vocaset", "biwi") else model.spec.name
