"""The log-mel encoder: fast on CPU, no checkpoint (the tiny presets; the base of the SynthTalk encoder)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from talkbench.audio.base import AudioEncoder, MotionClock
from talkbench.audio.config import AudioEncoderConfig
from talkbench.audio.signal import align_features, log_mel, normalize_audio
from talkbench.sequence import lengths_to_mask, sinusoid_table


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


class MelEncoder(AudioEncoder):
    """Log-mel (100 Hz) -> conv (k3) -> conv (k3, stride 2) -> 50 Hz -> align -> LayerNorm + Linear ->
    sinusoidal positions -> pre-LN transformer encoder -> LayerNorm. Fast on CPU, no checkpoint."""

    def __init__(self, cfg: AudioEncoderConfig, spec: MotionClock):
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
