"""FaceDiffuser checkpoints as the release saves them (specs/facediffuser.md §7).

``torch.save(model.state_dict())`` of ``FaceDiff``, a bare dict without prefix or metadata. Our
modules keep the release's names except the encoder: its ``audio_encoder.*`` is our
``audio_encoder.model.*``. The vendored transformers wrote the positional conv's weight norm as
``weight_g`` / ``weight_v``: renamed. The dimensions are read from the shapes (:func:`dims`) and
compared with the preset's, so a file for another dataset or T fails with one line saying which.
The release's code and checkpoints are CC BY-NC 4.0 (:data:`LICENCE`, recorded on imported runs).
"""

from __future__ import annotations

from pathlib import Path

import torch

from talkbench.errors import TalkbenchError
from talkbench.methods import official as common
from talkbench.methods.facediffuser.config import LICENCE
from talkbench.methods.facediffuser.model import FaceDiffuser

_PREFIXES = (("audio_encoder.model.", "audio_encoder."),)
_BACK = tuple((new, old) for old, new in _PREFIXES)
__all__ = ["LICENCE", "dims", "from_official", "import_checkpoint", "save_official", "to_official"]


def to_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return common.rename_prefixes(state, _PREFIXES)


def from_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return common.rename_prefixes(state, _BACK)


def dims(state: dict[str, torch.Tensor]) -> dict[str, int]:
    """The architecture a file holds, from its shapes (in the release's naming or ours)."""
    def shape(key: str) -> tuple[int, ...]:
        if key not in state:
            raise TalkbenchError(f"not a FaceDiffuser state dict: no '{key}'")
        return tuple(state[key].shape)

    return {"diff_steps": shape("time_mlp.0.weight")[1], "latent_dim": shape("cond_projection.weight")[0],
            "gru_dim": shape("gru.weight_hh_l0")[1], "vertices_x3": shape("final_layer.weight")[0],
            "speakers": shape("obj_vector.weight")[1]}


def import_checkpoint(model: FaceDiffuser, checkpoint: str | Path, vqvae: str | Path | None = None) -> dict:
    """Our state dict for ``model`` from an official FaceDiffuser file (``weights_only`` loading)."""
    path = Path(checkpoint)
    if vqvae is not None:
        raise TalkbenchError(f"--vqvae {vqvae}: only CodeTalker checkpoints take a VQ-VAE file")
    preset = f"paper-{model.spec.name}"
    official, _ = common.read_checkpoint(path)
    common.require_method(official, "facediffuser", path, preset)
    try:
        found = dims(official)
    except TalkbenchError as err:
        raise TalkbenchError(f"{path}: {err}") from None
    c = model.config
    wanted = {"diff_steps": c.diff_steps, "latent_dim": c.latent_dim, "gru_dim": c.gru_dim,
              "vertices_x3": 3 * int(model.spec.n_vertices), "speakers": model.n_speakers}
    differ = [f"{k} {found[k]} (preset {wanted[k]})" for k in wanted if found[k] != wanted[k]]
    if differ:
        raise TalkbenchError(f"{path}: a FaceDiffuser file of another configuration than facediffuser "
                             f"{preset}: " + ", ".join(differ))
    expected = model.state_dict()
    state = common.upgrade_hf_names(from_official(official), expected)
    common.check_state(state, expected, path, f"facediffuser {preset}",
                       rename=lambda k: common.rename_key(k, _PREFIXES))
    return state


def save_official(model: FaceDiffuser, path: str | Path, legacy_names: bool = True) -> Path:
    """Write ``model``'s weights as the release's main.py does (a bare state dict)."""
    state = to_official(model.state_dict())
    if legacy_names:
        state = common.legacy_hf_names(state)
    path = Path(path)
    torch.save(state, path)
    return path
