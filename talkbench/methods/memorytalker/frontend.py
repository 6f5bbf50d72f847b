"""Log-mel input of the speaking-style encoder, exactly as the release computes it (spec §3.1).

torchaudio MelSpectrogram(sample_rate=16000, n_fft=400, win_length=400, hop_length=160, n_mels=80):
Hann window, centred frames with reflect padding, power spectrogram, HTK mel scale without filter
normalisation; then AmplitudeToDB(): 10 log10(max(x, 1e-10)), no top_db. Written in torch
(torchaudio is not a dependency); the utterance is first normalised to zero mean and unit variance,
as the wav2vec2 processor does.

``style_log_mel_padded`` does the same for a zero-padded batch, exactly per clip: statistics over
each clip's own samples and the centring reflect padding gathered from the clip's own ends.
"""

from __future__ import annotations

import functools

import torch

from talkbench.audio.signal import SAMPLE_RATE, mel_filterbank

N_FFT = 400
HOP = 160


@functools.lru_cache(maxsize=8)
def _filters(n_mels: int) -> torch.Tensor:
    """(n_fft // 2 + 1, n_mels) HTK filters, unit peak, no area normalisation (torchaudio's defaults)."""
    return mel_filterbank(n_mels, N_FFT, SAMPLE_RATE).t().contiguous()


def normalize_utterance(wave: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance per row (wav2vec2 processor: (x - mean) / sqrt(var + 1e-7))."""
    mean = wave.mean(-1, keepdim=True)
    var = wave.var(-1, unbiased=False, keepdim=True)
    return (wave - mean) / torch.sqrt(var + 1e-7)


def style_log_mel(wave: torch.Tensor, n_mels: int = 80) -> torch.Tensor:
    """(B, S) waveform at 16 kHz (all valid samples) -> (B, n_mels, 1 + S // 160) log-mel in dB."""
    wave = normalize_utterance(wave)
    if wave.shape[-1] <= N_FFT // 2:  # reflect padding needs more samples than half a window
        wave = torch.nn.functional.pad(wave, (0, N_FFT // 2 + 1 - wave.shape[-1]))
    window = torch.hann_window(N_FFT, periodic=True, device=wave.device, dtype=wave.dtype)
    spec = torch.stft(wave, N_FFT, HOP, N_FFT, window, center=True, pad_mode="reflect", return_complex=True)
    power = spec.real**2 + spec.imag**2  # (B, n_fft // 2 + 1, F)
    mel = torch.einsum("bkf,km->bmf", power, _filters(n_mels).to(wave.device, wave.dtype))
    return 10.0 * torch.log10(torch.clamp(mel, min=1e-10))


def style_log_mel_padded(
    wave: torch.Tensor, lengths: torch.Tensor, n_mels: int = 80
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, S) padded waveform, (B,) valid samples -> ((B, n_mels, F) log-mel, (B,) valid frames).
    Frame f < 1 + L // 160 of clip b equals ``style_log_mel`` of the clip alone; later frames are junk."""
    lengths = lengths.to(wave.device)
    half = N_FFT // 2
    # the too-short fallback above: zero samples appended up to half a window + 1
    eff = lengths.clamp(min=half + 1)
    width = max(int(eff.max()), 1)
    if wave.shape[-1] < width:
        wave = torch.nn.functional.pad(wave, (0, width - wave.shape[-1]))
    wave = wave[:, :width]
    valid = (torch.arange(width, device=wave.device)[None] < lengths[:, None]).to(wave.dtype)
    n = lengths[:, None].to(wave.dtype)
    mean = (wave * valid).sum(-1, keepdim=True) / n
    var = (((wave - mean) * valid) ** 2).sum(-1, keepdim=True) / n
    wave = (wave - mean) / torch.sqrt(var + 1e-7) * valid
    # centring: reflect each clip about its own first and last samples
    j = torch.arange(-half, width + half, device=wave.device)[None]
    last = (eff - 1)[:, None]
    idx = j.abs()
    idx = torch.where(idx > last, 2 * last - idx, idx)
    wave = torch.gather(wave, 1, torch.minimum(idx.clamp(min=0), last))
    window = torch.hann_window(N_FFT, periodic=True, device=wave.device, dtype=wave.dtype)
    spec = torch.stft(wave, N_FFT, HOP, N_FFT, window, center=False, return_complex=True)
    power = spec.real**2 + spec.imag**2
    mel = torch.einsum("bkf,km->bmf", power, _filters(n_mels).to(wave.device, wave.dtype))
    return 10.0 * torch.log10(torch.clamp(mel, min=1e-10)), 1 + eff // HOP


__all__ = ["normalize_utterance", "style_log_mel", "style_log_mel_padded"]
