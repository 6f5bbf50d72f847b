"""What speech encoder a method predicted with, as run tags: family, checkpoint, weights digests and
which parameters stayed frozen (``contract.Tag.encoder``). Logged when a run is scored, so every
leaderboard row and report can name the encoder and warn when rows mix encoders."""

from __future__ import annotations

from torch import nn

from talkbench.audio.base import AudioEncoder
from talkbench.audio.config import HF_KINDS, encoder_name
from talkbench.audio.feature_cache import tensors_digest, weights_digest


def main_encoder(method: nn.Module) -> AudioEncoder | None:
    """The method's speech encoder: the outermost AudioEncoder (SelfTalk's recogniser, say, sits deeper)."""
    found = [(name.count("."), name, m) for name, m in method.named_modules() if isinstance(m, AudioEncoder)]
    return min(found, key=lambda f: f[:2])[2] if found else None


def _frozen_summary(encoder: AudioEncoder, frozen: list[str]) -> str:
    """``"feature_extractor, feature_projection (4,200,448 of 94,395,392)"``: the frozen modules
    (names cut to two levels) and how many of the encoder's parameters they hold."""
    params = dict(encoder.named_parameters())
    n_frozen = sum(params[n].numel() for n in frozen)
    total = sum(p.numel() for p in params.values())
    if not frozen:
        return f"none (0 of {total:,})"
    parts = list(dict.fromkeys(".".join(n.split(".")[:2]) for n in frozen))
    shown = ", ".join(parts[:4]) + (f" and {len(parts) - 4} more" if len(parts) > 4 else "")
    return f"{shown} ({n_frozen:,} of {total:,})"


def encoder_provenance(method: nn.Module) -> dict[str, str]:
    """field -> value for ``Tag.encoder(field)``; empty for a method without a speech encoder."""
    encoder = main_encoder(method)
    if encoder is None:
        return {}
    cfg = encoder.cfg
    frozen = encoder.frozen_parameters()
    params = dict(encoder.named_parameters())
    checkpoint = cfg.name_or_path if cfg.kind in HF_KINDS else ""
    pretrained = bool(cfg.pretrained) if cfg.kind in HF_KINDS else False
    return {
        "name": encoder_name(cfg.kind, checkpoint, pretrained),
        "kind": cfg.kind,
        "checkpoint": checkpoint or "-",
        "pretrained": str(pretrained),
        "weights_digest": weights_digest(encoder),  # every weight as predicted with (trained ones too)
        # the frozen weights name the checkpoint: the same one gives the same digest whatever trained
        "frozen_digest": tensors_digest((n, params[n]) for n in frozen) if frozen else "-",
        "frozen": _frozen_summary(encoder, frozen),
        "layer": str(encoder.output_layer),
    }
