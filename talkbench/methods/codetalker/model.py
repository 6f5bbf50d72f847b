"""CodeTalker (CVPR 2023) as the released code trains and runs it: a VQ-VAE motion prior (stage
'vqvae') and a speech-to-code predictor decoded by the frozen VQ-VAE (stage 'predictor')."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from talkbench.datasets.batch import Batch
from talkbench.datasets.spec import DatasetSpec
from talkbench.errors import ConfigError
from talkbench.methods.base import Method, Stage
from talkbench.methods.codetalker.config import CHOICES, CodeTalkerConfig
from talkbench.methods.codetalker.few_row_linear import reuse
from talkbench.methods.codetalker.incremental import IncrementalDecoder
from talkbench.methods.codetalker.predictor import Predictor, PredictorStepper
from talkbench.methods.codetalker.vqvae import VQVAE, VQShape


def build_audio(cfg: CodeTalkerConfig, spec: DatasetSpec) -> nn.Module:
    from talkbench.audio.build import build_audio_encoder
    from talkbench.audio.config import AudioEncoderConfig

    try:
        audio_cfg = AudioEncoderConfig(**cfg.audio)
    except TypeError as err:
        raise ConfigError(f"codetalker.audio: {err}") from err
    return build_audio_encoder(audio_cfg, spec)


class CodeTalker(Method):
    name: ClassVar[str] = "codetalker"
    Config: ClassVar[type] = CodeTalkerConfig
    uses_speaker_id: ClassVar[bool] = True

    def __init__(
        self, config: CodeTalkerConfig, spec: DatasetSpec, *, audio_encoder: nn.Module | None = None
    ):
        super().__init__(config, spec)
        config.validate()
        in_dim = spec.n_vertices * 3
        self.vqvae = VQVAE(self.vq_shape(config, in_dim))
        self.predictor = Predictor(
            audio_encoder if audio_encoder is not None else build_audio(config, spec),
            in_dim=in_dim,
            d_model=config.d_model,
            n_heads=config.n_heads,
            ffn=config.ffn,
            n_layers=config.n_layers,
            n_styles=len(spec.train_subjects),
            feat_dim=config.face_groups * config.code_dim,
            period=spec.period,
            dropout=config.dropout,
            alignment=spec.audio_alignment,
        )
        self._vq_frozen = False

    @staticmethod
    def vq_shape(c: CodeTalkerConfig, in_dim: int) -> VQShape:
        return VQShape(
            in_dim=in_dim, hidden=c.hidden, n_layers=c.vq_layers, n_heads=c.vq_heads, ffn=c.vq_ffn,
            groups=c.face_groups, code_dim=c.code_dim, n_codes=c.n_codes, kernel=c.kernel,
            io_linears=c.io_linears, reverse_bias=c.reverse_bias, pe_dropout=c.pe_dropout,
            block_dropout=c.block_dropout, beta=c.beta, pe_quirk=c.pe_quirk,
            attn_scale_quirk=c.attn_scale_quirk,
        )

    # -- stages ---------------------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        c = self.config
        return [
            Stage(
                "vqvae", epochs=c.vq_epochs, lr=c.vq_lr, trainable=("vqvae.",), sampler=c.sampler,
                batch_size=c.vq_batch_size, optimizer="adamw", weight_decay=c.vq_weight_decay,
                schedule=c.vq_schedule, step_size=c.vq_step_size, gamma=c.vq_gamma, selection="last",
            ),
            Stage(
                "predictor", epochs=c.pred_epochs, lr=c.pred_lr, trainable=self.predictor_prefixes(),
                sampler=c.sampler, batch_size=c.pred_batch_size, optimizer="adam", selection="last",
            ),
        ]

    def predictor_prefixes(self) -> tuple[str, ...]:
        """Stage 2 trains the predictor only; the audio encoder says which of its parts train (the
        wav2vec2 CNN stays frozen)."""
        enc = self.predictor.audio_encoder
        own = tuple(f"predictor.{n}" for n, _ in self.predictor.named_children() if n != "audio_encoder")
        inner = enc.trainable_prefixes() if hasattr(enc, "trainable_prefixes") else ("",)
        return own + tuple(f"predictor.audio_encoder.{p}" for p in inner)

    def begin_stage(self, stage: Stage) -> None:
        self._vq_frozen = stage.name == "predictor"
        if self._vq_frozen:
            for p in self.vqvae.parameters():
                p.requires_grad_(False)
            self.vqvae.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        if self._vq_frozen:
            self.vqvae.eval()  # the released code calls autoencoder.eval() every stage-2 epoch
        return self

    # -- losses ---------------------------------------------------------------------------------
    def _offsets(self, batch: Batch) -> torch.Tensor:
        """Offsets from the template in network units (times ``motion_scale``), (B, T, V*3)."""
        b, t = batch.vertices.shape[:2]
        return (batch.vertices - batch.template[:, None]).reshape(b, t, -1) * self.config.motion_scale

    @staticmethod
    def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean of x (B, T, D) over valid frames and channels."""
        w = mask.to(x.dtype)[..., None]
        return (x * w).sum() / (w.sum().clamp(min=1.0) * x.shape[-1])

    def loss(self, stage: str, batch: Batch) -> dict[str, torch.Tensor]:
        if stage == "vqvae":
            return self._vq_loss(batch)
        if stage == "predictor":
            return self._predictor_loss(batch)
        raise ConfigError(f"codetalker has no stage '{stage}', expected 'vqvae' or 'predictor'")

    def _vq_loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        x = self._offsets(batch)
        recon, q = self.vqvae(x, batch.mask)
        l1 = self._masked_mean((recon - x).abs(), batch.mask)
        return {"loss": l1 + self.config.quant_weight * q.loss, "recon_l1": l1, "quant": q.loss,
                "perplexity": q.perplexity}

    def _predictor_loss(self, batch: Batch, styles: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        c = self.config
        x = self._offsets(batch)
        with torch.no_grad():
            target = self.vqvae.encode(x, batch.mask).z_q  # (B, T, H*C), ground-truth quantised features
        memory, _ = self.predictor.encode_audio(batch.audio, batch.audio_lengths, batch.lengths)
        styles = batch.speaker if styles is None else styles
        if bool((styles < 0).any()):
            raise ConfigError("codetalker training needs training speakers (got speaker index -1 in a batch)")
        style = self.predictor.style_embedding(styles)
        prev = torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], dim=1)  # teacher forcing
        feats = self.predictor(memory, self.predictor.embed(prev, style))
        z_q = self.vqvae.quantize(feats, batch.mask).z_q  # straight-through into the frozen codebook
        out = self.vqvae.decode(z_q, batch.mask)
        motion = self._masked_mean((out - x).pow(2), batch.mask)
        reg = self._masked_mean((feats - target).pow(2), batch.mask)
        total = c.motion_weight * motion + c.reg_weight * reg
        return {"loss": total, "motion_mse": motion, "feature_mse": reg}

    def validation_loss(self, stage: str, batch: Batch) -> dict[str, torch.Tensor]:
        if stage != "predictor":
            return self.loss(stage, batch)
        if bool((batch.speaker >= 0).all()):
            return self._predictor_loss(batch)
        # unseen speakers: one pass per training style (batched), averaged, as FaceFormer validates
        n = len(self.spec.train_subjects) if self.config.val_conditions == "all" else 1
        b = len(batch)
        seen = batch.speaker >= 0
        rep = Batch(
            audio=batch.audio.repeat(n, 1), audio_lengths=batch.audio_lengths.repeat(n),
            vertices=batch.vertices.repeat(n, 1, 1, 1), lengths=batch.lengths.repeat(n),
            mask=batch.mask.repeat(n, 1), template=batch.template.repeat(n, 1, 1),
            speaker=batch.speaker.repeat(n),
        )
        cond = torch.arange(n, device=batch.speaker.device).repeat_interleave(b)
        styles = torch.where(seen.repeat(n), rep.speaker, cond)
        return self._predictor_loss(rep, styles)

    # -- inference ------------------------------------------------------------------------------
    def _condition(self, condition: int | None) -> int:
        n = len(self.spec.train_subjects)
        cond = 0 if condition is None else int(condition)
        if not 0 <= cond < n:
            raise ConfigError(
                f"codetalker condition must be a training-speaker index in [0, {n}), got {condition}"
            )
        return cond

    def _decode_last(self, z_q: torch.Tensor) -> torch.Tensor:
        """Decode a prefix and return its last frame; a single frame is duplicated first (the
        released code does this because conv/instance norm need two frames)."""
        if z_q.shape[1] == 1:
            return self.vqvae.decode(torch.cat([z_q, z_q], dim=1))[:, :1]
        return self.vqvae.decode(z_q, last_only=True)

    @torch.no_grad()
    def predict(
        self, audio: torch.Tensor, template: torch.Tensor, condition: int | None = None,
        mode: str | None = None,
    ) -> torch.Tensor:
        """(T, V, 3) for one condition (None = the first training speaker)."""
        return self.predict_conditions(audio, template, [condition], mode)[0]

    @torch.no_grad()
    def predict_conditions(
        self, audio: torch.Tensor, template: torch.Tensor, conditions: Sequence[int | None],
        mode: str | None = None,
    ) -> torch.Tensor:
        """Animate one clip under several training-speaker conditions: (C, T, V, 3).

        With ``batch_conditions`` (default) the conditions run as one batch: the audio is encoded
        once and shared, nothing is padded, so each row equals its one-condition prediction (tested
        to 1e-5); without it they run one at a time (less memory for long clips).
        """
        if len(conditions) == 0:
            raise ValueError("predict_conditions needs at least one condition")
        mode = mode or self.config.inference
        if not self.config.batch_conditions and len(conditions) > 1:
            return torch.cat([self.predict_conditions(audio, template, [c], mode) for c in conditions])
        if mode not in CHOICES["inference"]:
            raise ConfigError(
                f"codetalker.inference must be one of {', '.join(CHOICES['inference'])}, got '{mode}'"
            )
        conds = [self._condition(c) for c in conditions]
        was_training = self.training
        self.eval()
        try:
            device = self.device
            audio = audio.to(device).float()[None]
            lengths = torch.tensor([audio.shape[1]], device=device)
            memory, frames = self.predictor.encode_audio(audio, lengths, None)
            n = int(frames[0])
            if n < 1:
                raise ConfigError(f"audio of {audio.shape[1]} samples is too short for one motion frame")
            c = len(conds)
            memory = memory.expand(c, -1, -1)
            style = self.predictor.style_embedding(torch.tensor(conds, device=device))
            first = style[:, None]
            if self.config.first_token == "mapped":
                first = first + self.predictor.vertice_map.bias
            run = {"exact": self._exact, "fast": self._fast, "incremental": self._incremental}[mode]
            z_q = self.vqvae.quantize(run(memory, style, first, n)).z_q
            offsets = self.vqvae.decode(z_q) if n > 1 else self._decode_last(z_q)
            return offsets.reshape(c, n, -1, 3) / self.config.motion_scale + template.to(device)
        finally:
            self.train(was_training)

    def _exact(self, memory, style, first, n: int) -> torch.Tensor:
        """Released loop: re-run the predictor, re-quantise and re-decode the whole prefix each step."""
        tokens = first
        feats = None
        for i in range(n):
            feats = self.predictor(memory, tokens)
            if i == n - 1:
                break
            last = self._decode_last(self.vqvae.quantize(feats).z_q)
            tokens = torch.cat([tokens, self.predictor.embed(last, style)], dim=1)
        return feats

    def _fast(self, memory, style, first, n: int) -> torch.Tensor:
        """O(T): KV-cached predictor, fed-back frame from a decode of the last ``fast_window``
        quantised frames (identical to exact while the prefix fits the window)."""
        cache = self.predictor.start(memory)
        token = first
        feats, quant = [], []
        w = self.config.fast_window
        for i in range(n):
            f = self.predictor.step(token, i, cache)
            feats.append(f)
            if i == n - 1:
                break
            quant.append(self.vqvae.quantize(f).z_q)  # tokens quantise independently: once per frame
            last = self._decode_last(torch.cat(quant[-w:], dim=1))
            token = self.predictor.embed(last, style)
        return torch.cat(feats, dim=1)

    def _incremental(self, memory, style, first, n: int) -> torch.Tensor:
        """O(1) per frame: KV-cached predictor, fed-back frame from the VQ decoder run one frame at a
        time against a cache (exact conv and instance-norm statistics, cached attention; see
        incremental.py for what is exact and what is approximated)."""
        feats = []
        with torch.inference_mode():
            rows = memory.shape[0]
            stepper_weights, decoder_weights = reuse(self, ("incremental", rows), lambda: (
                PredictorStepper.weights(self.predictor, rows),
                IncrementalDecoder.weights(self.vqvae.decoder, self.predictor.vertice_map, rows),
            ))
            stepper = PredictorStepper(self.predictor, memory, n, stepper_weights)
            decoder = IncrementalDecoder(
                self.vqvae.decoder, self.config.incremental_refresh, feedback=self.predictor.vertice_map,
                max_len=n, weights=decoder_weights, exact_frames=self.config.incremental_exact_frames,
            )
            token = first[:, 0]
            quantizer = self.vqvae.quantizer
            for i in range(n):
                f = stepper.step(token, i)[:, None]
                feats.append(f)
                if i == n - 1:
                    break
                # codes only: no loss/usage statistics per step (z_q equals quantize's to rounding)
                codes = quantizer.embedding(quantizer.choose(self.vqvae.to_tokens(f)))
                token = decoder.push(self.vqvae.from_tokens(codes))[:, 0] + style  # = embed(offsets, style)
        return torch.cat(feats, dim=1)  # outside inference mode: a normal tensor
