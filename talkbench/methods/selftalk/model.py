"""SelfTalk (ACM MM 2023) as released (specs/selftalk.md), batched with padding masks.

Module names follow the release, so its whole-module state dict maps onto this one by prefix
(official.py): ``audio_encoder`` (trainable, CNN frozen), ``text_encoder`` (the frozen recognizer),
``audio_feature_map``, ``transformer_decoder`` (one post-LN layer used with the same sequence as
target and memory: no causal mask, no positional encoding), ``vertice_map_r`` (zero-initialised),
``lip_map`` (on the predicted lip offsets), ``transformer`` (the interpreter, source = target = the
lip features at the recognizer's 50 Hz) and ``lm_head``. No speaker condition.

Padded batches give each clip what it gives alone: key-padding masks in every attention, the lip
features interpolated per clip, losses over valid frames only (the release trains with batch 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from talkbench.audio.build import build_audio_encoder
from talkbench.audio.signal import align_features
from talkbench.datasets.batch import Batch
from talkbench.datasets.spec import DatasetSpec
from talkbench.errors import ConfigError
from talkbench.methods.base import Method, Stage
from talkbench.methods.selftalk.config import SelfTalkConfig
from talkbench.methods.selftalk.recognizer import BLANK, Recognizer, greedy_targets
from talkbench.sequence import lengths_to_mask


class SelfTalk(Method):
    name = "selftalk"
    Config = SelfTalkConfig
    uses_speaker_id = False
    presets = ("paper", "synthtalk", "tiny")

    def __init__(self, config: SelfTalkConfig, spec: DatasetSpec):
        super().__init__(config, spec)
        # the release's lip list (FLAME_masks.pkl["lips"], 254 entries; BIWI_lip.pkl, 4,996)
        lips = spec.lip_loss_indices if spec.lip_loss_indices is not None else spec.regions.get("lips")
        if lips is None or len(lips) == 0:
            raise ConfigError(f"dataset '{spec.name}' has no 'lips' region, needed by SelfTalk's lip reader")
        c = config
        self.alignment = spec.audio_alignment
        v3 = 3 * int(spec.n_vertices)
        self.audio_encoder = build_audio_encoder(c.audio, spec)
        self.text_encoder = Recognizer(c.recognizer_config(), spec.name)
        width = self.audio_encoder.out_dim * (2 if self.alignment == "pairs" else 1)  # BIWI: frame pairs
        self.audio_feature_map = nn.Linear(width, c.feature_dim)
        layer = nn.TransformerDecoderLayer(c.feature_dim, c.n_heads, c.ffn_mult * c.feature_dim, c.dropout,
                                           batch_first=True)
        self.transformer_decoder = nn.TransformerDecoder(layer, 1)
        self.vertice_map_r = nn.Linear(c.feature_dim, v3)
        nn.init.zeros_(self.vertice_map_r.weight)
        nn.init.zeros_(self.vertice_map_r.bias)
        self.register_buffer("lip_index", torch.as_tensor(lips, dtype=torch.long),
                             persistent=False)
        d_lip = self.text_encoder.out_dim  # compared with the recognizer's features
        self.lip_map = nn.Linear(3 * len(self.lip_index), d_lip)
        self.transformer = nn.Transformer(
            d_lip, c.interpreter_heads, c.interpreter_layers, c.interpreter_layers, c.interpreter_ffn,
            c.interpreter_dropout, batch_first=True,
        )
        self.lm_head = nn.Linear(d_lip, self.text_encoder.vocabulary)

    def stages(self) -> list[Stage]:
        c = self.config
        audio = tuple(f"audio_encoder.{p}" for p in self.audio_encoder.trainable_prefixes())
        trainable = ("audio_feature_map", "transformer_decoder", "vertice_map_r", "lip_map", "transformer.",
                     "lm_head") + audio
        return [Stage(name="train", epochs=c.epochs, lr=c.lr, trainable=trainable, sampler=c.sampler,
                      batch_size=c.batch_size, optimizer="adam", selection=c.selection)]

    # -- the vertex path ------------------------------------------------------------------------
    def offsets(
        self, audio: torch.Tensor, audio_lengths: torch.Tensor, n_frames: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Audio -> vertex offsets (B, T, V*3) and motion frames per clip (B,). BIWI ('pairs'): two
        50 Hz frames concatenated per motion frame, the motion cropped where the audio is shorter."""
        feats, feat_len = self.audio_encoder(audio, audio_lengths, n_frames)
        if self.alignment == "pairs":
            b, s, d = feats.shape
            feats = feats[:, : s - s % 2].reshape(b, s // 2, 2 * d)
            feat_len = torch.div(feat_len, 2, rounding_mode="floor")
        frames = feat_len if n_frames is None else torch.minimum(feat_len, n_frames.to(feat_len.device))
        x = self.audio_feature_map(feats[:, : int(frames.max())])
        pad = ~lengths_to_mask(frames, x.shape[1])
        out = self.transformer_decoder(x, x, tgt_key_padding_mask=pad, memory_key_padding_mask=pad)
        return self.vertice_map_r(out) * (~pad)[..., None].to(out.dtype), frames

    # -- the lip reader -------------------------------------------------------------------------
    def read_lips(self, offsets: torch.Tensor, frames: torch.Tensor, rate_len: torch.Tensor) -> torch.Tensor:
        """Predicted lip offsets (B, T, n_lip*3) -> lip_map -> interpolated per clip to ``rate_len``
        50 Hz frames -> interpreter (source = target) -> lip features (B, T50, D)."""
        b, t, _ = offsets.shape
        lips = offsets.reshape(b, t, -1, 3)[:, :, self.lip_index].reshape(b, t, -1)
        feats, _ = align_features(self.lip_map(lips), frames, rate_len, "interpolate", 50.0)
        pad = ~lengths_to_mask(rate_len, feats.shape[1])
        return self.transformer(feats, feats, src_key_padding_mask=pad, tgt_key_padding_mask=pad,
                                memory_key_padding_mask=pad)

    def forward_train(self, batch: Batch) -> dict[str, torch.Tensor]:
        offsets, frames = self.offsets(batch.audio, batch.audio_lengths, batch.lengths)
        hidden, text_logits, rate_len = self.text_encoder(batch.audio, batch.audio_lengths)
        if self.alignment == "pairs":  # the recognizer's frames cut to two per motion frame
            rate_len = torch.minimum(rate_len, 2 * frames)
        t50 = int(rate_len.max())
        hidden, text_logits = hidden[:, :t50], text_logits[:, :t50]
        lip_features = self.read_lips(offsets, frames, rate_len)
        return {"offsets": offsets, "frames": frames, "hidden": hidden, "text_logits": text_logits,
                "rate_len": rate_len, "lip_features": lip_features, "logits": self.lm_head(lip_features)}

    # -- losses ---------------------------------------------------------------------------------
    def loss(self, stage: str, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.config
        out = self.forward_train(batch)
        t = out["offsets"].shape[1]
        mask = lengths_to_mask(out["frames"], t)
        pred = out["offsets"] + batch.template.flatten(1)[:, None]
        gt = batch.vertices[:, :t].flatten(2)
        l_vert = masked_mse(pred, gt, mask)
        l_vel = masked_mse(pred[:, 1:] - pred[:, :-1], gt[:, 1:] - gt[:, :-1], mask[:, 1:] & mask[:, :-1])
        rate_mask = lengths_to_mask(out["rate_len"], out["hidden"].shape[1])
        l_feat = masked_mse(out["lip_features"], out["hidden"], rate_mask)
        targets, target_len = greedy_targets(out["text_logits"], out["rate_len"], self._delimiter())
        l_ctc = ctc_loss(out["logits"], out["rate_len"], targets, target_len)
        total = c.w_vertices * l_vert + c.w_velocity * l_vel + c.w_features * l_feat + c.w_ctc * l_ctc
        return {"loss": total, "vertices": l_vert, "velocity": l_vel, "lip_features": l_feat, "ctc": l_ctc}

    def validation_loss(self, stage: str, batch: Batch) -> dict[str, torch.Tensor]:
        """The release validates on the vertex MSE alone."""
        offsets, frames = self.offsets(batch.audio, batch.audio_lengths, batch.lengths)
        t = offsets.shape[1]
        pred = offsets + batch.template.flatten(1)[:, None]
        l_vert = masked_mse(pred, batch.vertices[:, :t].flatten(2), lengths_to_mask(frames, t))
        return {"loss": l_vert, "vertices": l_vert}

    def _delimiter(self) -> int | None:
        return self.config.ctc_delimiter if self.config.recognizer_config().kind != "synthtalk" else None

    # -- inference ------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, audio, template, condition=None):
        lengths = torch.tensor([audio.shape[-1]], device=audio.device)
        offsets, frames = self.offsets(audio[None], lengths, None)
        n = int(frames[0])
        return (offsets[0, :n] + template.flatten()[None]).reshape(n, -1, 3)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """nn.MSELoss over the valid frames (B, T) of (B, T, C) tensors: the release's mean for batch 1."""
    m = mask[..., None].to(pred.dtype)
    return (((pred - target) ** 2) * m).sum() / (m.sum() * pred.shape[-1]).clamp(min=1)


def ctc_loss(logits, lengths, targets, target_lengths) -> torch.Tensor:
    """The release's CTC term: log-softmax in float32, blank 0, mean over the batch of the loss divided
    by each target's length, infinite losses (a target longer than the input) zeroed."""
    log_probs = F.log_softmax(logits, dim=-1, dtype=torch.float32).transpose(0, 1)
    return F.ctc_loss(log_probs, targets, lengths, target_lengths, blank=BLANK, reduction="mean",
                      zero_infinity=True)
