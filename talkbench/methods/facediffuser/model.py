"""FaceDiffuser's vertex model ``FaceDiff`` as released (specs/facediffuser.md §2-§5).

Module names follow the release so its bare state dict maps by prefix (official.py): ``audio_encoder``
(HuBERT-base, its CNN, feature projection and layers 0-1 frozen), ``cond_projection``,
``input_projection`` (Linear -> Conv1d over the feature axis -> ReLU -> MaxPool -> ReLU),
``time_mlp`` (one-hot of t -> Linear -> Mish), ``norm_cond``, ``gru``, ``obj_vector`` (multiplies the
GRU output), ``final_layer`` (zero-initialised, + template). The network predicts the clean sequence
in absolute vertex coordinates.

Unlike the release, which re-runs HuBERT inside every one of the T denoising calls, the audio is
encoded once per clip (exact: the encoder is in eval mode) and the N samples of a clip run as one
batch, each drawing its noise from its own generator.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from talkbench.audio.build import build_audio_encoder
from talkbench.audio.signal import FEATURE_RATE, align_features
from talkbench.datasets.batch import Batch
from talkbench.datasets.spec import DatasetSpec
from talkbench.errors import ConfigError, DataError, TalkbenchError
from talkbench.methods.base import Diagnostic, Method, Stage, sample_generator, sample_seed
from talkbench.methods.facediffuser.config import FaceDiffuserConfig
from talkbench.methods.facediffuser.diffusion import Diffusion
from talkbench.methods.facediffuser.noise_dependence import noise_dependence
from talkbench.sequence import lengths_to_mask

_FRAMES_PER_MOTION = 2  # the release pairs two 50 Hz features per frame (fps 25..49)


class _FeatureRate:
    """The clock the encoder is built for: 50 Hz out, unaligned (asked for its own CNN's frame count,
    the interpolation is the identity). The release aligns HuBERT's last hidden state
    (``adjust_input_representation``), not the CNN features as the audio layer does."""

    def __init__(self, name: str):
        self.name, self.fps = name, FEATURE_RATE
        self.audio_alignment, self.frame_rule = "interpolate", "features"

    def frames_for_samples(self, n_samples: int) -> int:  # never asked: n_frames is always given
        raise NotImplementedError


def feature_lengths(encoder, audio_lengths: torch.Tensor) -> torch.Tensor:
    """The 50 Hz frame count of each clip: the wav2vec2-style CNN's, or the mel front end's (100 Hz
    log-mel, then a stride-2 conv)."""
    if hasattr(encoder, "cnn_lengths"):
        return encoder.cnn_lengths(audio_lengths)
    return torch.div(encoder.frames_100hz(audio_lengths) - 1, 2, rounding_mode="floor") + 1


class FaceDiffuser(Method):
    name = "facediffuser"
    Config = FaceDiffuserConfig
    uses_speaker_id = True
    samples = True
    presets = ("paper-vocaset", "paper-biwi", "paper-multiface", "synthtalk", "tiny")

    def __init__(self, config: FaceDiffuserConfig, spec: DatasetSpec):
        super().__init__(config, spec)
        c = config
        if not spec.train_subjects:
            raise ConfigError(
                f"dataset '{spec.name}' lists no training speakers; FaceDiffuser needs their one-hots"
            )
        if not FEATURE_RATE / 2 <= spec.fps < FEATURE_RATE:
            raise ConfigError(f"facediffuser pairs two 50 Hz features per frame: dataset fps {spec.fps} "
                              "must be in [25, 50)")
        # 50 Hz divisible by the fps (BIWI 25): crop to pairs; else (VOCASET 30) interpolate to 2 T
        self.alignment = "pairs" if FEATURE_RATE % spec.fps == 0 else "interpolate"
        self.n_speakers = len(spec.train_subjects)
        v3 = 3 * int(spec.n_vertices)
        d = c.latent_dim
        self.audio_encoder = build_audio_encoder(c.audio, _FeatureRate(spec.name))
        self.cond_projection = nn.Linear(_FRAMES_PER_MOTION * self.audio_encoder.out_dim, d)
        self.input_projection = nn.Sequential(
            nn.Linear(v3, 2 * d), nn.Conv1d(1, 1, 9, padding="same"), nn.ReLU(), nn.MaxPool1d(2), nn.ReLU()
        )
        self.time_mlp = nn.Sequential(nn.Linear(c.diff_steps, d), nn.Mish())
        self.norm_cond = nn.LayerNorm(3 * d)
        self.gru = nn.GRU(3 * d, c.gru_dim, c.gru_layers, batch_first=True, dropout=c.gru_dropout)
        self.obj_vector = nn.Linear(self.n_speakers, c.gru_dim, bias=False)
        self.final_layer = nn.Linear(c.gru_dim, v3)
        nn.init.zeros_(self.final_layer.weight)
        nn.init.zeros_(self.final_layer.bias)
        self.diffusion = Diffusion.cosine(c.diff_steps)
        kind, k = c.sampler_steps()
        self.sampling = self.diffusion.respaced(k) if kind == "ddim" else self.diffusion

    def stages(self) -> list[Stage]:
        c = self.config
        audio = tuple(f"audio_encoder.{p}" for p in self.audio_encoder.trainable_prefixes())
        trainable = ("cond_projection", "input_projection", "time_mlp", "norm_cond", "gru", "obj_vector",
                     "final_layer") + audio
        return [Stage(name="train", epochs=c.epochs, lr=c.lr, trainable=trainable, sampler=c.batch_sampler,
                      batch_size=c.batch_size, optimizer="adam", selection=c.selection)]

    # -- conditioning -----------------------------------------------------------------------------
    def encode_audio(
        self, audio: torch.Tensor, audio_lengths: torch.Tensor, n_frames: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """HuBERT's 50 Hz last hidden state aligned as ``adjust_input_representation`` does and
        projected: (B, T, latent) and motion frames per clip (B,). ``pairs``: a trailing odd feature
        dropped, cropped to 2 T (or T cut to S'/2); ``interpolate``: linear (align_corners) to 2 T."""
        rate = feature_lengths(self.audio_encoder, audio_lengths)
        h, h_len = self.audio_encoder(audio, audio_lengths, rate)
        if n_frames is None:
            n_frames = torch.tensor([self._frames(int(n)) for n in audio_lengths.tolist()], device=h.device)
        n_frames = n_frames.to(h.device)
        if self.alignment == "pairs":
            h, out_len = align_features(h, h_len, n_frames, "pairs", self.spec.fps, audio_lengths)
        else:
            h, out_len = align_features(h, h_len, _FRAMES_PER_MOTION * n_frames, "interpolate",
                                        self.spec.fps, audio_lengths)
        b, t2, dim = h.shape
        frames = torch.div(out_len, _FRAMES_PER_MOTION, rounding_mode="floor")
        h = h.reshape(b, t2 // _FRAMES_PER_MOTION, _FRAMES_PER_MOTION * dim)
        return self.cond_projection(h), frames

    def _frames(self, n_samples: int) -> int:
        """The release's ``int(S / 16000 * fps)`` with its ``frames - 1`` sample shape where no ground
        truth fixes the length; the dataset's own count where it has one (SynthTalk)."""
        if self.spec.frame_rule == "samples":
            return self.spec.frames_for_samples(n_samples)
        return max(1, int(n_samples / 16000 * self.spec.fps) - 1)

    def one_hot(self, speaker: torch.Tensor) -> torch.Tensor:
        return F.one_hot(speaker, self.n_speakers).to(self.obj_vector.weight.dtype)

    def condition_index(self, condition: int | str | None) -> int:
        index = self.spec.speaker_index(condition) if isinstance(condition, str) else (
            -1 if condition is None else int(condition))
        if not 0 <= index < self.n_speakers:
            raise TalkbenchError(
                f"FaceDiffuser animates in the style of a training speaker: condition must be "
                f"0..{self.n_speakers - 1} or one of {', '.join(self.spec.train_subjects)}; got {condition!r}"
            )
        return index

    # -- the denoiser -----------------------------------------------------------------------------
    def denoise(
        self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, template: torch.Tensor,
        one_hot: torch.Tensor,
    ) -> torch.Tensor:
        """x0_hat for x_t (B, T, V*3) at steps t (B,), given projected audio (B or 1, T, latent),
        templates (B or 1, V*3) and speaker one-hots (B or 1, n_speakers)."""
        b, n, v3 = x.shape
        motion = self.input_projection(x.reshape(b * n, 1, v3)).reshape(b, n, -1)  # frames as batch
        time = self.time_mlp(F.one_hot(t, self.config.diff_steps).to(motion.dtype))
        h = torch.cat([cond[:, :n].expand(b, -1, -1), motion, time[:, None].expand(-1, n, -1)], dim=-1)
        h, _ = self.gru(self.norm_cond(h))
        h = h * self.obj_vector(one_hot)[:, None]
        out = self.final_layer(h)  # (B, T, V*3): the largest tensor; the template added in place unless
        # autocast made it bf16 (then promoted to float32 as before)
        return out.add_(template[:, None]) if out.dtype == template.dtype else out + template[:, None]

    # -- training ---------------------------------------------------------------------------------
    def loss(
        self, stage: str, batch: Batch, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        if (batch.speaker < 0).any():
            bad = sorted({s for s, k in zip(batch.subjects, batch.speaker.tolist()) if k < 0})
            raise DataError(f"FaceDiffuser trains on training speakers only; got {bad} "
                            f"(training speakers: {', '.join(self.spec.train_subjects)})")
        return self._loss(batch, batch.speaker, generator)

    def _loss(self, batch: Batch, speaker: torch.Tensor, generator: torch.Generator | None):
        cond, frames = self.encode_audio(batch.audio, batch.audio_lengths, batch.lengths)
        n = int(frames.max())
        x0 = batch.vertices[:, :n].flatten(2)
        b = x0.shape[0]
        t = torch.randint(0, self.config.diff_steps, (b,), device=x0.device, generator=generator)
        eps = torch.randn(x0.shape, device=x0.device, generator=generator)
        pred = self.denoise(self.diffusion.q_sample(x0, t, eps), t, cond, batch.template.flatten(1),
                            self.one_hot(speaker))
        mask = lengths_to_mask(frames, n)[..., None].to(pred.dtype)
        if self.config.loss == "huber":  # nn.HuberLoss(): delta 1, the mean over every element
            per = F.huber_loss(pred, x0, reduction="none", delta=1.0)
        else:
            per = (pred - x0) ** 2
        value = (per * mask).sum() / (mask.sum() * pred.shape[-1]).clamp(min=1)
        return {"loss": value, self.config.loss: value}

    def validation_loss(self, stage: str, batch: Batch) -> dict[str, torch.Tensor]:
        """The loss at a t and noise fixed per validation set (seeded by its clip names), so the
        value does not jump with random draws as the release's does; a clip of an unseen speaker
        (the validation speakers) is scored under every training condition and averaged, as the
        release's validation loop (FaceFormer's) does."""
        seed = sample_seed(0, "|".join(batch.names), "validation", 0)
        unseen = batch.speaker < 0
        conditions = range(self.n_speakers) if bool(unseen.any()) else [None]
        totals: dict[str, torch.Tensor] = {}
        for c in conditions:
            gen = torch.Generator(device=batch.audio.device)
            gen.manual_seed(seed)  # the same t and noise under every condition
            speaker = batch.speaker if c is None else torch.where(unseen, c, batch.speaker)
            for key, value in self._loss(batch, speaker, gen).items():
                totals[key] = totals.get(key, 0) + value / len(conditions)
        return totals

    def diagnostics(self, train_clips, eval_clips) -> list[Diagnostic]:
        """How x0_hat depends on x_t per step (noise_dependence.py): where it does not at t = 0, every
        sample of a clip is the same."""
        was_training = self.training
        self.eval()
        try:
            content, metrics = noise_dependence(self, eval_clips)
        finally:
            self.train(was_training)
        return [Diagnostic("noise_dependence", content, metrics)] if content else []

    # -- inference --------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self, cond: torch.Tensor, template: torch.Tensor, condition: int, seeds: Sequence[int]
    ) -> torch.Tensor:
        """N samples (N, T, V*3) of one clip from its projected audio (1, T, latent), all N in one
        batch; sample k's x_T and per-step noise come from a CPU generator seeded ``seeds[k]``, so
        it is the same on any device, for any N and in any order."""
        if len(seeds) == 0:
            raise ValueError("predict_samples needs at least one seed")
        if not self.config.batch_samples and len(seeds) > 1:
            return torch.cat([self.sample(cond, template, condition, [s]) for s in seeds])
        n, t = len(seeds), cond.shape[1]
        gens = [sample_generator(s) for s in seeds]
        device = cond.device
        drawn = torch.empty((n, t, 3 * int(self.spec.n_vertices)))  # refilled at every step
        on_device = drawn if device.type == "cpu" else torch.empty(drawn.shape, device=device)

        def noise() -> torch.Tensor:
            for row, g in zip(drawn, gens):
                row.normal_(generator=g)  # the numbers torch.randn(row.shape, generator=g) gives
            return on_device.copy_(drawn) if on_device is not drawn else drawn

        speaker = self.one_hot(torch.tensor([condition], device=device))
        tpl = template.reshape(1, -1)

        def denoise(x: torch.Tensor, step: int) -> torch.Tensor:
            return self.denoise(x, torch.full((n,), step, device=device), cond, tpl, speaker)

        kind, k = self.config.sampler_steps()
        if kind == "trunc":
            return self.sampling.truncated_loop(denoise, noise, k)
        if kind == "ddim":
            return self.sampling.ddim_sample_loop(denoise, noise, self.config.eta)
        return self.sampling.p_sample_loop(denoise, noise)

    def _clip(self, audio: torch.Tensor, template: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        audio = torch.as_tensor(audio, dtype=torch.float32, device=self.device)
        if audio.dim() != 1:
            raise DataError(f"predict() expects audio (S,) at 16 kHz, got shape {tuple(audio.shape)}")
        lengths = torch.tensor([audio.shape[0]], device=audio.device)
        cond, frames = self.encode_audio(audio[None], lengths, None)
        return cond[:, : int(frames[0])], torch.as_tensor(template, dtype=torch.float32, device=audio.device)

    @torch.no_grad()
    def predict_samples(self, audio, template, condition, seeds):
        cond, tpl = self._clip(audio, template)
        out = self.sample(cond, tpl, self.condition_index(condition), seeds)
        return out.reshape(len(seeds), out.shape[1], -1, 3)

    @torch.no_grad()
    def predict(self, audio, template, condition=None):
        """One sample (seed 0), so deterministic metrics apply to a stochastic method too."""
        return self.predict_samples(audio, template, condition, [0])[0]

    @torch.no_grad()
    def predict_condition_samples(self, audio, template, conditions, seeds):
        """The audio encoded once, then each condition's samples."""
        cond, tpl = self._clip(audio, template)
        out = [self.sample(cond, tpl, self.condition_index(c), s) for c, s in zip(conditions, seeds)]
        return torch.stack(out).reshape(len(conditions), len(seeds[0]), cond.shape[1], -1, 3)

    @torch.no_grad()
    def predict_conditions(self, audio, template, conditions):
        """The audio encoded once, then one sample (seed 0) per condition."""
        if len(conditions) == 0:
            raise ValueError("predict_conditions needs at least one condition")
        cond, tpl = self._clip(audio, template)
        out = [self.sample(cond, tpl, self.condition_index(c), [0])[0] for c in conditions]
        return torch.stack(out).reshape(len(conditions), cond.shape[1], -1, 3)
