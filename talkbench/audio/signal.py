"""The signal part of the speech layer: reading WAVs at 16 kHz, normalisation, frame alignment, log-mel.

Reading turns a bad file into one ``DataError`` that names it; alignment maps 50 Hz encoder features
to any motion rate (``interpolate``) or keeps two per frame (``pairs``); every function is exact for
zero-padded batches (statistics and alignment per element's valid part).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from scipy.signal import resample_poly
from torch import nn

from talkbench.errors import ConfigError, DataError
from talkbench.sequence import lengths_to_mask

log = logging.getLogger("talkbench.audio")

SAMPLE_RATE = 16_000
FEATURE_RATE = 50  # Hz, the CNN output rate of wav2vec2 / HuBERT / WavLM (stride 320 at 16 kHz)


# ----------------------------------------------------------------------------------------- reading
def resample(audio: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling (exact rational ratio, anti-aliased); float32 out."""
    if rate == target:
        return np.asarray(audio, np.float32)
    g = math.gcd(int(rate), int(target))
    out = resample_poly(np.asarray(audio, np.float32), target // g, int(rate) // g)
    return out.astype(np.float32)


def audio_info(path: str | Path) -> tuple[int, int]:
    """(frames, sample rate) from the header, without decoding the samples."""
    path = Path(path)
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises RuntimeError/LibsndfileError/OSError
        raise DataError(f"{path}: unreadable audio file ({exc}); expected a WAV file") from exc
    if info.frames <= 0:
        raise DataError(f"{path}: empty audio file (0 samples)")
    return int(info.frames), int(info.samplerate)


def read_audio_raw(path: str | Path) -> tuple[np.ndarray, int]:
    """Samples as float32 mono in [-1, 1] at the file's own rate, and that rate."""
    path = Path(path)
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:
        raise DataError(f"{path}: unreadable audio file ({exc}); expected a WAV file") from exc
    if data.shape[0] == 0:
        raise DataError(f"{path}: empty audio file (0 samples)")
    # mixing channels down is what librosa.load(mono=True) does in the reference loaders
    audio = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1)
    if not np.isfinite(audio).all():
        raise DataError(f"{path}: audio contains NaN or inf samples")
    return np.ascontiguousarray(audio, np.float32), int(rate)


def read_audio(path: str | Path, note: bool = True) -> np.ndarray:
    """Read a WAV as float32 mono at 16 kHz; other rates are resampled (with a log note)."""
    audio, rate = read_audio_raw(path)
    if rate != SAMPLE_RATE:
        if note:
            log.warning("%s: audio at %d Hz resampled to %d Hz", path, rate, SAMPLE_RATE)
        audio = resample(audio, rate)
    return audio


# ------------------------------------------------------------------------ normalisation and alignment
def normalize_audio(audio: torch.Tensor, lengths: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Per-utterance zero mean / unit variance over the valid samples; padding stays zero."""
    valid = lengths_to_mask(lengths, audio.shape[1]).to(audio.dtype)
    n = lengths.clamp(min=1).to(audio.dtype)[:, None]
    mean = (audio * valid).sum(1, keepdim=True) / n
    var = (((audio - mean) * valid) ** 2).sum(1, keepdim=True) / n
    return (audio - mean) / torch.sqrt(var + eps) * valid


def too_short(n_samples: int, fps: float) -> DataError:
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
                raise too_short(int(a), fps)
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
                raise too_short(int(a), fps)
        t_max = max(out)
        valid = lengths_to_mask(torch.tensor(out, device=feats.device), t_max)
        return feats[:, :t_max] * valid[..., None].to(feats.dtype), torch.tensor(out, device=feats.device)
    raise ConfigError(
        f"unknown audio alignment '{mode}' in the dataset spec, expected 'interpolate' or 'pairs'"
    )


def pad_stack(items: list[torch.Tensor]) -> torch.Tensor:
    """Pad a list of (L_i, C) tensors with zeros to (B, L_max, C)."""
    return nn.utils.rnn.pad_sequence(items, batch_first=True)


# ----------------------------------------------------------------------------------------- log-mel
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
