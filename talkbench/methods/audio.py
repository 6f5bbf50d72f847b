"""Shared speech encoders: wav2vec2 / HuBERT (Hugging Face) and a small log-mel encoder.

Every encoder has one contract (FaceFormer spec §2, MemoryTalker spec §2.1, CodeTalker spec §2.1):

    feats, feat_lengths = encoder(audio (B, S), audio_lengths (B,), n_frames (B,) | None)

1. each utterance is normalised over its valid samples (zero mean, unit variance, as
   Wav2Vec2Processor does);
2. a CNN front end gives 50 Hz features (the frozen wav2vec2/HuBERT feature encoder, or log-mel at
   100 Hz followed by a stride-2 conv stack);
3. the features are aligned to the motion rate BEFORE the feature projection:
   ``interpolate``: linear interpolation (align_corners=True) to ``n_frames`` per element, or when
   ``n_frames`` is None to the dataset's frame rule (``DatasetSpec.frames_for_samples``: the released
   ``int(S'/50*fps)`` for VOCASET, the generator's count for SynthTalk); ``pairs``: 50 Hz kept, two
   audio frames per motion frame (trimmed to an even length, cropped to ``2 * n_frames``);
4. feature projection, SpecAugment time masking (training only), transformer with padded frames
   masked out.

``feat_lengths`` is the number of valid output frames per element (motion frames for
``interpolate``, twice the motion frames for ``pairs``). Padding never changes a valid output:
front ends run on each element's valid samples, alignment works per element, transformers get
key-padding masks.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from talkbench.datasets.spec import DatasetSpec
from talkbench.errors import ConfigError, DataError
from talkbench.methods.layers import lengths_to_mask, sinusoid_table

SAMPLE_RATE = 16_000
FEATURE_RATE = 50  # Hz, the CNN output rate of wav2vec2 / HuBERT (stride 320 at 16 kHz)
_HF_CLASSES = {"wav2vec2": "Wav2Vec2Model", "hubert": "HubertModel"}
_DOWNLOAD_HINT = {
    "wav2vec2": "facebook/wav2vec2-base-960h",
    "hubert": "facebook/hubert-base-ls960",
}


@dataclass
class AudioEncoderConfig:
    """Which speech encoder to build and how.

    ``pretrained=False`` builds a randomly initialised model from the named architecture's config
    (read from the local Hugging Face cache when present, else the library default, which is the
    base architecture) updated with ``hf_overrides``; tests use tiny overrides and never download.
    With ``pretrained=True``, ``hf_overrides`` are passed to ``from_pretrained`` as config overrides
    (e.g. ``layerdrop``). ``mask_time_prob`` / ``mask_time_length`` of None keep the checkpoint's.
    """

    kind: str = "wav2vec2"  # mel | wav2vec2 | hubert
    name_or_path: str = "facebook/wav2vec2-base-960h"
    pretrained: bool = True
    hf_overrides: dict = field(default_factory=dict)
    freeze_cnn: bool = True
    mask_time_prob: float | None = None
    mask_time_length: int | None = None
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
    # keep the frozen wav2vec2/HuBERT CNN's features per clip while training (the CNN is about three
    # quarters of the base encoder's CPU time); see FrontEndCache for the key and when it is bypassed
    cache_frozen_cnn: bool = True


# ---------------------------------------------------------------------------------------------
# utilities shared by every encoder


def normalize_audio(audio: torch.Tensor, lengths: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Per-utterance zero mean / unit variance over the valid samples; padding stays zero."""
    valid = lengths_to_mask(lengths, audio.shape[1]).to(audio.dtype)
    n = lengths.clamp(min=1).to(audio.dtype)[:, None]
    mean = (audio * valid).sum(1, keepdim=True) / n
    var = (((audio - mean) * valid) ** 2).sum(1, keepdim=True) / n
    return (audio - mean) / torch.sqrt(var + eps) * valid


def _too_short(n_samples: int, fps: float) -> DataError:
    return DataError(
        f"audio of {n_samples} samples ({n_samples / SAMPLE_RATE:.3f} s at 16 kHz) is shorter than one "
        f"motion frame at {fps:g} fps; expected at least {math.ceil(SAMPLE_RATE / fps) + 400} samples"
    )


def align_features(
    feats: torch.Tensor,
    lengths: torch.Tensor,
    n_frames: torch.Tensor | None,
    mode: str,
    fps: float,
    audio_lengths: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Align 50 Hz features (B, S', C) with valid ``lengths`` to the motion rate (spec §2 step 2).

    ``interpolate``: per element, linear interpolation with align_corners=True of its valid part to
    ``n_frames[b]`` (or ``int(S'_b / 50 * fps)``). ``pairs``: trim to even, crop to 2 * n_frames.
    Returns (aligned (B, Ta, C), valid lengths (B,)). Batched with a gather, identical to
    F.interpolate per element (tested).
    """
    lens = [int(v) for v in lengths.tolist()]
    a_lens = audio_lengths.tolist() if audio_lengths is not None else [0] * len(lens)
    if mode == "interpolate":
        if n_frames is None:
            out = [int(s / FEATURE_RATE * fps) for s in lens]
        else:
            out = [int(v) for v in n_frames.tolist()]
        for s, n, a in zip(lens, out, a_lens):
            if s < 1 or n < 1:
                raise _too_short(int(a), fps)
        t_max = max(out)
        device = feats.device
        src = torch.tensor(lens, device=device, dtype=torch.float32)[:, None]
        dst = torch.tensor(out, device=device, dtype=torch.float32)[:, None]
        k = torch.arange(t_max, device=device, dtype=torch.float32)[None, :]
        # align_corners=True: position k maps to k * (S'-1) / (n-1); n == 1 maps to 0
        scale = torch.where(dst > 1, (src - 1) / (dst - 1).clamp(min=1), torch.zeros_like(src))
        pos = (k * scale).clamp(max=(src - 1).expand(-1, t_max))
        lo = pos.floor().long()
        hi = torch.minimum(lo + 1, (src - 1).long().expand(-1, t_max))
        w = (pos - lo.to(pos.dtype)).to(feats.dtype)[..., None]
        c = feats.shape[-1]
        f_lo = feats.gather(1, lo[..., None].expand(-1, -1, c))
        f_hi = feats.gather(1, hi[..., None].expand(-1, -1, c))
        aligned = f_lo + (f_hi - f_lo) * w
        valid = lengths_to_mask(torch.tensor(out, device=device), t_max)
        return aligned * valid[..., None].to(feats.dtype), torch.tensor(out, device=device)
    if mode == "pairs":
        out = [s - s % 2 for s in lens]
        if n_frames is not None:
            out = [min(s, 2 * int(n)) for s, n in zip(out, n_frames.tolist())]
        for s, a in zip(out, a_lens):
            if s < 2:
                raise _too_short(int(a), fps)
        t_max = max(out)
        valid = lengths_to_mask(torch.tensor(out, device=feats.device), t_max)
        return feats[:, :t_max] * valid[..., None].to(feats.dtype), torch.tensor(out, device=feats.device)
    raise ConfigError(
        f"unknown audio alignment '{mode}' in the dataset spec, expected 'interpolate' or 'pairs'"
    )


def _pad_stack(items: list[torch.Tensor]) -> torch.Tensor:
    """Pad a list of (L_i, C) tensors with zeros to (B, L_max, C)."""
    return nn.utils.rnn.pad_sequence(items, batch_first=True)


def time_mask_indices(
    lengths: torch.Tensor, t_max: int, prob: float, span: int, min_masks: int = 2
) -> torch.Tensor:
    """SpecAugment time-mask spans (B, T) bool over each element's valid frames.

    Same rule as wav2vec2's ``_compute_mask_indices``: about ``prob * L / span`` spans of length
    ``span`` (at least ``min_masks``), start points drawn without replacement; drawn with torch's
    generator so that seeding torch makes it reproducible.
    """
    out = torch.zeros(len(lengths), t_max, dtype=torch.bool)
    for b, n in enumerate(lengths.tolist()):
        width = min(span, n)
        if width < 1:
            continue
        n_spans = int(prob * n / span + torch.rand(()).item())
        n_spans = min(max(n_spans, min_masks), n - width + 1, n // width if width else 0)
        if n_spans < 1:
            continue
        starts = torch.randperm(n - width + 1)[:n_spans]
        idx = (starts[:, None] + torch.arange(width)[None]).flatten()
        out[b, idx] = True
    return out.to(lengths.device)


# ---------------------------------------------------------------------------------------------
# log-mel front end in pure torch


def mel_filterbank(
    n_mels: int, n_fft: int, sample_rate: int, f_min: float = 0.0, f_max: float | None = None
) -> torch.Tensor:
    """Triangular HTK-scale mel filters (n_mels, n_fft // 2 + 1), each filter with unit peak."""
    f_max = sample_rate / 2 if f_max is None else f_max

    def hz_to_mel(f):
        return 2595.0 * torch.log10(1.0 + f / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    m = torch.linspace(hz_to_mel(torch.tensor(f_min)), hz_to_mel(torch.tensor(f_max)), n_mels + 2)
    hz = mel_to_hz(m.to(torch.float64))
    lower, centre, upper = hz[:-2, None], hz[1:-1, None], hz[2:, None]
    up = (freqs[None] - lower) / (centre - lower)
    down = (upper - freqs[None]) / (upper - centre)
    return torch.clamp(torch.minimum(up, down), min=0.0).float()


def log_mel(
    audio: torch.Tensor,
    sample_rate: int = SAMPLE_RATE,
    n_fft: int = 400,
    hop: int = 160,
    n_mels: int = 80,
    f_min: float = 0.0,
    f_max: float | None = None,
    eps: float = 1e-5,
) -> torch.Tensor:
    """Natural-log mel power spectrogram: (S,) or (B, S) -> (n_mels, M) or (B, n_mels, M).

    Frames are not centred: M = 1 + (S - n_fft) // hop (100 Hz for the defaults at 16 kHz).
    """
    squeeze = audio.dim() == 1
    x = audio[None] if squeeze else audio
    if x.shape[-1] < n_fft:
        raise DataError(f"log_mel: audio of {x.shape[-1]} samples is shorter than one window ({n_fft})")
    window = torch.hann_window(n_fft, device=x.device, dtype=x.dtype)
    spec = torch.stft(x, n_fft, hop_length=hop, window=window, center=False, return_complex=True)
    power = spec.real**2 + spec.imag**2
    fb = mel_filterbank(n_mels, n_fft, sample_rate, f_min, f_max).to(x.device, x.dtype)
    mel = torch.log(torch.clamp(fb @ power, min=eps))
    return mel[0] if squeeze else mel


# ---------------------------------------------------------------------------------------------
# encoders


class FrontEndCache:
    """Features of a frozen front end per clip, so that epochs after the first skip the CNN.

    Key: a digest of the clip's normalised valid samples (which names the clip and its length, and
    misses whenever an augmentation changed the audio) plus the front end's weights version (each
    parameter's identity and in-place version counter: an optimizer step or load_state_dict on them
    invalidates). Used only while training with the front end frozen; bounded in memory (entries are
    no longer added past ``max_bytes``); never saved with the model.
    """

    def __init__(self, max_bytes: int = 2 << 30):
        self.max_bytes = max_bytes
        self.hits = self.misses = 0
        self._items: dict[tuple, torch.Tensor] = {}
        self._bytes = 0

    def __getstate__(self):  # a pickled encoder carries no cached features
        return {"max_bytes": self.max_bytes}

    def __setstate__(self, state):
        self.__init__(state.get("max_bytes", 2 << 30))

    def clear(self) -> None:
        self._items.clear()
        self._bytes = 0

    def get(self, samples: torch.Tensor, version: tuple, compute) -> torch.Tensor:
        import hashlib

        data = samples.detach().to("cpu", torch.float32).contiguous().numpy()
        key = (hashlib.blake2b(data.tobytes(), digest_size=16).hexdigest(), data.shape[0], version)
        found = self._items.get(key)
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        feats = compute(samples)
        size = feats.numel() * feats.element_size()
        if self._bytes + size <= self.max_bytes:
            self._items[key] = feats.detach()
            self._bytes += size
        return feats


class AudioEncoder(nn.Module):
    """Base class: subclasses set ``out_dim`` and implement ``forward`` with the module contract."""

    out_dim: int

    def __init__(self, cfg: AudioEncoderConfig, spec: DatasetSpec):
        super().__init__()
        self.cfg = cfg
        self.fps = float(spec.fps)
        self.alignment = spec.audio_alignment
        self.spec = spec

    def forward(
        self, audio: torch.Tensor, audio_lengths: torch.Tensor, n_frames: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def trainable_prefixes(self) -> tuple[str, ...]:
        """Parameter-name prefixes (relative to this module) that train; the frozen CNN is left out."""
        return ("",)

    def inference_precision(self, audio: torch.Tensor):
        """bf16 autocast for inference on CUDA (``cuda_bf16_inference``), else nothing."""
        wanted = getattr(self.cfg, "cuda_bf16_inference", True)  # configs pickled before the option
        if wanted and audio.is_cuda and not torch.is_grad_enabled() and torch.cuda.is_bf16_supported():
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def default_frames(
        self, audio_lengths: torch.Tensor, n_frames: torch.Tensor | None
    ) -> torch.Tensor | None:
        """``n_frames`` when given; else the dataset's count where it is not the feature rule.

        Under ``frame_rule == "features"`` (VOCASET, BIWI) None stays None and the frame count comes
        from this CNN's 50 Hz length S' as in the released code; under ``"samples"`` (SynthTalk) it is
        the generator's count from the sample count, so predictions have the ground truth's length.
        """
        spec = getattr(self, "spec", None)  # encoders pickled before the frame rule existed
        if n_frames is not None or spec is None or spec.frame_rule == "features":
            return n_frames
        frames = [spec.frames_for_samples(int(n)) for n in audio_lengths.tolist()]
        return torch.tensor(frames, device=audio_lengths.device)

    def _check_lengths(self, audio: torch.Tensor, audio_lengths: torch.Tensor) -> None:
        if audio.dim() != 2 or audio_lengths.shape != (audio.shape[0],):
            raise DataError(
                f"audio encoder expects audio (B, S) and audio_lengths (B,), got {tuple(audio.shape)} "
                f"and {tuple(audio_lengths.shape)}"
            )
        for n in audio_lengths.tolist():
            if n < 400:  # one CNN receptive field (25 ms)
                raise _too_short(int(n), self.fps)


class MelEncoder(AudioEncoder):
    """Log-mel (100 Hz) -> conv (k3) -> conv (k3, stride 2) -> 50 Hz -> align -> LayerNorm + Linear ->
    sinusoidal positions -> pre-LN transformer encoder -> LayerNorm. Fast on CPU, no checkpoint."""

    def __init__(self, cfg: AudioEncoderConfig, spec: DatasetSpec):
        super().__init__(cfg, spec)
        self.out_dim = cfg.d_model
        self.conv1 = nn.Conv1d(cfg.n_mels, cfg.conv_dim, 3, padding=1)
        self.conv2 = nn.Conv1d(cfg.conv_dim, cfg.conv_dim, 3, stride=2, padding=1)
        self.proj_norm = nn.LayerNorm(cfg.conv_dim)
        self.projection = nn.Linear(cfg.conv_dim, cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)
        self.mask_time_prob = cfg.mask_time_prob or 0.0
        self.mask_time_length = cfg.mask_time_length or 10
        if self.mask_time_prob > 0:
            self.masked_spec_embed = nn.Parameter(torch.rand(cfg.d_model))
        layer = nn.TransformerEncoderLayer(
            cfg.d_model, cfg.n_heads, 2 * cfg.d_model, cfg.dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(cfg.d_model)

    @staticmethod
    def frames_100hz(n_samples: torch.Tensor) -> torch.Tensor:
        return torch.div(n_samples - 400, 160, rounding_mode="floor") + 1

    def cnn(self, audio: torch.Tensor, audio_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S) normalised audio -> 50 Hz features (B, S', conv_dim) and valid lengths (B,)."""
        mel = log_mel(audio, n_mels=self.cfg.n_mels)  # (B, n_mels, M)
        mel = (mel + 5.0) / 5.0  # fixed rescaling to roughly unit range; audio is normalised already
        m_len = self.frames_100hz(audio_lengths)
        # zero past each element's end before every conv, so its valid frames see the same zeros
        # as an unpadded clip would see from the conv padding
        valid = lengths_to_mask(m_len, mel.shape[-1])[:, None].to(mel.dtype)
        x = F.gelu(self.conv1(mel * valid)) * valid
        x = F.gelu(self.conv2(x))
        lengths = torch.div(m_len - 1, 2, rounding_mode="floor") + 1
        return x.transpose(1, 2), lengths

    def forward(self, audio, audio_lengths, n_frames=None):
        self._check_lengths(audio, audio_lengths)
        with self.inference_precision(audio):
            h, out_len = self._encode(audio, audio_lengths, n_frames)
        return h.float(), out_len

    def _encode(self, audio, audio_lengths, n_frames):
        x = normalize_audio(audio, audio_lengths)
        feats, lengths = self.cnn(x, audio_lengths)
        n_frames = self.default_frames(audio_lengths, n_frames)
        feats, out_len = align_features(feats, lengths, n_frames, self.alignment, self.fps, audio_lengths)
        h = self.dropout(self.projection(self.proj_norm(feats)))
        valid = lengths_to_mask(out_len, h.shape[1])
        if self.training and self.mask_time_prob > 0:
            masked = time_mask_indices(out_len, h.shape[1], self.mask_time_prob, self.mask_time_length)
            h = torch.where(masked[..., None], self.masked_spec_embed.to(h.dtype), h)
        h = h + sinusoid_table(h.shape[1], h.shape[2]).to(h.device, h.dtype)
        h = self.encoder(h, src_key_padding_mask=~valid)
        h = self.final_norm(h) * valid[..., None].to(h.dtype)
        return h, out_len


class HFSpeechEncoder(AudioEncoder):
    """wav2vec2 / HuBERT called submodule by submodule (spec §2 "recommended re-implementation"):
    feature_extractor -> transpose -> align -> feature_projection ([0] if a tuple) ->
    _mask_hidden_states (training) -> encoder. Attention maps are never requested."""

    def __init__(self, cfg: AudioEncoderConfig, spec: DatasetSpec):
        super().__init__(cfg, spec)
        self.model = _load_hf_model(cfg)
        if cfg.freeze_cnn:  # HubertModel has no freeze_feature_encoder() in transformers 5
            for p in self.model.feature_extractor.parameters():
                p.requires_grad_(False)
            self.model.feature_extractor._requires_grad = False
        self.out_dim = int(self.model.config.hidden_size)
        conf = self.model.config
        self._kernels = list(conf.conv_kernel)
        self._strides = list(conf.conv_stride)
        # group norm over time in the first conv layer: padding would leak into the statistics, so
        # the CNN runs per element on its valid samples; layer-norm CNNs are exact when batched
        self._cnn_batches = getattr(conf, "feat_extract_norm", "group") == "layer"
        self.front_end_cache = FrontEndCache()

    def trainable_prefixes(self) -> tuple[str, ...]:
        if not self.cfg.freeze_cnn:
            return ("",)
        names = [n for n, _ in self.model.named_children() if n != "feature_extractor"]
        names += [n for n, _ in self.model.named_parameters(recurse=False)]
        return tuple(f"model.{n}" for n in names)

    def cnn_lengths(self, n_samples: torch.Tensor) -> torch.Tensor:
        n = n_samples.clone()
        for k, s in zip(self._kernels, self._strides):
            n = torch.div(n - k, s, rounding_mode="floor") + 1
        return n.clamp(min=0)

    def cnn(self, audio: torch.Tensor, audio_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S) normalised audio -> 50 Hz CNN features (B, S', 512) and valid lengths (B,)."""
        lengths = self.cnn_lengths(audio_lengths)
        extractor = self.model.feature_extractor
        frozen = not any(p.requires_grad for p in extractor.parameters())
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            if frozen and self.training and getattr(self.cfg, "cache_frozen_cnn", False):
                version = tuple((id(p), p.data_ptr(), p._version) for p in extractor.parameters())
                cache = self.__dict__.setdefault("front_end_cache", FrontEndCache())  # old pickles lack it
                items = [
                    cache.get(audio[b, : int(n)], version, lambda x: extractor(x[None])[0].transpose(0, 1))
                    for b, n in enumerate(audio_lengths.tolist())
                ]
                feats = _pad_stack(items)
            elif self._cnn_batches:
                feats = extractor(audio).transpose(1, 2)[:, : int(lengths.max())]
            else:
                items = [
                    extractor(audio[b : b + 1, : int(n)])[0].transpose(0, 1)
                    for b, n in enumerate(audio_lengths.tolist())
                ]
                feats = _pad_stack(items)
        return feats, lengths

    def forward(self, audio, audio_lengths, n_frames=None):
        self._check_lengths(audio, audio_lengths)
        with self.inference_precision(audio):
            h, out_len = self._encode(audio, audio_lengths, n_frames)
        return h.float(), out_len

    def _encode(self, audio, audio_lengths, n_frames):
        x = normalize_audio(audio, audio_lengths)
        feats, lengths = self.cnn(x, audio_lengths)
        n_frames = self.default_frames(audio_lengths, n_frames)
        feats, out_len = align_features(feats, lengths, n_frames, self.alignment, self.fps, audio_lengths)
        hidden = self.model.feature_projection(feats)
        if isinstance(hidden, tuple):  # transformers >= 4.1x returns (hidden, normed)
            hidden = hidden[0]
        attn = lengths_to_mask(out_len, hidden.shape[1])
        full = bool(attn.all())
        if self.training:
            hidden = self.model._mask_hidden_states(hidden, attention_mask=None if full else attn.long())
        out = self.model.encoder(hidden, attention_mask=None if full else attn)
        h = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        return h * attn[..., None].to(h.dtype), out_len


def _load_hf_model(cfg: AudioEncoderConfig) -> nn.Module:
    import transformers

    cls = getattr(transformers, _HF_CLASSES[cfg.kind])
    overrides = dict(cfg.hf_overrides)
    if cfg.mask_time_prob is not None:
        overrides["mask_time_prob"] = cfg.mask_time_prob
    if cfg.mask_time_length is not None:
        overrides["mask_time_length"] = cfg.mask_time_length
    if cfg.pretrained:
        try:
            return cls.from_pretrained(cfg.name_or_path, local_files_only=True, **overrides)
        except (OSError, ValueError) as err:
            raise ConfigError(
                f"{cfg.kind} checkpoint '{cfg.name_or_path}' is not available locally "
                f"({type(err).__name__}). "
                f"Get it once with `huggingface-cli download {cfg.name_or_path}` (the usual {cfg.kind} "
                f"checkpoint is {_DOWNLOAD_HINT[cfg.kind]}), or pass a local directory with "
                f"`--set <method>.audio.name_or_path=/path/to/checkpoint`; tests can use "
                f"`audio.pretrained=false`."
            ) from None
    config_cls = cls.config_class
    try:
        config = config_cls.from_pretrained(cfg.name_or_path, local_files_only=True)
    except (OSError, ValueError):
        config = config_cls()  # the library default is the base architecture
    for key, value in overrides.items():
        if not hasattr(config, key):
            raise ConfigError(f"audio.hf_overrides: '{key}' is not a {config_cls.__name__} field")
        setattr(config, key, value)
    return cls(config)


def build_audio_encoder(cfg: AudioEncoderConfig, spec: DatasetSpec) -> AudioEncoder:
    """Build the encoder named by ``cfg.kind`` for a dataset (its fps and audio alignment)."""
    if spec.audio_alignment not in ("interpolate", "pairs"):
        raise ConfigError(
            f"dataset '{spec.name}': audio_alignment '{spec.audio_alignment}', "
            "expected 'interpolate' or 'pairs'"
        )
    if cfg.kind == "mel":
        return MelEncoder(cfg, spec)
    if cfg.kind in _HF_CLASSES:
        return HFSpeechEncoder(cfg, spec)
    if cfg.kind == "synthtalk":  # the mel encoder pretrained on SynthTalk phonemes (speech_pretrain)
        from talkbench.speech_pretrain.encoder import build_pretrained_encoder

        return build_pretrained_encoder(cfg, spec)
    raise ConfigError(
        f"audio.kind '{cfg.kind}' is unknown, expected one of: mel, wav2vec2, hubert, synthtalk"
    )
