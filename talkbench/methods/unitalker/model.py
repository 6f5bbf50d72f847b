"""UniTalker (ECCV 2024) as released (specs/unitalker.md; X-niper/UniTalker at 2148113), batched.

One shared speech encoder (WavLM-base-plus for UniTalker-B, wav2vec2-large-xlsr-53 for -L, its CNN
frozen, the transformer run at 50 Hz and its output interpolated to the motion frames), one decoder
with a learnable identity embedding whose last row is the pivot identity, and one output head per
dataset: a zero-initialised Linear predicting PCA coefficients that the dataset's fixed basis
(``pca_layer_dict``, fitted on the training split's offsets in :meth:`UniTalker.prepare`) decodes to
vertex offsets, or the blendshape weights directly. Heads are keyed by dataset name.

On a mixture (``MixtureSpec``, datasets/mixture.py; ``mixture = "heads"``) every member has its head,
its PCA basis (fitted on its own training clips) or blendshape basis; the encoder, the decoder and the
identity table are shared, the table spanning every member's training speakers (``member:subject``,
each member's from ``speaker_offset``) plus the pivot. A batch goes through its member's head
(``Batch.dataset``); predictions run inside ``method.member(name)`` with that member's head, fps
and frame rule. On one dataset nothing differs from the release (same modules, same init order).

Losses (loss/loss.py, main/train_eval_loop.py): the reconstruction MSE (vertices: of the decoded mesh;
blendshapes: ``w_blendshape`` x the weight MSE + the MSE of both through a fixed blendshape basis,
here the mean over the rig's training subjects of its linear shapes, absent without a rig) plus
``w_pca`` x the MSE of the coefficients against the encoded ground truth. A share ``pivot_prob`` of
training clips use the pivot identity; inference without an identity, and unseen speakers, use it.

Module names follow the release where it helps the importer (``audio_encoder``, ``decoder``,
``out_head_dict``, ``pca_layer_dict``); official.py maps the rest.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from talkbench.audio.build import build_audio_encoder
from talkbench.datasets.batch import Batch
from talkbench.datasets.spec import DatasetSpec, MixtureSpec
from talkbench.datasets.targets import BLENDSHAPES, VERTICES
from talkbench.errors import ConfigError, TalkbenchError
from talkbench.methods.base import Method, Stage, output_target
from talkbench.methods.layers import masked_mse
from talkbench.methods.mixture import MemberHeads
from talkbench.methods.unitalker.config import UniTalkerConfig
from talkbench.methods.unitalker.decoder import build_decoder
from talkbench.methods.unitalker.pca import PCABasis
from talkbench.methods.unitalker.release import load_body
from talkbench.sequence import lengths_to_mask

SAMPLE_RATE = 16000


class DeepHead(nn.Module):
    """``head_layers`` > 1: (Linear + Tanh) x (n - 1) + Linear, default initialisation (OutHead)."""

    def __init__(self, dim: int, out_dim: int, layers: int):
        super().__init__()
        parts: list[nn.Module] = []
        for _ in range(layers - 1):
            parts += [nn.Linear(dim, dim), nn.Tanh()]
        self.head_layer = nn.Sequential(*parts, nn.Linear(dim, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head_layer(x)


def build_head(c: UniTalkerConfig, out_dim: int) -> nn.Module:
    if c.head_layers > 1:
        return DeepHead(c.decoder_dim, out_dim, c.head_layers)
    head = nn.Linear(c.decoder_dim, out_dim)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    return head


class UniTalker(MemberHeads, Method):
    name = "unitalker"
    Config = UniTalkerConfig
    uses_speaker_id = False  # evaluated with the pivot identity, as the release's demo ('common')
    presets = ("paper", "paper-b", "paper-l", "synthtalk", "tiny")
    targets = (VERTICES, BLENDSHAPES)
    mixture = "heads"  # one head (and basis) per member, the body and identity table shared

    def __init__(self, config: UniTalkerConfig, spec: DatasetSpec | MixtureSpec):
        super().__init__(config, spec)
        c = config
        members = spec.members if isinstance(spec, MixtureSpec) else {spec.name: spec}
        # the encoder interpolates its output to each clip's frames, so members may differ in fps
        self.audio_encoder = build_audio_encoder(c.audio, next(iter(members.values())))
        if c.audio.kind in ("wav2vec2", "hubert", "wavlm") and c.audio.interpolate_at != "output":
            raise ConfigError("unitalker.audio.interpolate_at must be 'output' (the release interpolates "
                              "the encoder's output to the motion frames)")
        self.n_identities = c.n_identities or len(spec.train_subjects) + 1
        if self.n_identities < 1:
            raise ConfigError(f"unitalker.n_identities {self.n_identities}: expected at least 1 (the pivot)")
        self.decoder = build_decoder(c, self.audio_encoder.out_dim, self.n_identities)
        # one head per dataset (a mixture: per member), PCA bases for the vertex ones
        self.out_head_dict = nn.ModuleDict()
        self.pca_layer_dict = nn.ModuleDict()
        self.blendshape_bases: dict[str, str] = {}  # member -> name of its (non-persistent) buffer
        for member_spec in members.values():
            self.add_dataset(member_spec)
        self.mixture_spec = spec if isinstance(spec, MixtureSpec) else None
        unknown = sorted(set(c.duplicate) - set(members))
        if self.mixture_spec is not None and unknown:
            raise ConfigError(f"unitalker.duplicate names {', '.join(unknown)}: not members of the mixture "
                              f"({', '.join(members)})")
        self._use(None if self.mixture_spec else spec.name)

    def add_dataset(self, spec: DatasetSpec) -> None:
        """The head (and basis) of one dataset, keyed by its name."""
        c = self.config
        if spec.name in self.out_head_dict:
            raise ConfigError(f"unitalker: dataset '{spec.name}' already has a head")
        if getattr(spec, "target", VERTICES) == BLENDSHAPES:
            out_dim = len(spec.channels)
            # one dataset: 'blendshape_basis' as before; a mixture's members each their own
            k = len(self.blendshape_bases)
            buffer = f"blendshape_basis_{k}" if k else "blendshape_basis"
            self.register_buffer(buffer, _blendshape_basis(spec), persistent=False)
            self.blendshape_bases[spec.name] = buffer
        elif c.use_pca:
            out_dim = min(c.pca_dim, 3 * int(spec.n_vertices))
            self.pca_layer_dict[spec.name] = PCABasis(3 * int(spec.n_vertices), out_dim)
        else:
            out_dim = 3 * int(spec.n_vertices)
        self.out_head_dict[spec.name] = build_head(c, out_dim)

    @property
    def pivot(self) -> int:
        return self.n_identities - 1

    # -- mixtures -------------------------------------------------------------------------------
    def _use(self, member: str | None) -> None:
        """Point spec, target and speaker offset at a dataset or mixture member (None: the mixture)."""
        self._active = member
        mix = self.mixture_spec
        if mix is None:
            self.speaker_offset = 0
            return
        if member is None:
            self.spec, self.target, self.speaker_offset = mix, None, 0
            return
        if member not in mix.members:
            raise TalkbenchError(f"'{member}' is not a member of the mixture {mix.name}")
        self.spec = mix.members[member]
        self.target = output_target(type(self), self.spec)
        self.speaker_offset = mix.speaker_offset(member)

    def _member_name(self) -> str:
        if self._active is None:
            raise TalkbenchError(
                f"UniTalker on the mixture {self.spec.name}: which member? "
                "(a batch names it in Batch.dataset; predictions run inside method.member(name))"
            )
        return self._active

    def stages(self) -> list[Stage]:
        c = self.config
        rest = ("decoder.", "out_head_dict.")
        encoder = tuple(f"audio_encoder.{p}" for p in self.audio_encoder.trainable_prefixes())
        # per-dataset duplication: a member's passes per epoch (the mixture sampler's repeats)
        common = dict(lr=c.lr, sampler=c.sampler, batch_size=c.batch_size, optimizer="adam",
                      selection=c.selection, repeats=dict(c.duplicate))
        stages = [Stage(name="train", epochs=c.epochs - c.encoder_warmup_epochs, trainable=rest + encoder,
                        **common)]
        if c.encoder_warmup_epochs:  # fix_encoder_first: the encoder frozen whole, a new Adam after
            stages.insert(0, Stage(name="warmup", epochs=c.encoder_warmup_epochs, trainable=rest, **common))
        return stages

    def prepare(self, train_clips) -> None:
        """Fit each vertex head's PCA basis on the training split's offsets (motion - template); with
        ``finetune_head``, start the encoder and decoder from that file first."""
        if self.config.finetune_head:
            load_body(self, self.config.finetune_head)
        # a mixture's training view holds one view per member (MixtureView.views)
        views = train_clips.views if self.mixture_spec is not None else {self.spec.name: train_clips}
        for name, basis in self.pca_layer_dict.items():
            offsets = [np.asarray(clip.vertices, np.float32).reshape(len(clip.vertices), -1)
                       - np.asarray(clip.template, np.float32).reshape(1, -1) for clip in views.get(name, ())]
            if not offsets:
                raise ConfigError(f"unitalker: '{name}' has no training clips to fit its PCA basis")
            basis.fit(torch.from_numpy(np.concatenate(offsets)).to(basis.feat_to_data.device))

    # -- the shared body and the heads ----------------------------------------------------------
    def identities(self, speaker: torch.Tensor) -> torch.Tensor:
        """Training-speaker indices -> embedding rows: unseen speakers (-1) take the pivot, and in
        training each clip takes it with probability ``pivot_prob`` (random_id_prob). On a mixture the
        indices are the active member's, shifted to its rows of the shared table."""
        ids = torch.where(speaker < 0, torch.full_like(speaker, self.pivot), speaker + self.speaker_offset)
        if self.training and self.config.pivot_prob > 0:
            draw = torch.rand(ids.shape, device=ids.device) < self.config.pivot_prob
            ids = torch.where(draw, torch.full_like(ids, self.pivot), ids)
        return ids

    def features(self, audio, audio_lengths, n_frames, identity) -> tuple[torch.Tensor, torch.Tensor]:
        """Audio -> decoder output (B, T, d) at the motion rate, and the frames per clip (B,)."""
        feats, frames = self.audio_encoder(audio, audio_lengths, n_frames)
        return self.decoder(feats, identity, lengths_to_mask(frames, feats.shape[1])), frames

    def head(self, hidden: torch.Tensor, dataset: str) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(PCA coefficients or None, offsets (B, T, V*3) or weights (B, T, K)) of ``dataset``'s head."""
        out = self.out_head_dict[dataset](hidden)
        if dataset in self.pca_layer_dict:
            return out, self.pca_layer_dict[dataset].decode(out)
        return None, out

    # -- losses ---------------------------------------------------------------------------------
    def loss(self, stage: str, batch: Batch) -> dict[str, torch.Tensor]:
        with self.member(batch.dataset):  # a mixture: the batch's own head and identity rows
            return self._loss(batch)

    def _loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.config
        name = self._member_name()
        hidden, frames = self.features(batch.audio, batch.audio_lengths, batch.lengths,
                                       self.identities(batch.speaker))
        t = hidden.shape[1]
        mask = lengths_to_mask(frames, t)
        coefficients, pred = self.head(hidden, name)
        out: dict[str, torch.Tensor] = {}
        if self.target == BLENDSHAPES:
            gt = batch.weights[:, :t]
            out["weights"] = masked_mse(pred, gt, mask)
            basis = getattr(self, self.blendshape_bases[name])
            if basis.numel():
                out["blendshape_vertices"] = masked_mse(pred @ basis, gt @ basis, mask)
                reconstruction = c.w_blendshape * out["weights"] + out["blendshape_vertices"]
            else:  # no rig: the weights are all there is to learn from
                reconstruction = out["weights"]
        else:
            template = batch.template.flatten(1)[:, None]
            gt = batch.vertices[:, :t].flatten(2)
            reconstruction = out["vertices"] = masked_mse(pred + template, gt, mask)
        total = c.w_reconstruction * reconstruction
        if coefficients is not None:
            target = self.pca_layer_dict[name].encode(gt - template)
            out["pca"] = masked_mse(coefficients, target, mask)
            total = total + c.w_pca * out["pca"]
        return {"loss": total, **out}

    # -- inference ------------------------------------------------------------------------------
    def frames_for(self, n_samples: int) -> int:
        """The release's frame count, round(S / 16000 * fps) (main/demo.py); SynthTalk's own rule."""
        if self.spec.frame_rule == "samples":
            return self.spec.frames_for_samples(n_samples)
        return round(n_samples / SAMPLE_RATE * float(self.spec.fps))

    @torch.no_grad()
    def predict(self, audio, template, condition=None):
        return self.predict_conditions(audio, template, [condition])[0]

    @torch.no_grad()
    def predict_conditions(self, audio, template, conditions):
        """The encoder once, the decoder batched over the conditions (None: the pivot identity)."""
        if len(conditions) == 0:
            raise ValueError("predict_conditions needs at least one condition (None for the pivot)")
        name = self._member_name()  # on a mixture: the member of ``method.member(name)``
        device = audio.device
        n = self.frames_for(int(audio.shape[-1]))
        feats, frames = self.audio_encoder(audio[None], torch.tensor([audio.shape[-1]], device=device),
                                           torch.tensor([n], device=device))
        ids = torch.tensor([self.pivot if k is None else int(k) + self.speaker_offset for k in conditions],
                           device=device)
        if int(ids.max()) >= self.n_identities or int(ids.min()) < 0:
            raise ConfigError(f"unitalker: identity {ids.tolist()} outside 0..{self.pivot} (the pivot)")
        feats = feats.expand(len(ids), -1, -1)
        hidden = self.decoder(feats, ids, lengths_to_mask(frames.expand(len(ids)), feats.shape[1]))
        _, out = self.head(hidden, name)
        out = out[:, :n]
        if self.target == BLENDSHAPES:
            return out  # (C, T, K) weights, the neutral being all-zero weights
        return (out + template.flatten()[None, None]).reshape(len(ids), n, -1, 3)


def _blendshape_basis(spec: DatasetSpec) -> torch.Tensor:
    """(K, V*3): the rig's linear shapes averaged over its training subjects (all of its subjects when
    none trains), the one fixed basis the release's blendshape loss has; (0, 0) without a rig."""
    rig = getattr(spec, "rig", None)
    if rig is None:
        return torch.zeros(0, 0)
    subjects = [s for s in spec.train_subjects if s in rig.deltas] or list(rig.subjects)
    deltas = np.mean([rig.deltas[s] for s in subjects], axis=0)
    return torch.from_numpy(deltas.reshape(len(rig.channels), -1).astype(np.float32))
