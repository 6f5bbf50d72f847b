"""FaceFormer (CVPR 2022) as released (specs/faceformer.md §2-§7), batched and with a KV cache.

Module names follow the released code: ``audio_feature_map``, ``vertice_map`` (on offsets),
``obj_vector`` (speaker one-hot, no bias), ``ppe``, ``decoder`` (one post-LN layer, 4 heads, FFN 2d),
``vertice_map_r`` (zero-initialised, so the first prediction is the template).

On a blendshape dataset (talkbench's extension, as UniTalker's heads per annotation type) the motion
that ``vertice_map`` reads and ``vertice_map_r`` predicts is the K blendshape weights instead of the
V * 3 vertex offsets, the neutral being all-zero weights; nothing else changes.

On a mixture of datasets (``MixtureSpec``, datasets/mixture.py) ``vertice_map`` and ``vertice_map_r``
are ModuleDicts keyed by member (each member's vertex count or channels), everything else is shared;
the speaker one-hot spans every member's training speakers (``member:subject``). A batch runs
through its member's maps (``Batch.dataset``); ``member(name)`` makes predictions one member's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from talkbench.audio.build import build_audio_encoder
from talkbench.datasets.batch import Batch
from talkbench.datasets.spec import CLOCK, DatasetSpec, MixtureSpec
from talkbench.datasets.targets import BLENDSHAPES, VERTICES
from talkbench.errors import ConfigError, DataError, TalkbenchError
from talkbench.methods.base import Method, Stage, output_target
from talkbench.methods.decoder import InferenceDecoder, TransformerDecoder, additive_mask
from talkbench.methods.faceformer.config import FaceFormerConfig
from talkbench.methods.layers import (
    PeriodicPositionalEncoding,
    alignment_mask,
    biased_causal_mask,
    lengths_to_mask,
)
from talkbench.methods.mixture import MemberHeads


class FaceFormer(MemberHeads, Method):
    name = "faceformer"
    Config = FaceFormerConfig
    uses_speaker_id = True
    presets = ("paper", "synthtalk", "tiny")
    # on a blendshape dataset the motion maps and the head are K wide: weights replace the offsets
    targets = (VERTICES, BLENDSHAPES)
    mixture = "heads"  # one vertice_map / vertice_map_r per member of a mixture

    def __init__(self, config: FaceFormerConfig, spec: DatasetSpec | MixtureSpec):
        super().__init__(config, spec)
        members = spec.members if isinstance(spec, MixtureSpec) else {spec.name: spec}
        clock = next(iter(members.values()))  # a mixture's members share it (checked here)
        if isinstance(spec, MixtureSpec):
            try:
                for attr in CLOCK:
                    spec.clock(attr)
            except ValueError as exc:
                raise ConfigError(f"FaceFormer's one audio encoder: {exc}") from None
        if not spec.train_subjects:
            raise ConfigError(
                f"dataset '{spec.name}' lists no training speakers; FaceFormer needs their one-hots"
            )
        self.n_speakers = len(spec.train_subjects)  # the one-hot's width
        self.period = int(config.period or clock.period)
        self.alignment = clock.audio_alignment
        d = config.feature_dim
        self.audio = build_audio_encoder(config.audio, clock)
        self.audio_feature_map = nn.Linear(self.audio.out_dim, d)
        # the motion fed back and predicted: vertex offsets (V * 3), or the K blendshape weights
        dims = {m: self._motion_dim(s) for m, s in members.items()}
        maps_in = {m: nn.Linear(k, d) for m, k in dims.items()}
        mixed = isinstance(spec, MixtureSpec)
        # registered in the released order (initialisation draws, parameter and state_dict order)
        self.vertice_map = nn.ModuleDict(maps_in) if mixed else maps_in[spec.name]
        self.obj_vector = nn.Linear(self.n_speakers, d, bias=False)
        self.ppe = PeriodicPositionalEncoding(d, self.period, config.dropout)
        self.decoder = TransformerDecoder(
            d, config.n_heads, config.ffn_mult * d, config.n_layers, config.dropout
        )
        maps_out = {m: nn.Linear(d, k) for m, k in dims.items()}
        for head in maps_out.values():
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        self.vertice_map_r = nn.ModuleDict(maps_out) if mixed else maps_out[spec.name]
        if mixed:
            self.mixture_spec = spec
            self._use(None)
        else:
            self._active = None
            self.n_vertices = int(spec.n_vertices)
            self.motion_dim = dims[spec.name]
            self.speaker_offset, self.n_conditions = 0, self.n_speakers

    def _motion_dim(self, spec: DatasetSpec) -> int:
        target = output_target(type(self), spec)
        return len(spec.channels) if target == BLENDSHAPES else 3 * int(spec.n_vertices)

    # -- mixtures -------------------------------------------------------------------------------
    def _use(self, member: str | None) -> None:
        """Point spec, target, sizes and speaker range at a mixture member (None: the mixture)."""
        mix: MixtureSpec = self.mixture_spec
        self._active = member
        if member is None:
            self.spec, self.target, self.n_vertices, self.motion_dim = mix, None, 0, 0
            self.speaker_offset, self.n_conditions = 0, self.n_speakers
            return
        if member not in mix.members:
            raise TalkbenchError(f"'{member}' is not a member of the mixture {mix.name}")
        self.spec = mix.members[member]
        self.target = output_target(type(self), self.spec)
        self.n_vertices, self.motion_dim = int(self.spec.n_vertices), self._motion_dim(self.spec)
        self.speaker_offset, self.n_conditions = mix.speaker_offset(member), len(self.spec.train_subjects)

    @property
    def motion_in(self) -> nn.Linear:
        """``vertice_map`` (motion -> d) of this dataset, or of the active mixture member."""
        return self._head(self.vertice_map)

    @property
    def motion_out(self) -> nn.Linear:
        """``vertice_map_r`` (d -> motion) of this dataset, or of the active mixture member."""
        return self._head(self.vertice_map_r)

    def _head(self, maps: nn.Module) -> nn.Linear:
        if not isinstance(maps, nn.ModuleDict):
            return maps
        if self._active is None:
            raise TalkbenchError(
                f"FaceFormer on the mixture {self.mixture_spec.name}: which member? "
                "(a batch names it in Batch.dataset; predictions run inside method.member(name))"
            )
        return maps[self._active]

    # -- building blocks ------------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        c = self.config
        audio = tuple(f"audio.{p}" for p in self.audio.trainable_prefixes())
        trainable = ("audio_feature_map", "vertice_map", "obj_vector", "decoder", "vertice_map_r") + audio
        return [
            Stage(
                name="train",
                epochs=c.epochs,
                lr=c.lr,
                trainable=trainable,
                sampler=c.sampler,
                batch_size=c.batch_size,
                optimizer="adam",
                schedule=c.schedule,
                grad_clip=c.grad_clip,
                selection=c.selection,
            )
        ]

    def encode(
        self, audio: torch.Tensor, audio_lengths: torch.Tensor, n_frames: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Audio -> decoder memory (B, S, d) and the number of motion frames per element (B,).

        BIWI ('pairs'): when the audio has fewer than 2T frames, the motion is cropped to
        floor(S'/2) frames (spec §5.3)."""
        feats, feat_len = self.audio(audio, audio_lengths, n_frames)
        motion = (
            feat_len if self.alignment == "interpolate" else torch.div(feat_len, 2, rounding_mode="floor")
        )
        if n_frames is not None:
            motion = torch.minimum(motion, n_frames.to(motion.device))
        return self.audio_feature_map(feats), motion

    def style(self, speaker: torch.Tensor) -> torch.Tensor:
        """The speaker's style; ``speaker`` indexes the active member's training speakers on a mixture."""
        one_hot = F.one_hot(speaker + self.speaker_offset, self.n_speakers)
        return self.obj_vector(one_hot.to(self.obj_vector.weight.dtype))

    def masks(self, n_frames: int, n_audio: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Biased causal self-mask (1, H, T, T) and alignment memory mask (T, S), shared by the batch.

        Padding needs no extra mask: causality keeps padded frames out of every valid frame."""
        self_mask = biased_causal_mask(self.config.n_heads, n_frames, self.period, device=device)[None]
        return self_mask, alignment_mask(n_frames, n_audio, self.alignment, device=device)

    def first_token(self, style: torch.Tensor, teacher_forcing: bool) -> torch.Tensor:
        """(B, 1, d): vertice_map(0) + style, except the released rollout which starts from style."""
        if teacher_forcing or self.config.first_token == "consistent":
            return (self.motion_in.bias + style)[:, None]
        return style[:, None]

    def teacher_forcing(
        self, memory: torch.Tensor, offsets: torch.Tensor, style: torch.Tensor
    ) -> torch.Tensor:
        """Spec §5.1: input = ground-truth offsets shifted right (zero first frame).

        Returns offsets (B, T, V*3)."""
        t = offsets.shape[1]
        prev = self.motion_in(offsets[:, : t - 1]) + style[:, None]
        x = torch.cat([self.first_token(style, True), prev], dim=1)
        self_mask, mem_mask = self.masks(t, memory.shape[1], memory.device)
        h = self.decoder(self.ppe(x), memory, self_mask, mem_mask)
        return self.motion_out(h)

    def rollout(self, memory: torch.Tensor, style: torch.Tensor, n_frames: int) -> torch.Tensor:
        """Spec §5.2 as released: re-run the decoder over the whole prefix at every step, with
        gradients through every step. Returns the last pass over all positions, offsets (B, T, V*3).

        Only the last position is projected at intermediate steps (the released code projects all
        and keeps the last: the same values)."""
        self_mask, mem_mask = self.masks(n_frames, memory.shape[1], memory.device)
        seq = self.first_token(style, False)
        for i in range(n_frames):
            h = self.decoder(self.ppe(seq), memory, self_mask[:, :, : i + 1, : i + 1], mem_mask[: i + 1])
            if i == n_frames - 1:
                return self.motion_out(h)
            last = self.motion_out(h[:, -1:])
            seq = torch.cat([seq, self.motion_in(last) + style[:, None]], dim=1)
        raise DataError("rollout needs at least one motion frame")

    def rollout_cached(
        self, memory: torch.Tensor, style: torch.Tensor, n_frames: int, fused_feedback: bool = False
    ) -> torch.Tensor:
        """The same rollout computing only the newest position per step (spec §7.1): O(T) decoder
        passes. Differentiable; with dropout off its outputs and gradients equal ``rollout``'s.

        ``fused_feedback`` (inference, eval mode): ``_rollout_inference``; equal to float tolerance
        (tested to 1e-5).
        """
        if n_frames < 1:
            raise DataError("rollout needs at least one motion frame")
        if fused_feedback:
            return self._rollout_inference(memory, style, n_frames)
        self_mask, mem_mask = self.masks(n_frames, memory.shape[1], memory.device)
        # float masks once, so that every step only slices rows
        mem_mask = additive_mask(mem_mask, 1, self.config.n_heads, memory.dtype)[0, 0]
        cache = self.decoder.init_cache(memory)
        token = self.first_token(style, False)
        outs = []
        for i in range(n_frames):
            h = self.decoder.step(
                self.ppe(token, offset=i), cache, self_mask[:, :, i : i + 1, : i + 1], mem_mask[i : i + 1]
            )
            out = self.motion_out(h)
            outs.append(out)
            if i < n_frames - 1:
                token = self.motion_in(out) + style[:, None]
        return torch.cat(outs, dim=1)

    def _rollout_inference(self, memory: torch.Tensor, style: torch.Tensor, n_frames: int) -> torch.Tensor:
        """Inference rollout whose per-step cost is a few small ops (its cost is dispatch, not
        arithmetic): the fed-back token vertice_map(vertice_map_r(h)) is one d x d map of h (the two
        maps multiplied once) plus a precomputed row (that map's bias + style + the next position's
        PPE); the decoder steps through ``InferenceDecoder`` (preallocated cache, precomputed
        cross-attention rows); the V*3 outputs are one product at the end."""
        if self.training:
            raise TalkbenchError("FaceFormer's fused inference rollout needs eval mode (dropout off)")
        with torch.inference_mode():
            self_mask, mem_mask = self.masks(n_frames, memory.shape[1], memory.device)
            stepper = InferenceDecoder(self.decoder, memory, mem_mask, n_frames)
            w_out, w_in = self.motion_out, self.motion_in
            weight = w_in.weight @ w_out.weight
            bias = w_in.weight @ w_out.bias + w_in.bias
            pe = self.ppe.encoding(n_frames).to(memory.dtype)
            rows = (bias + style)[:, None] + pe  # (B, T, d): added to the fed-back token at step i
            token = self.first_token(style, False)[:, 0] + pe[0]
            outs = memory.new_empty(memory.shape[0], n_frames, memory.shape[2])
            for i in range(n_frames):
                h = stepper.step(token, i, self_mask[:, :, i : i + 1, : i + 1])
                outs[:, i] = h
                if i < n_frames - 1:
                    token = torch.addmm(rows[:, i + 1], h, weight.T)
            return self.motion_out(outs)

    # -- training -------------------------------------------------------------------------------
    def _check_vertices(self, n: int, what: str) -> None:
        self._head(self.vertice_map)  # on a mixture: an error unless a member is active
        if n != self.n_vertices:
            raise DataError(
                f"{what} has {n} vertices, but this FaceFormer was built for {self.n_vertices} "
                f"(dataset '{self.spec.name}'); use a preset and dataset that match"
            )

    def clip_losses(
        self, batch: Batch, speaker: torch.Tensor | None = None, mode: str | None = None
    ) -> torch.Tensor:
        """Per-clip MSE (B,), each averaged over its valid frames and V*3 coordinates."""
        self._check_vertices(
            batch.vertices.shape[2], f"batch clip '{batch.names[0] if batch.names else '?'}'"
        )
        memory, n_motion = self.encode(batch.audio, batch.audio_lengths, batch.lengths)
        return self._losses(memory, n_motion, batch, batch.speaker if speaker is None else speaker, mode)

    def _losses(self, memory, n_motion, batch: Batch, speaker, mode) -> torch.Tensor:
        mode = mode or self.config.train_mode
        t = int(n_motion.max())
        if self.target == BLENDSHAPES:
            offsets = batch.weights[:, :t]  # the neutral is all-zero weights
        else:
            offsets = (batch.vertices[:, :t] - batch.template[:, None]).flatten(2)
        style = self.style(speaker)
        if mode == "teacher_forcing":
            pred = self.teacher_forcing(memory, offsets, style)
        elif self.config.ar_cache:
            pred = self.rollout_cached(memory, style, t)
        else:
            pred = self.rollout(memory, style, t)
        # MSE on offsets == MSE on absolute vertices (the template cancels)
        err = (pred - offsets).pow(2).mean(-1)
        mask = lengths_to_mask(n_motion, t).to(err.dtype)
        return (err * mask).sum(1) / mask.sum(1)

    def loss(self, stage: str, batch: Batch) -> dict[str, torch.Tensor]:
        with self.member(batch.dataset):  # a mixture: the batch's own head
            if (batch.speaker < 0).any():
                bad = [s for s, k in zip(batch.subjects, batch.speaker.tolist()) if k < 0]
                raise DataError(
                    f"FaceFormer trains on training speakers only; got {sorted(set(bad))} "
                    f"(training speakers: {', '.join(self.spec.train_subjects)})"
                )
            per_clip = self.clip_losses(batch)
            return {"loss": per_clip.mean()}

    def validation_loss(self, stage: str, batch: Batch) -> dict[str, torch.Tensor]:
        """Teacher-forcing loss as released; unseen speakers averaged over every training condition."""
        with self.member(batch.dataset):  # a mixture: the batch's own head
            self._check_vertices(
                batch.vertices.shape[2], f"batch clip '{batch.names[0] if batch.names else '?'}'"
            )
            memory, n_motion = self.encode(batch.audio, batch.audio_lengths, batch.lengths)
            unseen = batch.speaker < 0
            if not unseen.any():
                per_clip = self._losses(memory, n_motion, batch, batch.speaker, "teacher_forcing")
            else:
                per_clip = torch.stack(
                    [
                        self._losses(
                            memory, n_motion, batch, torch.where(unseen, c, batch.speaker), "teacher_forcing"
                        )
                        for c in range(self.n_conditions)
                    ]
                ).mean(0)
            return {"loss": per_clip.mean()}

    # -- inference ------------------------------------------------------------------------------
    def condition_index(self, condition: int | str | None) -> int:
        if isinstance(condition, str):
            index = self.spec.speaker_index(condition)
        else:
            index = -1 if condition is None else int(condition)
        if not 0 <= index < self.n_conditions:
            raise TalkbenchError(
                "FaceFormer predicts in the style of a training speaker: condition must be "
                f"0..{self.n_conditions - 1} "
                f"or one of {', '.join(self.spec.train_subjects)}; got {condition!r}"
            )
        return index

    @torch.no_grad()
    def predict(
        self, audio: torch.Tensor, template: torch.Tensor, condition: int | str | None = None
    ) -> torch.Tensor:
        """Autoregressive inference with the KV cache, any length: (S,) audio, (V, 3) template ->
        (T, V, 3) with T = int(S'/50*fps) ('interpolate') or floor(S'_even/2) ('pairs'), or the
        dataset's own count (``DatasetSpec.frames_for_samples``, SynthTalk)."""
        return self.predict_conditions(audio, template, [condition])[0]

    @torch.no_grad()
    def predict_conditions(
        self, audio: torch.Tensor, template: torch.Tensor, conditions: Sequence[int | str | None]
    ) -> torch.Tensor:
        """One clip under several speaker conditions: (C, T, V, 3). The audio is encoded once and
        the one-hot styles run as one batch of the cached rollout; nothing is padded, so each row
        equals its one-condition prediction (tested to 1e-5)."""
        if len(conditions) == 0:
            raise ValueError("predict_conditions needs at least one condition")
        indices = [self.condition_index(c) for c in conditions]
        audio = torch.as_tensor(audio, dtype=torch.float32)
        template = torch.as_tensor(template, dtype=torch.float32)
        if audio.dim() != 1:
            raise DataError(f"predict() expects audio (S,) at 16 kHz, got shape {tuple(audio.shape)}")
        if template.dim() != 2 or template.shape[1] != 3:
            raise DataError(f"predict() expects a template (V, 3), got shape {tuple(template.shape)}")
        self._check_vertices(template.shape[0], "the template")
        was_training = self.training
        self.eval()
        try:
            device = self.device
            memory, n_motion = self.encode(
                audio[None].to(device), torch.tensor([audio.shape[0]], device=device), None
            )
            style = self.style(torch.tensor(indices, device=device))
            memory = memory.expand(len(indices), -1, -1)
            offsets = self.rollout_cached(memory, style, int(n_motion[0]), fused_feedback=True)
        finally:
            self.train(was_training)
        if self.target == BLENDSHAPES:
            return offsets  # (C, T, K) weights
        flat = template.to(device).flatten()
        return (offsets + flat).view(len(indices), -1, self.n_vertices, 3)
