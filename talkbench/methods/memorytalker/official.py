"""MemoryTalker checkpoints as kimhyungkyu-1208/MemoryTalker saves them (specs/official-checkpoints.md).

Both stages write ``torch.save(model.state_dict(), ...)``: a bare state dict. A stage-1 file has no
style branch (stage 2 adds it), so it imports into a model built with ``memorytalker.stage2=false``
(:func:`overrides_for` says so). ``PPE.pe`` is recomputed; our ``stylized`` flag (not in the
official files) is set from whether the file carries the style branch.
"""

from __future__ import annotations

from pathlib import Path

import torch

from talkbench.errors import TalkbenchError
from talkbench.methods import official as common
from talkbench.methods.memorytalker.model import MemoryTalker

_PREFIXES = (
    ("audio_encoder.model.", "E_aud.hubert."),
    ("lm_head.", "E_aud.lm_head."),
    ("memory.", "memory_net."),
    ("motion_encoder.", "E_m."),
    ("transformer_decoder.", "D_m."),
    ("style_encoder.encoder.", "style_encoder.audio_encoder."),
)
_BACK = tuple((new, old) for old, new in _PREFIXES)
_OURS_ONLY = ("stylized",)  # buffers the official code does not have
_STYLE = "style_encoder."


def to_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return common.rename_prefixes({k: v for k, v in state.items() if k not in _OURS_ONLY}, _PREFIXES)


def from_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return common.rename_prefixes({k: v for k, v in state.items() if not common.is_buffer_copy(k)}, _BACK)


def overrides_for(checkpoint: str | Path) -> list[str]:
    """Config overrides a model needs for this file: a stage-1 file has no style branch."""
    state, _ = common.read_checkpoint(checkpoint)
    return [] if any(k.startswith(_STYLE) for k in state) else ["memorytalker.stage2=false"]


def import_checkpoint(model: MemoryTalker, checkpoint: str | Path, vqvae: str | Path | None = None) -> dict:
    """Our state dict for ``model`` from an official MemoryTalker file (``weights_only`` loading)."""
    path = Path(checkpoint)
    preset = _preset(model)
    if vqvae is not None:
        raise TalkbenchError(f"--vqvae {vqvae}: only CodeTalker checkpoints take a VQ-VAE file")
    official, _ = common.read_checkpoint(path)
    common.require_method(official, "memorytalker", path, preset)
    has_style = any(k.startswith(_STYLE) for k in official)
    if model.has_style and not has_style:
        raise TalkbenchError(
            f"{path}: a MemoryTalker stage-1 checkpoint (no style_encoder.* keys); import it into a "
            "model built with memorytalker.stage2=false"
        )
    expected = model.state_dict()
    state = common.upgrade_hf_names(from_official(official), expected)
    state["stylized"] = torch.tensor(has_style)
    common.check_state(
        state, expected, path, f"memorytalker {preset}", rename=lambda k: common.rename_key(k, _PREFIXES)
    )
    return state


def save_official(model: MemoryTalker, path: str | Path, legacy_names: bool = True) -> Path:
    """Write ``model``'s weights as the official training scripts do (a bare state dict)."""
    state = to_official(model.state_dict())
    if legacy_names:
        state = common.legacy_hf_names(state)
    state["PPE.pe"] = common.periodic_table(model.config.feature_dim, model.spec.period)
    path = Path(path)
    torch.save(state, path)
    return path


def _preset(model: MemoryTalker) -> str:
    return f"paper-{model.spec.name}" if model.spec.name in ("vocaset", "biwi") else model.spec.name
