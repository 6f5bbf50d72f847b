"""UniTalker checkpoints as X-niper/UniTalker saves them (``UniTalker-B-D0-D7.pt``, ``-L-``).

main/train.py saves ``model.state_dict()`` as a bare dict, without the ``pca_layer_dict`` buffers
(``filter_unitalker_state_dict``); main/demo.py loads it with ``strict=False`` and reads each basis
from the data release's ``<dataset>/pca.npz``. Both layouts are read here: a file's own
``pca_layer_dict.<annot_type>.*`` when present, else ``unitalker.official_pca`` (that ``pca.npz``,
read with ``allow_pickle=False``).

Names: ``audio_encoder.*`` (the transformers WavLMModel / Wav2Vec2Model names) is our
``audio_encoder.model.*``; ``decoder.learnable_style_emb`` our ``decoder.identity``;
``decoder.tcn.first_net.conv_layers.<i>`` our ``decoder.blocks.<i>``; heads and bases are keyed by
annotation type (``out_head_dict.FLAME_5023_vertices``), ours by dataset name (:data:`ANNOTATIONS`, or
``unitalker.official_head``). The file's other heads are left out (one dataset per model today).
Dimensions (identities, decoder width, TCN depth and kernel, head depth, PCA size) are read from the
file's shapes (:func:`config_overrides`). The code is Apache-2.0 (:data:`LICENCE`).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import torch

from talkbench.errors import TalkbenchError
from talkbench.methods import official as common
from talkbench.methods.unitalker.config import LICENCE
from talkbench.methods.unitalker.model import UniTalker
from talkbench.methods.unitalker.release import BACK, PREFIXES

log = logging.getLogger(__name__)

# dataset name -> the release's annotation type (dataset/dataset_config.py)
ANNOTATIONS = {
    "biwi": "BIWI_23370_vertices",  # D0
    "vocaset": "FLAME_5023_vertices",  # D1
    "multiface": "meshtalk_6172_vertices",  # D2 (their re-topology, 6172 vertices)
}
RELEASE_HEADS = {  # annotation type -> output width in the D0-D7 files (PCA heads: min(512, dim, basis))
    "BIWI_23370_vertices": 512, "FLAME_5023_vertices": 512, "meshtalk_6172_vertices": 512,
    "3DETF_blendshape_weight": 52, "flame_params_from_dadhead": 413, "inhouse_blendshape_weight": 51,
}  # fmt: skip
_STATS = ("data_to_feat", "feat_mean", "feat_std")  # in pca.npz / the file, unused by encode/decode
__all__ = ["LICENCE", "config_overrides", "import_checkpoint", "save_official"]


def annotation_of(model: UniTalker) -> str:
    name = model.config.official_head or ANNOTATIONS.get(model.spec.name)
    if not name:
        raise TalkbenchError(
            f"unitalker: no official head is known for dataset '{model.spec.name}'; pass "
            f"--set unitalker.official_head=<annotation type> (one of {', '.join(RELEASE_HEADS)})"
        )
    return name


def config_overrides(checkpoint: str | Path) -> list[str]:
    """``--set`` overrides that give the model the file's dimensions (read from its shapes)."""
    state, _ = common.read_checkpoint(checkpoint)
    style = state.get("decoder.learnable_style_emb.weight")
    if style is None:
        raise TalkbenchError(f"{checkpoint}: no decoder.learnable_style_emb.weight, not a UniTalker file")
    width = int(state["decoder.audio_feature_map.weight"].shape[0])
    sets = [f"unitalker.n_identities={style.shape[0]}", f"unitalker.decoder_dim={width}"]
    blocks = sorted({int(m.group(1)) for k in state
                     if (m := re.match(r"decoder\.tcn\.first_net\.conv_layers\.(\d+)\.", k))})
    if blocks:
        kernel = int(state["decoder.tcn.first_net.conv_layers.0.conv.weight"].shape[-1])
        sets += ["unitalker.decoder=conv", f"unitalker.identity_dim={style.shape[1]}",
                 f"unitalker.tcn_layers={len(blocks)}", f"unitalker.kernel_size={kernel}"]
    else:
        sets.append("unitalker.decoder=transformer")
    head_layer = r"out_head_dict\.[^.]+\.head_layer\.(\d+)\."
    deep = {int(m.group(1)) for k in state if (m := re.match(head_layer, k))}
    sets.append(f"unitalker.head_layers={max(deep) // 2 + 1 if deep else 1}")
    vertex_heads = [v.shape[0] for k, v in state.items()
                    if re.fullmatch(r"out_head_dict\.[^.]+_vertices\.(head_layer\.\d+\.)?bias", k)]
    if vertex_heads:
        sets.append(f"unitalker.pca_dim={max(vertex_heads)}")
    return sets


def _heads(state) -> list[str]:
    return sorted({k.split(".")[1] for k in state if k.startswith("out_head_dict.")})


def import_checkpoint(model: UniTalker, checkpoint: str | Path, vqvae: str | Path | None = None) -> dict:
    """Our state dict for ``model`` from an official UniTalker file (``weights_only`` loading)."""
    path = Path(checkpoint)
    if vqvae is not None:
        raise TalkbenchError(f"--vqvae {vqvae}: only CodeTalker checkpoints take a VQ-VAE file")
    official, _ = common.read_checkpoint(path)
    common.require_method(official, "unitalker", path, "UniTalker")
    annotation, ours = annotation_of(model), model.spec.name
    if annotation not in _heads(official):
        raise TalkbenchError(f"{path}: no head '{annotation}' for dataset '{ours}'; the file has "
                             f"{', '.join(_heads(official))} (--set unitalker.official_head=...)")
    others = [h for h in _heads(official) if h != annotation]
    if others:
        log.info("%s: heads %s left out (the model has '%s' only)", path.name, ", ".join(others), ours)
    state = {}
    for key, value in official.items():
        parts = key.split(".")
        if parts[0] in ("out_head_dict", "pca_layer_dict"):
            if parts[1] != annotation or parts[-1] in _STATS:
                continue
            key = ".".join([parts[0], ours, *parts[2:]])
        elif key.endswith(".PPE.pe"):
            continue  # the transformer decoder's fixed table: recomputed
        state[common.rename_key(key, BACK)] = value
    expected = model.state_dict()
    basis = f"pca_layer_dict.{ours}.feat_to_data"
    if basis in expected and basis not in state:
        state.update(_release_basis(model, path))
    state = common.upgrade_hf_names(state, expected)
    common.check_state(state, expected, path, f"unitalker on {ours} (head {annotation})",
                       rename=lambda k: _official_key(k, ours, annotation))
    return state


def _release_basis(model: UniTalker, path: Path) -> dict[str, torch.Tensor]:
    """The basis of the data release's pca.npz (components_to_data (k, D), original_data_mean (D,)),
    cut to the head's width as the release's decode(pca_dim) does."""
    npz = model.config.official_pca
    if not npz:
        raise TalkbenchError(f"{path}: carries no PCA basis (the release's train.py leaves it out); pass the "
                             "data release's <dataset>/pca.npz with --set unitalker.official_pca=PATH")
    try:
        with np.load(npz, allow_pickle=False) as f:
            components, mean = f["components_to_data"], f["original_data_mean"]
    except (OSError, KeyError, ValueError) as err:
        raise TalkbenchError(f"unitalker.official_pca {npz}: expected the release's pca.npz with "
                             f"components_to_data and original_data_mean ({type(err).__name__})") from None
    name = model.spec.name
    k = model.pca_layer_dict[name].size
    return {f"pca_layer_dict.{name}.feat_to_data": torch.from_numpy(components[:k].astype(np.float32)),
            f"pca_layer_dict.{name}.data_bias": torch.from_numpy(mean.astype(np.float32))}


def _official_key(key: str, ours: str, annotation: str) -> str:
    parts = key.split(".")
    if parts[0] in ("out_head_dict", "pca_layer_dict") and parts[1] == ours:
        key = ".".join([parts[0], annotation, *parts[2:]])
    return common.rename_key(key, PREFIXES)


def save_official(model: UniTalker, path: str | Path, with_pca: bool = True, legacy_names: bool = True
                  ) -> Path:
    """Write ``model``'s weights as the release does: its names, the head keyed by annotation type; with
    the basis and its statistics (``with_pca``) or without (train.py's filter)."""
    annotation, ours = annotation_of(model), model.spec.name
    state = {_official_key(k, ours, annotation): v for k, v in model.state_dict().items()
             if with_pca or not k.startswith("pca_layer_dict.")}
    if with_pca and ours in model.pca_layer_dict:
        basis = model.pca_layer_dict[ours]
        coefficients = basis.encode(torch.zeros(1, basis.feat_to_data.shape[1]))
        state[f"pca_layer_dict.{annotation}.data_to_feat"] = basis.feat_to_data.T.contiguous()
        state[f"pca_layer_dict.{annotation}.feat_mean"] = torch.zeros_like(coefficients[0])
        state[f"pca_layer_dict.{annotation}.feat_std"] = torch.ones_like(coefficients[0])
    if model.config.decoder == "transformer":
        state["decoder.PPE.pe"] = common.periodic_table(model.config.decoder_dim, model.config.period, 3000)
    if legacy_names:
        state = common.legacy_hf_names(state)
    path = Path(path)
    torch.save(state, path)
    return path
