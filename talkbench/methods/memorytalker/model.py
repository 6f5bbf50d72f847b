"""MemoryTalker (ICCV 2025) as a talkbench Method: memorizing, then animating by audio-guided stylization.

Prediction path: audio -> E_aud -> text logits z (n-way) -> f_txt = txt_proj(z); key addressing
softmax(kappa z) reads the motion memory; query = PPE(fusion([f_txt ; f_mkey])); one non-autoregressive
decoder pass over the whole sequence (no causal mask) with f_txt as cross-attention memory under the
alignment mask; zero-initialised output head + template. Stage 1 adds a teacher-forced path
([f_txt ; E_m(v - template)]) and the memory losses; stage 2 stylizes the memory per sample with
w_s = sigmoid(f_s) scale(f_s) from a speaking-style encoder on log-mel of the same audio.

Choices beyond the release (specs/memorytalker.md §10), all identical to it at batch size 1:
- padded batches: every loss is masked (padded frames never count); L_align keeps the release's
  ``batchmean`` (sum over valid frames and slots divided by B), i.e. a per-clip sum over frames
  averaged over the batch; style weights are per sample (M~_b = diag(w_s,b) M_m), never averaged;
- the style encoder runs on a padded batch (anchor, positive and negative clips together) with
  per-clip edge padding and masked pooling, so each clip gets exactly what it gets alone;
- stage 2 keeps frozen modules in train mode as released (``frozen_train_mode: true``); false puts
  every module but the style branch in eval mode during the animating stage;
- no 600-frame cap; ``stylized`` (a saved buffer) switches inference to the stylized memory once the
  animating stage has begun, so a stage-1 checkpoint predicts with the plain memory.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from talkbench.audio.build import build_audio_encoder
from talkbench.datasets.batch import Batch
from talkbench.datasets.clip import Clip
from talkbench.datasets.spec import DatasetSpec
from talkbench.errors import ConfigError, DataError
from talkbench.methods.base import Diagnostic, Method, Stage
from talkbench.methods.layers import PeriodicPositionalEncoding, alignment_mask
from talkbench.methods.memorytalker.config import MemoryTalkerConfig
from talkbench.methods.memorytalker.frontend import style_log_mel_padded
from talkbench.methods.memorytalker.losses import masked_mse, reconstruction_losses
from talkbench.methods.memorytalker.memory import FacialMotionMemory
from talkbench.methods.memorytalker.retrieval import style_retrieval
from talkbench.methods.memorytalker.style import SpeakingStyleEncoder, length_groups

MEMORIZING = "memorizing"
ANIMATING = "animating"


def resample_lengths(x: torch.Tensor, in_len: torch.Tensor, out_len: torch.Tensor, size: int) -> torch.Tensor:
    """Per-element linear interpolation along time (align_corners=True): x (B, S, D), element b's
    first in_len[b] frames resampled to out_len[b] frames, zero-padded to ``size``. Batched exactly."""
    t = torch.arange(size, device=x.device, dtype=torch.float32)[None]
    scale = (in_len - 1).clamp(min=0).float() / (out_len - 1).clamp(min=1).float()
    pos = torch.minimum(t * scale[:, None], (in_len - 1).clamp(min=0).float()[:, None])
    lo = pos.floor().long()
    hi = torch.minimum(lo + 1, (in_len - 1).clamp(min=0)[:, None])
    frac = (pos - lo.float())[..., None].to(x.dtype)
    gather = lambda idx: torch.gather(x, 1, idx[..., None].expand(-1, -1, x.shape[-1]))  # noqa: E731
    out = gather(lo) * (1 - frac) + gather(hi) * frac
    return out * (t[0][None, :] < out_len[:, None])[..., None].to(x.dtype)


@dataclass
class Encoded:
    logits: torch.Tensor  # z at the motion rate (B, T, n)
    text: torch.Tensor  # f_txt at the motion rate (B, T, c): fusion input
    memory: torch.Tensor  # f_txt at the audio-feature rate (B, Ta, c): decoder cross-attention memory
    lengths: torch.Tensor  # (B,) motion frames


class MemoryTalker(Method):
    name: ClassVar[str] = "memorytalker"
    Config: ClassVar[type] = MemoryTalkerConfig
    uses_speaker_id: ClassVar[bool] = False
    presets: ClassVar[tuple[str, ...]] = ("paper", "synthtalk", "tiny")

    def __init__(self, config: MemoryTalkerConfig, spec: DatasetSpec, audio_encoder: nn.Module | None = None):
        super().__init__(config, spec)
        config.validate()
        cfg = config
        if spec.audio_alignment not in ("interpolate", "pairs"):
            raise ConfigError(f"dataset '{spec.name}': unknown audio_alignment '{spec.audio_alignment}'")
        if cfg.stage2 and cfg.memory and "lips" not in spec.regions:
            raise ConfigError(f"dataset '{spec.name}' has no 'lips' region, needed by the stage-2 lip loss")
        c, n, out = cfg.feature_dim, cfg.memory_slots, spec.n_vertices * 3
        # the speech encoder E_aud (its CNN frozen by the encoder itself when freeze_cnn)
        self.audio_encoder = (
            audio_encoder if audio_encoder is not None else build_audio_encoder(cfg.audio, spec)
        )
        self.final_dropout = nn.Dropout(cfg.final_dropout)
        self.lm_head = nn.Linear(self.audio_encoder.out_dim, n)  # "text logits", trained from random
        # as released: the library's init of a new CTC head, N(0, 0.02) weights and zero bias (spec §2.1)
        nn.init.normal_(self.lm_head.weight, mean=0.0, std=0.02)
        nn.init.zeros_(self.lm_head.bias)
        if cfg.text_head_init == "encoder":  # or the pretrained SynthTalk encoder's phoneme head
            from talkbench.audio.synthtalk import phoneme_head_weights

            weight, bias = phoneme_head_weights(n, cfg.audio.name_or_path, self.audio_encoder.out_dim)
            with torch.no_grad():
                self.lm_head.weight.copy_(weight)
                self.lm_head.bias.copy_(bias)
        self.txt_proj = nn.Linear(n, c)
        if cfg.memory:
            self.memory = FacialMotionMemory(n, c, cfg.kappa)
            self.motion_encoder = nn.Linear(out, c)
            self.motion_dropout = nn.Dropout(cfg.motion_dropout)
        self.fusion_layer = nn.Linear(2 * c if cfg.memory else c, c)
        self.ppe = PeriodicPositionalEncoding(c, spec.period, cfg.dropout)
        layer = nn.TransformerDecoderLayer(c, cfg.n_heads, cfg.ffn_dim, cfg.dropout, batch_first=True)
        self.transformer_decoder = nn.TransformerDecoder(layer, cfg.n_layers)
        self.output_proj = nn.Linear(c, out)
        for lin in (self.txt_proj, self.fusion_layer, *([self.motion_encoder] if cfg.memory else [])):
            nn.init.xavier_uniform_(lin.weight)
        nn.init.zeros_(self.output_proj.weight)  # first prediction == template
        nn.init.zeros_(self.output_proj.bias)
        if self.has_style:
            self.style_encoder = SpeakingStyleEncoder(
                n,
                n_mels=cfg.style_n_mels,
                channels=cfg.style_channels,
                out_dim=cfg.style_out_dim,
                bank_size=cfg.style_bank_size,
                kernel=cfg.style_kernel,
                subsample=tuple(cfg.style_subsample),
                dense_blocks=cfg.style_dense_blocks,
            )
        # True once the animating stage has begun: prediction then stylizes the memory (saved in checkpoints)
        self.register_buffer("stylized", torch.tensor(False))
        # the release's lip loss runs over its index file as written (VOCASET: 254 entries, 4 of them
        # repeated, which weigh twice); the metrics use the unique region
        lips = spec.lip_loss_indices if spec.lip_loss_indices is not None else spec.regions.get("lips", [])
        self.register_buffer("lip_index", torch.as_tensor(lips, dtype=torch.long), persistent=False)
        # parameters trainable at construction = everything but the frozen CNN (stage 1's set)
        self._stage1_prefixes = self._trainable_prefixes(exclude=("style_encoder",))
        self._stage: str | None = None

    @property
    def has_style(self) -> bool:
        return self.config.stage2 and self.config.memory

    def _trainable_prefixes(self, exclude: tuple[str, ...]) -> tuple[str, ...]:
        prefixes: list[str] = []
        for child_name, child in self.named_children():
            if child_name in exclude:
                continue
            params = list(child.named_parameters())
            if params and all(p.requires_grad for _, p in params):
                prefixes.append(child_name + ".")
            else:  # the speech encoder: list the trainable tensors, leaving the frozen CNN out
                prefixes += [f"{child_name}.{n}" for n, p in params if p.requires_grad]
        return tuple(prefixes)

    # -- stages -----------------------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        cfg = self.config
        stages = [
            Stage(
                MEMORIZING,
                cfg.memorizing_epochs,
                cfg.memorizing_lr,
                trainable=self._stage1_prefixes,
                sampler="bucketed",
                batch_size=cfg.memorizing_batch_size,
                grad_clip=cfg.grad_clip,
                selection=cfg.selection,
            )
        ]
        if self.has_style:
            stages.append(
                Stage(
                    ANIMATING,
                    cfg.animating_epochs,
                    cfg.animating_lr,
                    trainable=("style_encoder.",),
                    sampler="triplet",
                    batch_size=cfg.animating_batch_size,
                    grad_clip=cfg.grad_clip,
                    selection=cfg.selection,
                )
            )
        return stages

    def prepare(self, train_clips) -> None:
        """``style_weight_init: unit``: rescale to_scale (w_s is linear in it) so that w_s averages 1
        over up to 64 training clips spread over the split; E_s does not train in stage 1, so stage 2
        starts from the memory at the scale and sign the frozen decoder learnt with."""
        if not (self.has_style and self.config.style_weight_init == "unit"):
            return
        step = max(1, len(train_clips) // 64)
        mean = float(self.style_embeddings(itertools.islice(train_clips, 0, None, step))[0]["weights"].mean())
        if abs(mean) < 1e-8:
            raise DataError("memorytalker.style_weight_init 'unit': w_s averages 0 on the training clips")
        with torch.no_grad():
            self.style_encoder.to_scale.weight.div_(mean)

    def begin_stage(self, stage: Stage) -> None:
        self._stage = stage.name
        if stage.name == ANIMATING:
            self.stylized.fill_(True)

    def train(self, mode: bool = True):
        super().train(mode)
        # stage 2 of the release keeps frozen modules in train mode; frozen_train_mode=False puts them in eval
        if mode and self._stage == ANIMATING and not self.config.frozen_train_mode:
            for child_name, child in self.named_children():
                if child_name != "style_encoder":
                    child.eval()
        return self

    # -- building blocks --------------------------------------------------------------------------
    def encode(
        self, audio: torch.Tensor, audio_lengths: torch.Tensor, n_frames: torch.Tensor | None
    ) -> Encoded:
        feats, feat_lengths = self.audio_encoder(audio, audio_lengths, n_frames)
        logits = self.lm_head(self.final_dropout(feats))
        text = self.txt_proj(logits)
        if self.spec.audio_alignment == "pairs":
            # 50 Hz transformer; z and f_txt interpolated to the motion rate, decoder memory stays at 50 Hz
            # as released: T = T_logits // 2, and training motion is cropped to the available pairs
            frames = feat_lengths // 2 if n_frames is None else torch.minimum(n_frames, feat_lengths // 2)
            size = int(frames.max())
            both = resample_lengths(torch.cat([logits, text], -1), feat_lengths, frames, size)
            return Encoded(both[..., : logits.shape[-1]], both[..., logits.shape[-1] :], text, frames)
        return Encoded(logits, text, text, feat_lengths)

    def decode(
        self, fused: torch.Tensor, enc: Encoded, mask: torch.Tensor, template: torch.Tensor
    ) -> torch.Tensor:
        """fused (B, T, 2c | c) -> vertices (B, T, V, 3), one parallel pass."""
        b, t = fused.shape[:2]
        query = self.ppe(self.fusion_layer(fused))
        mem_mask = alignment_mask(t, enc.memory.shape[1], self.spec.audio_alignment, device=fused.device)
        padding = None if bool(mask.all()) else ~mask
        h = self.transformer_decoder(query, enc.memory, memory_mask=mem_mask, tgt_key_padding_mask=padding)
        return self.output_proj(h).view(b, t, -1, 3) + template[:, None]

    def style_features(self, audio: torch.Tensor, audio_lengths: torch.Tensor) -> torch.Tensor:
        """f_s (B, n) from log-mel of each element's own audio, run as padded batches: exact per sample
        (per-clip normalisation and edge padding, masked pooling; see style.py and frontend.py)."""
        return self._style_pass(audio, audio_lengths)[0]

    def _style_pass(
        self, audio: torch.Tensor, audio_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(f_s (B, n), time-mean log-mel (B, n_mels)) of each element's own audio."""
        if self.config.style_input == "none":
            audio = torch.zeros_like(audio)  # the control: no speaker information reaches E_s
        # the branch is compute-bound: clips run in groups of similar length (each at least 85 % of
        # its group's longest), so padding costs at most ~15 % while most of batching's gain remains
        out: list[torch.Tensor | None] = [None] * audio.shape[0]
        means: list[torch.Tensor | None] = [None] * audio.shape[0]
        for group in length_groups(audio_lengths):
            idx = torch.tensor(group, device=audio.device)
            lengths = audio_lengths[idx]
            wave = audio[idx, : int(lengths.max())]
            mel, frames = style_log_mel_padded(wave, lengths, n_mels=self.config.style_n_mels)
            valid = (torch.arange(mel.shape[-1], device=mel.device)[None] < frames[:, None]).to(mel.dtype)
            mean = (mel * valid[:, None]).sum(-1) / frames[:, None].to(mel.dtype)
            for i, f, m in zip(group, self.style_encoder(mel * self.config.style_input_scale, frames), mean):
                out[i], means[i] = f, m
        return torch.stack(out), torch.stack(means)

    def _style_many(self, *parts: tuple[torch.Tensor, torch.Tensor]) -> list[torch.Tensor]:
        """style_features of several padded batches (anchor, positive, negative) in one pass."""
        width = max(a.shape[1] for a, _ in parts)
        audio = torch.cat([F.pad(a, (0, width - a.shape[1])) for a, _ in parts])
        f_s = self.style_features(audio, torch.cat([n.to(audio.device) for _, n in parts]))
        return list(f_s.split([a.shape[0] for a, _ in parts]))

    def _encode_batch(self, batch: Batch) -> tuple[Encoded, torch.Tensor, torch.Tensor]:
        """Encode a training batch: (encoded, target vertices, mask), cropped to the frames the audio
        covers. 'interpolate' covers every frame; 'pairs' may drop a clip's last frame (the CNN's
        last partial window), which the release handles by cropping the motion the same way."""
        enc = self.encode(batch.audio, batch.audio_lengths, batch.lengths)
        short = batch.lengths - enc.lengths
        if bool((short < 0).any()) or bool(
            (short > (1 if self.spec.audio_alignment == "pairs" else 0)).any()
        ):
            raise DataError(
                f"clips {batch.names}: audio features give {enc.lengths.tolist()} frames but the motion has "
                f"{batch.lengths.tolist()}; expected the loader to length-align audio and motion"
            )
        t = enc.text.shape[1]
        mask = batch.mask[:, :t] & (torch.arange(t, device=batch.mask.device)[None] < enc.lengths[:, None])
        return enc, batch.vertices[:, :t], mask

    # -- losses -----------------------------------------------------------------------------------
    def loss(self, stage: str, batch: Batch) -> dict[str, torch.Tensor]:
        if stage == MEMORIZING:
            return self._memorizing_loss(batch)
        if stage == ANIMATING:
            return self._animating_loss(batch)
        raise ConfigError(f"memorytalker has no stage '{stage}' (expected '{MEMORIZING}' or '{ANIMATING}')")

    def memorizing_paths(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Stage-1 forward: prediction ``v_hat`` and, with the memory, teacher-forced ``v_val``, the
        motion feature ``f_m`` and the logits ``z`` (at the motion rate)."""
        enc, target, mask = self._encode_batch(batch)
        text, logits = enc.text, enc.logits
        if not self.config.memory:
            return {"v_hat": self.decode(text, enc, mask, batch.template), "target": target, "mask": mask}
        # prediction path: memory read with a stop-gradient on M_m (gradients reach z through K_txt)
        f_mkey = self.memory.read(self.memory.key_address(logits), detach=True)
        v_hat = self.decode(torch.cat([text, f_mkey], -1), enc, mask, batch.template)
        # teacher-forced path: the only gradient source for E_m
        f_m = self.motion_dropout(self.motion_encoder((target - batch.template[:, None]).flatten(2)))
        v_val = self.decode(torch.cat([text, f_m], -1), enc, mask, batch.template)
        return {"v_hat": v_hat, "v_val": v_val, "f_m": f_m, "logits": logits, "target": target, "mask": mask}

    def _memorizing_loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        cfg = self.config
        out = self.memorizing_paths(batch)
        target, mask = out["target"], out["mask"]
        mse, vel = reconstruction_losses(out["v_hat"], target, mask)
        if not cfg.memory:
            return {"loss": mse + cfg.w_velocity * vel, "mse": mse, "velocity": vel}
        mse_val, vel_val = reconstruction_losses(out["v_val"], target, mask)
        mse, vel = mse + mse_val, vel + vel_val
        l_mem, l_align = self.memory.update_loss(out["f_m"], out["logits"], mask)
        total = mse + cfg.w_velocity * vel + cfg.w_mem * l_mem + cfg.w_align * l_align
        return {"loss": total, "mse": mse, "velocity": vel, "mem": l_mem, "align": l_align}

    def _animating_loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        cfg = self.config
        if not self.has_style:
            raise ConfigError("memorytalker: the animating stage needs memorytalker.memory and .stage2 true")
        enc, target, mask = self._encode_batch(batch)
        text, logits = enc.text, enc.logits
        # training batches of the triplet sampler carry positives and negatives; validation ones do not
        triplet = batch.positive is not None and batch.negative is not None
        parts = [(batch.audio, batch.audio_lengths)]
        if triplet:
            parts += [(batch.positive.audio, batch.positive.audio_lengths)]
            parts += [(batch.negative.audio, batch.negative.audio_lengths)]
        f_s, *others = self._style_many(*parts)
        f_mkey = self.memory.read(self.memory.key_address(logits), style=self.style_encoder.weights(f_s))
        v_hat = self.decode(torch.cat([text, f_mkey], -1), enc, mask, batch.template)
        mse, vel = reconstruction_losses(v_hat, target, mask)
        lip = masked_mse(v_hat[:, :, self.lip_index], target[:, :, self.lip_index], mask)
        out = {"mse": mse, "velocity": vel, "lip": lip}
        total = mse + cfg.w_velocity * vel + cfg.w_lip * lip
        if triplet:
            pos, neg = others
            proj = self.style_encoder.project
            style = F.triplet_margin_loss(proj(f_s), proj(pos), proj(neg), margin=cfg.triplet_margin, p=2)
            out["style"] = style
            total = total + cfg.w_style * style
        out["loss"] = total
        return out

    # -- diagnostics ------------------------------------------------------------------------------
    @torch.no_grad()
    def style_embeddings(
        self, clips: Iterable[Clip], chunk: int = 16
    ) -> tuple[dict[str, np.ndarray], list[str]]:
        """Per clip, the embeddings of the retrieval diagnostic (retrieval.py): ``triplet``
        style_mlp(f_s), ``weights`` w_s and ``log_mel`` (E_s's input averaged over time), each
        (N, D), with the clips' speakers; the style branch on padded chunks of ``chunk`` clips."""
        spaces: dict[str, list[np.ndarray]] = {"triplet": [], "weights": [], "log_mel": []}
        speakers: list[str] = []
        waves: list[torch.Tensor] = []

        def flush() -> None:
            lengths = torch.tensor([len(w) for w in waves], device=self.device)
            audio = nn.utils.rnn.pad_sequence(waves, batch_first=True).to(self.device)
            f_s, mel = self._style_pass(audio, lengths)
            for key, x in (("triplet", self.style_encoder.project(f_s)),
                           ("weights", self.style_encoder.weights(f_s)), ("log_mel", mel)):  # fmt: skip
                spaces[key].append(x.float().cpu().numpy())
            waves.clear()

        for clip in clips:
            waves.append(torch.tensor(clip.audio, dtype=torch.float32))
            speakers.append(clip.subject)
            if len(waves) == chunk:
                flush()
        if waves:
            flush()
        return {k: np.concatenate(v) for k, v in spaces.items()}, speakers

    def diagnostics(self, train_clips, eval_clips) -> list[Diagnostic]:
        """Speaker retrieval by speaking style (retrieval.py): does a test clip's style land nearest
        its own speaker? Only with a style branch (stage 2 on, memory on)."""
        if not self.has_style:
            return []
        was_training = self.training
        self.eval()
        try:
            train, train_speakers = self.style_embeddings(train_clips)
            test, test_speakers = self.style_embeddings(eval_clips)
        finally:
            self.train(was_training)
        content, metrics = style_retrieval(train, train_speakers, test, test_speakers, bool(self.stylized))
        return [Diagnostic("style_retrieval", content, metrics)]

    # -- inference --------------------------------------------------------------------------------
    def animate(
        self,
        audio: torch.Tensor,
        audio_lengths: torch.Tensor,
        template: torch.Tensor,
        n_frames: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference path for a padded batch: audio (B, S), template (B, V, 3) -> (vertices (B, T, V, 3),
        lengths (B,)). Stylizes per sample once the animating stage has begun."""
        enc = self.encode(audio, audio_lengths, n_frames)
        t = int(enc.lengths.max())
        if int(enc.lengths.min()) < 1:
            raise DataError(
                f"memorytalker: audio of {audio_lengths.tolist()} samples is shorter than one motion frame"
            )
        mask = torch.arange(t, device=audio.device)[None] < enc.lengths[:, None]
        text, logits = enc.text[:, :t], enc.logits[:, :t]
        if self.config.memory:
            style = None
            if self.has_style and bool(self.stylized):
                style = self.style_encoder.weights(self.style_features(audio, audio_lengths))
            fused = torch.cat([text, self.memory.read(self.memory.key_address(logits), style=style)], -1)
        else:
            fused = text
        return self.decode(fused, enc, mask, template), enc.lengths

    @torch.no_grad()
    def predict(
        self, audio: torch.Tensor, template: torch.Tensor, condition: int | None = None
    ) -> torch.Tensor:
        """Audio (S,) at 16 kHz and a neutral template (V, 3) -> (T, V, 3); ``condition`` is ignored
        (audio-only personalization). One non-autoregressive pass, any length."""
        if audio.dim() != 1:
            raise DataError(
                f"memorytalker.predict expects mono audio of shape (S,), got {tuple(audio.shape)}"
            )
        if tuple(template.shape) != (self.spec.n_vertices, 3):
            raise DataError(
                f"memorytalker.predict: template has shape {tuple(template.shape)}, expected "
                f"({self.spec.n_vertices}, 3) for dataset '{self.spec.name}'"
            )
        was_training = self.training
        self.eval()
        try:
            device = self.device
            wave = audio.to(device, torch.float32)[None]
            lengths = torch.tensor([wave.shape[1]], device=device)
            verts, _ = self.animate(wave, lengths, template.to(device, torch.float32)[None])
            return verts[0]
        finally:
            self.train(was_training)

    @torch.no_grad()
    def predict_conditions(
        self, audio: torch.Tensor, template: torch.Tensor, conditions: Sequence[int | None]
    ) -> torch.Tensor:
        """(C, T, V, 3): audio-only, so every condition gets the same prediction, computed once."""
        if len(conditions) == 0:
            raise ValueError("predict_conditions needs at least one condition")
        out = self.predict(audio, template)
        return out[None].expand(len(conditions), *out.shape).clone()
