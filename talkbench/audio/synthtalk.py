"""The SynthTalk-pretrained speech encoder as methods load it (``audio.kind: synthtalk``).

The ``mel`` encoder with weights from ``bench pretrain-encoder`` (talkbench.speech_pretrain makes and
caches them; this module only reads them), used the way the paper presets use wav2vec2 / HuBERT: the
CNN front end (conv1, conv2) frozen (``freeze_cnn``), the projection and transformer fine-tuned. Its
phoneme head can initialise MemoryTalker's text-logit head (:func:`phoneme_head_weights`).

``name_or_path`` is a checkpoint file or folder, or one of :data:`DEFAULT_NAMES` for the default
encoder: the one whose cache key the pretraining last recorded in ``encoders/synthtalk/default``
(every pipeline run that needs it ensures it first, so the record follows the pretraining code).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from talkbench.audio.base import MotionClock
from talkbench.audio.config import AudioEncoderConfig
from talkbench.audio.mel import MelEncoder
from talkbench.errors import ConfigError
from talkbench.paths import home

KIND = "synthtalk"
CHECKPOINT = "encoder.pt"
META = "encoder.json"
DEFAULT_RECORD = "default"  # file under encoder_cache(): the cache key of the default pretraining
ARCH_FIELDS = ("n_mels", "conv_dim", "d_model", "n_layers", "n_heads")
CNN_MODULES = ("conv1", "conv2")  # the front end frozen like wav2vec2's feature encoder
# name_or_path values meaning "the default cached encoder" (the field's default is a wav2vec2 name)
DEFAULT_NAMES = ("", KIND, next(f.default for f in dataclasses.fields(AudioEncoderConfig)
                                if f.name == "name_or_path"))
COMMAND = "bench pretrain-encoder"


def encoder_cache() -> Path:
    return home() / "encoders" / KIND


def default_checkpoint() -> Path:
    """The checkpoint of the default pretraining (error naming the command if not made yet)."""
    record = encoder_cache() / DEFAULT_RECORD
    key = record.read_text().strip() if record.is_file() else ""
    path = encoder_cache() / key / CHECKPOINT
    if not key or not path.is_file():
        raise ConfigError(
            f"audio.kind '{KIND}': the pretrained SynthTalk encoder is not in the cache ({encoder_cache()}); "
            f"make it once with `{COMMAND}` (a few minutes on a CPU; `bench run` makes it on first use), "
            "or set audio.pretrained=false"
        )
    return path


def resolve_checkpoint(name_or_path: str) -> Path:
    if name_or_path in DEFAULT_NAMES:
        return default_checkpoint()
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise ConfigError(
            f"audio.name_or_path '{name_or_path}': no SynthTalk encoder checkpoint there (expected a "
            f"directory with {CHECKPOINT} or the file itself, or '{KIND}' for the default made by "
            f"`{COMMAND}`)"
        )
    return path


def load_checkpoint(name_or_path: str) -> dict:
    path = resolve_checkpoint(name_or_path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file
        raise ConfigError(f"SynthTalk encoder checkpoint {path} cannot be read: {exc}") from None
    if not isinstance(state, dict) or not {"arch", "encoder", "head", "phonemes"} <= set(state):
        raise ConfigError(f"SynthTalk encoder checkpoint {path}: expected keys arch, encoder, head, phonemes")
    state["path"] = str(path)
    return state


class SynthTalkEncoder(MelEncoder):
    """The mel encoder with SynthTalk-pretrained weights (``pretrained``) and a frozen CNN
    (``freeze_cnn``), as wav2vec2 is used by FaceFormer/CodeTalker and HuBERT by MemoryTalker."""

    def __init__(self, cfg: AudioEncoderConfig, spec: MotionClock):
        super().__init__(cfg, spec)
        self.checkpoint: str | None = None
        if cfg.pretrained:
            state = load_checkpoint(cfg.name_or_path)
            wrong = {k: (getattr(cfg, k), v) for k, v in state["arch"].items() if getattr(cfg, k) != v}
            if wrong:
                detail = ", ".join(f"audio.{k}={a} (checkpoint: {b})" for k, (a, b) in wrong.items())
                raise ConfigError(
                    f"audio.kind '{KIND}': {detail} in {state['path']}; set them to the checkpoint's"
                )
            # the SpecAugment embedding exists only when masking is on, here or in pretraining
            missing, unexpected = self.load_state_dict(state["encoder"], strict=False)
            stray = [k for k in (*missing, *unexpected) if k != "masked_spec_embed"]
            if stray:
                raise ConfigError(f"SynthTalk encoder checkpoint {state['path']}: mismatched tensors {stray}")
            self.checkpoint = state["path"]
        if cfg.freeze_cnn:
            for name in CNN_MODULES:
                getattr(self, name).requires_grad_(False)

    def trainable_prefixes(self) -> tuple[str, ...]:
        if not self.cfg.freeze_cnn:
            return ("",)
        names = [f"{n}." for n, _ in self.named_children() if n not in CNN_MODULES]
        names += [n for n, _ in self.named_parameters(recurse=False)]
        return tuple(names)

    def cnn(self, audio: torch.Tensor, audio_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        frozen = not any(p.requires_grad for n in CNN_MODULES for p in getattr(self, n).parameters())
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            return super().cnn(audio, audio_lengths)


def phoneme_head_weights(
    n_out: int, name_or_path: str = KIND, in_dim: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight (n_out, d_model), bias (n_out,)) of the encoder's phoneme head, for a text-logit head of
    ``n_out`` classes (MemoryTalker's ``memory_slots``). Rows beyond the phoneme inventory are unused
    tokens, like the special tokens of a CTC vocabulary: zero weight and a bias 10 below the lowest
    phoneme bias, so they start silent and can still learn."""
    state = load_checkpoint(name_or_path)
    weight, bias = state["head"]["weight"], state["head"]["bias"]
    n_ph = weight.shape[0]
    if in_dim is not None and in_dim != weight.shape[1]:
        raise ConfigError(
            f"text-logit head on {in_dim}-dim features cannot take the phoneme head of {state['path']} "
            f"({weight.shape[1]}-dim); expected audio.d_model={weight.shape[1]}"
        )
    if n_out < n_ph:
        raise ConfigError(
            f"text-logit head of {n_out} classes cannot hold the encoder's {n_ph} phonemes "
            f"({state['path']}); expected memory_slots >= {n_ph}"
        )
    w = torch.zeros(n_out, weight.shape[1])
    b = torch.full((n_out,), float(bias.min()) - 10.0)
    w[:n_ph], b[:n_ph] = weight, bias
    return w, b
