"""The SynthTalk-pretrained speech encoder: architecture, checkpoint cache, and loading into methods.

The encoder is the ``mel`` encoder of methods.audio (log-mel -> conv stack at 50 Hz -> projection ->
transformer) with a frame-wise phoneme head for pretraining. Methods load it as audio ``kind:
synthtalk`` the way the paper presets load wav2vec2 / HuBERT: the CNN front end (conv1, conv2) frozen
(``freeze_cnn``), the projection and transformer fine-tuned; the phoneme head is not part of the
method's encoder but can initialise MemoryTalker's text-logit head (:func:`phoneme_head_weights`).

This module imports no tracking: a missing checkpoint is an error that names the command making it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
from pathlib import Path

import torch
from torch import nn

from talkbench.datasets.spec import DatasetSpec
from talkbench.errors import ConfigError
from talkbench.methods import audio as audio_mod
from talkbench.methods.audio import AudioEncoderConfig, MelEncoder
from talkbench.paths import home

from .data import FEATURE_RATE_HZ, PHONEMES

KIND = "synthtalk"
CHECKPOINT = "encoder.pt"
META = "encoder.json"
ARCH_FIELDS = ("n_mels", "conv_dim", "d_model", "n_layers", "n_heads")
CNN_MODULES = ("conv1", "conv2")  # the front end frozen like wav2vec2's feature encoder
# name_or_path values meaning "the default cached encoder" (the field's default is a wav2vec2 name)
DEFAULT_NAMES = ("", KIND, next(f.default for f in dataclasses.fields(AudioEncoderConfig)
                                if f.name == "name_or_path"))
COMMAND = "bench pretrain-encoder"


def encoder_cache() -> Path:
    return home() / "encoders" / KIND


WEIGHT_MODULES = ("data.py", "config.py", "train.py")  # with PhonemeEncoder: all that shapes the weights


def code_digest() -> str:
    """Hash of the code that shapes the checkpoint: the data, settings and training modules, the
    pretraining model and the mel encoder's numerics (not the loading code of this module)."""
    h = hashlib.sha256()
    for name in WEIGHT_MODULES:
        h.update(name.encode())
        h.update((Path(__file__).parent / name).read_bytes())
    for obj in (PhonemeEncoder, audio_mod.MelEncoder, audio_mod.log_mel, audio_mod.mel_filterbank,
                audio_mod.normalize_audio, audio_mod.align_features, audio_mod.time_mask_indices):
        h.update(inspect.getsource(obj).encode())
    return h.hexdigest()[:16]


def rate_spec() -> DatasetSpec:
    """A spec at the encoder's own 50 Hz: interpolation to the feature count is the identity."""
    return DatasetSpec(name="synthtalk-pretrain", fps=float(FEATURE_RATE_HZ), n_vertices=0, splits={},
                       train_subjects=())


class PhonemeEncoder(nn.Module):
    """Mel encoder + frame-wise phoneme classifier at 50 Hz (the pretraining model)."""

    def __init__(self, arch: AudioEncoderConfig, n_classes: int = len(PHONEMES)):
        super().__init__()
        self.encoder = MelEncoder(arch, rate_spec())
        self.head = nn.Linear(arch.d_model, n_classes)

    def forward(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        frames = torch.div(MelEncoder.frames_100hz(lengths) - 1, 2, rounding_mode="floor") + 1
        h, out_len = self.encoder(audio, lengths, frames)
        return self.head(h), out_len


def arch_dict(cfg: AudioEncoderConfig) -> dict:
    return {k: getattr(cfg, k) for k in ARCH_FIELDS}


def save_checkpoint(path: Path, model: PhonemeEncoder, arch: AudioEncoderConfig, meta: dict) -> None:
    torch.save({"arch": arch_dict(arch), "phonemes": list(PHONEMES),
                "encoder": model.encoder.state_dict(), "head": model.head.state_dict()}, path / CHECKPOINT)
    (path / META).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")


def default_checkpoint() -> Path:
    """The checkpoint of the default pretraining config (error naming the command if not made yet)."""
    from .config import PretrainConfig  # no torch-heavy work: the key is a hash of settings and code

    path = encoder_cache() / PretrainConfig().cache_key() / CHECKPOINT
    if not path.is_file():
        raise ConfigError(
            f"audio.kind '{KIND}': the pretrained SynthTalk encoder is not in the cache ({path}); make it "
            f"once with `{COMMAND}` (a few minutes on a CPU), or set audio.pretrained=false"
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

    def __init__(self, cfg: AudioEncoderConfig, spec: DatasetSpec):
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


def build_pretrained_encoder(cfg: AudioEncoderConfig, spec: DatasetSpec) -> SynthTalkEncoder:
    return SynthTalkEncoder(cfg, spec)


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
