"""Which speech encoder to build and how (``<method>.audio`` in a run's config)."""

from __future__ import annotations

from dataclasses import dataclass, field

KINDS = ("mel", "wav2vec2", "hubert", "wavlm", "synthtalk")
HF_KINDS = ("wav2vec2", "hubert", "wavlm")  # the kinds whose weights come from a named checkpoint


def encoder_name(kind: str, checkpoint: str, pretrained: bool) -> str:
    """One string per distinct encoder, the identity reports compare across runs (audio/provenance.py)."""
    if kind not in HF_KINDS:
        return kind  # mel and SynthTalk's: trained with the method or by speech_pretrain (its key tag)
    return f"{kind}: {checkpoint}" + ("" if pretrained else " (random init)")


@dataclass
class AudioEncoderConfig:
    """Which speech encoder to build and how.

    ``pretrained=False`` builds a randomly initialised model from the named architecture's config
    (read from the local Hugging Face cache when present, else the library default, which is the
    base architecture) updated with ``hf_overrides``; tests use tiny overrides and never download.
    With ``pretrained=True``, ``hf_overrides`` are passed to ``from_pretrained`` as config overrides
    (e.g. ``layerdrop``). ``mask_time_prob`` / ``mask_time_length`` of None keep the checkpoint's.
    New fields keep the old behaviour at their defaults, so run hashes do not move.
    """

    kind: str = "wav2vec2"  # one of KINDS
    name_or_path: str = "facebook/wav2vec2-base-960h"
    pretrained: bool = True
    hf_overrides: dict = field(default_factory=dict)
    freeze_cnn: bool = True
    mask_time_prob: float | None = None
    mask_time_length: int | None = None
    # Hugging Face encoders: the transformer layer whose output is returned (None: the last, with the
    # final layer norm where the architecture has one; k: hidden_states[k], 0 being the projection) and
    # how many transformer layers stay frozen with the feature projection (FaceDiffuser freezes 2)
    layer: int | None = None
    frozen_layers: int = 0
    # where the 50 Hz features meet the motion rate: "features" (before the feature projection, the
    # FaceFormer rule of base.py) or "output" (the transformer runs at 50 Hz and its output is
    # interpolated to the motion frames, whatever the dataset's alignment: UniTalker's interpolate_pos 1)
    interpolate_at: str = "features"
    # mel encoder
    n_mels: int = 80
    conv_dim: int = 128
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    dropout: float = 0.1
    # inference (no grad) on CUDA under bf16 autocast: about half the time of fp32 for the matrix work;
    # outputs are float32 again. CPU and training are unaffected (training follows the run's precision)
    cuda_bf16_inference: bool = True
    # keep the frozen wav2vec2/HuBERT/WavLM CNN's features per clip while training, in memory and on
    # disk under TALKBENCH_HOME, shared by every run with the same frozen weights (feature_cache.py)
    cache_frozen_cnn: bool = True
