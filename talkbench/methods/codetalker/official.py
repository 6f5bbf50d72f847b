"""CodeTalker checkpoints as Doubiiu/CodeTalker saves them (specs/official-checkpoints.md).

Both stages write ``{'state_dict': weights, ...}`` (epoch, optimiser and so on may sit beside it).
A stage-1 file holds the VQ-VAE at top level; a stage-2 file holds the predictor with every
``autoencoder.*`` key removed, so importing a stage-2 model needs the stage-1 file too (``vqvae``).
The VQ-VAE's attention keeps q, k and v in one ``to_qkv`` matrix (concatenated along the output
dimension, in that order); ours has three. Positional tables (``PPE.pe``, ``*_pos_embedding.pe``)
are recomputed, never required.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from talkbench.errors import TalkbenchError
from talkbench.methods import official as common
from talkbench.methods.codetalker.model import CodeTalker

# predictor: ours (under "predictor.") -> official stage-2 names
_PREDICTOR = (
    ("audio_encoder.model.", "audio_encoder."),
    ("style_embedding.", "learnable_style_emb."),
    ("decoder.", "transformer_decoder."),
)
_AUTOENCODER = "autoencoder."  # the VQ-VAE inside the official stage-2 model
_BLOCK = re.compile(r"^(encoder|decoder)\.transformer\.blocks\.(\d+)\.(.+)$")
_BLOCK_OFFICIAL = re.compile(r"^(encoder|decoder)\.\1_transformer\.net\.(\d+)\.fn\.(.+)$")
# inside a block: ours -> (which of the pair 2i / 2i+1, official rest)
_IN_BLOCK = {
    "norm1.": (0, "norm."),
    "attn.out.": (0, "fn.to_out."),
    "norm2.": (1, "norm."),
    "mlp.0.": (1, "fn.l1."),
    "mlp.3.": (1, "fn.l2."),
}
_VQ_FIXED = {
    "encoder.vertice_mapping.": "encoder.vertice_mapping.0.",
    "encoder.squasher.conv.": "encoder.squasher.0.0.",
    "encoder.transformer.embed.": "encoder.encoder_linear_embedding.net.",
    "encoder.post.": "encoder.encoder_linear_embedding_post.",
    "quantizer.embedding.": "quantize.embedding.",
    "decoder.pre.": "decoder.decoder_linear_embedding_pre.",
    "decoder.squasher.conv.": "decoder.expander.0.0.",
    "decoder.transformer.embed.": "decoder.decoder_linear_embedding.net.",
    "decoder.vertice_map_reverse.": "decoder.vertice_map_reverse.",
}


# ---------------------------------------------------------------------------------------- VQ-VAE
def _vq_key(key: str) -> str:
    """Our VQ-VAE key (without ``vqvae.``) -> the official one (q/k/v all map to ``to_qkv``)."""
    m = _BLOCK.match(key)
    if m:
        side, i, rest = m.group(1), int(m.group(2)), m.group(3)
        base = f"{side}.{side}_transformer.net."
        if rest.startswith(("attn.q.", "attn.k.", "attn.v.")):
            return f"{base}{2 * i}.fn.fn.to_qkv.{rest.rsplit('.', 1)[1]}"
        for ours, (odd, theirs) in _IN_BLOCK.items():
            if rest.startswith(ours):
                return f"{base}{2 * i + odd}.fn.{theirs}{rest[len(ours) :]}"
        return key
    return common.rename_key(key, _VQ_FIXED.items())


def vq_to_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        new = _vq_key(key)
        if ".to_qkv." in new:
            qkv.setdefault(new, {})[key.split(".attn.")[1][0]] = value
        else:
            out[new] = value
    for new, parts in qkv.items():
        out[new] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


def vq_from_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    back = {v: k for k, v in _VQ_FIXED.items()}
    inner = {(odd, theirs): ours for ours, (odd, theirs) in _IN_BLOCK.items()}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if common.is_buffer_copy(key):
            continue
        m = _BLOCK_OFFICIAL.match(key)
        if m:
            side, j, rest = m.group(1), int(m.group(2)), m.group(3)
            base = f"{side}.transformer.blocks.{j // 2}."
            if rest.startswith("fn.to_qkv.") and j % 2 == 0 and value.shape[0] % 3 == 0:
                leaf = rest.rsplit(".", 1)[1]
                for name, part in zip("qkv", value.chunk(3, dim=0)):
                    out[f"{base}attn.{name}.{leaf}"] = part
                continue
            for (odd, theirs), ours in inner.items():
                if odd == j % 2 and rest.startswith(theirs):
                    key = base + ours + rest[len(theirs) :]
                    break
            out[key] = value
            continue
        out[common.rename_key(key, back.items())] = value
    return out


# ---------------------------------------------------------------------------------------- import
def import_checkpoint(model: CodeTalker, checkpoint: str | Path, vqvae: str | Path | None = None) -> dict:
    """Our state dict for ``model`` from an official stage-2 file plus its stage-1 (VQ-VAE) file.

    A stage-2 file that still carries its ``autoencoder.*`` keys needs no ``vqvae`` file.
    """
    path = Path(checkpoint)
    preset = _preset(model)
    what = f"{model.name} {preset}"  # codetalker-nd reads these files too
    official, _ = common.read_checkpoint(path)
    found = common.identify(official)
    if found is not None and found.startswith("codetalker (stage-1"):
        raise TalkbenchError(
            f"{path}: this is a CodeTalker stage-1 (VQ-VAE) checkpoint; pass the stage-2 file as the "
            f"checkpoint and this one as --vqvae"
        )
    common.require_method(official, "codetalker", path, preset)
    expected = model.state_dict()
    own_vq = {k[len(_AUTOENCODER) :]: v for k, v in official.items() if k.startswith(_AUTOENCODER)}
    predictor = {k: v for k, v in official.items() if not k.startswith(_AUTOENCODER)}
    if own_vq and vqvae is not None:
        raise TalkbenchError(f"{path} carries its own VQ-VAE (autoencoder.* keys); drop --vqvae {vqvae}")
    if own_vq:
        vq_path, vq_names = path, _file_name
    elif vqvae is None:
        raise TalkbenchError(
            f"{path}: a CodeTalker stage-2 checkpoint has no VQ-VAE (the official code removes "
            "autoencoder.* before saving); pass the stage-1 checkpoint with --vqvae FILE"
        )
    else:
        vq_path, vq_names = Path(vqvae), _file_name_vq
        own_vq, _ = common.read_checkpoint(vq_path, what="VQ-VAE checkpoint")
        kind = common.identify(own_vq)
        if kind not in (None, "codetalker (stage-1 VQ-VAE file)"):
            raise TalkbenchError(
                f"--vqvae {vq_path}: this is a {kind} checkpoint, not a CodeTalker stage-1 file"
            )
    vq_state = {"vqvae." + k: v for k, v in vq_from_official(own_vq).items()}
    vq_expected = {k: v for k, v in expected.items() if k.startswith("vqvae.")}
    common.check_state(vq_state, vq_expected, vq_path, f"the VQ-VAE of {what}", rename=vq_names)
    pred_state = {
        "predictor." + common.rename_key(k, [(n, o) for o, n in _PREDICTOR]): v
        for k, v in predictor.items()
        if not common.is_buffer_copy(k)
    }
    pred_state = common.upgrade_hf_names(pred_state, expected)
    pred_expected = {k: v for k, v in expected.items() if not k.startswith("vqvae.")}
    common.check_state(pred_state, pred_expected, path, what, rename=_file_name)
    return {**vq_state, **pred_state}


def _file_name(key: str) -> str:
    """Our key -> its name in a stage-2 file (for messages)."""
    if key.startswith("vqvae."):
        return _AUTOENCODER + _vq_key(key[len("vqvae.") :])
    return common.rename_key(key[len("predictor.") :] if key.startswith("predictor.") else key, _PREDICTOR)


def _file_name_vq(key: str) -> str:
    return _vq_key(key[len("vqvae.") :]) if key.startswith("vqvae.") else key


# ---------------------------------------------------------------------------------------- export
def save_official(
    model: CodeTalker, path: str | Path, vqvae: str | Path, legacy_names: bool = True, epoch: int = 100
) -> tuple[Path, Path]:
    """Write ``model`` as the official code does: the stage-2 file at ``path`` (``autoencoder.*``
    removed) and the stage-1 file at ``vqvae``, both ``{'state_dict': ..., 'epoch': ...}``."""
    state = model.state_dict()
    vq = vq_to_official({k[len("vqvae.") :]: v for k, v in state.items() if k.startswith("vqvae.")})
    table = common.periodic_table(model.config.hidden, 600)
    vq["encoder.encoder_pos_embedding.pe"] = table
    vq["decoder.decoder_pos_embedding.pe"] = table
    pred = {
        common.rename_key(k[len("predictor.") :], _PREDICTOR): v
        for k, v in state.items()
        if k.startswith("predictor.")
    }
    if legacy_names:
        pred = common.legacy_hf_names(pred)
    pred["PPE.pe"] = common.periodic_table(model.config.d_model, model.spec.period)
    stage2, stage1 = Path(path), Path(vqvae)
    torch.save({"epoch": epoch, "state_dict": pred}, stage2)
    torch.save({"epoch": epoch, "state_dict": vq}, stage1)
    return stage2, stage1


def _preset(model: CodeTalker) -> str:
    return f"paper-{model.spec.name}" if model.spec.name in ("vocaset", "biwi") else model.spec.name
