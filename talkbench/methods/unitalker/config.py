"""UniTalker hyperparameters (specs/unitalker.md; config/unitalker.yaml of X-niper/UniTalker at 2148113),
with every stage setting so ``--set unitalker.epochs=`` works. Defaults are the released UniTalker-B."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from talkbench.audio.config import AudioEncoderConfig
from talkbench.errors import ConfigError

WAVLM_BASE_PLUS = "microsoft/wavlm-base-plus"  # UniTalker-B
XLSR_53 = "facebook/wav2vec2-large-xlsr-53"  # UniTalker-L
LICENCE = (
    "Apache-2.0 (X-niper/UniTalker code); its data release (D5-D7, PCA files) has its own terms, not checked"
)


def _wavlm() -> AudioEncoderConfig:
    # the release interpolates the transformer's 50 Hz output to the motion frames (interpolate_pos 1)
    return AudioEncoderConfig(kind="wavlm", name_or_path=WAVLM_BASE_PLUS, interpolate_at="output")


@dataclass
class UniTalkerConfig:
    """``decoder``: ``conv`` (the release's default TCN) or ``transformer`` (a FaceFormer-style layer).
    ``n_identities`` of None is the training speakers plus the pivot (the last row, used for a share
    ``pivot_prob`` of training clips and whenever no identity is given); an imported checkpoint sets
    it from its table's shape. Heads are keyed by dataset name; ``duplicate`` repeats a dataset's
    clips per epoch in a mixture (the release's 10,5,4,1,1,1,1,1 over D0-D7)."""

    decoder: Literal["conv", "transformer"] = "conv"
    decoder_dim: int = 256
    identity_dim: int = 64  # the TCN's identity embedding; the transformer's is decoder_dim wide
    tcn_layers: int = 3  # SeqTranslator1D(min_layers_num=3): conv k3 + layer norm + residual + ReLU
    kernel_size: int = 3
    dropout: float = 0.1
    n_heads: int = 4  # transformer decoder
    period: int = 30  # transformer decoder: periodic positional encoding and ALiBi period
    head_layers: int = 1  # 1: one zero-initialised Linear; more: (Linear + Tanh) x (n - 1) + Linear
    use_pca: bool = True  # vertex heads predict PCA coefficients decoded by the dataset's fixed basis
    pca_dim: int = 512
    n_identities: int | None = None
    pivot_prob: float = 0.1  # random_id_prob
    # losses (config/unitalker.yaml): the reconstruction (train_eval_loop adds it unweighted), the
    # PCA-coefficient MSE, and the weight-space MSE of blendshape heads beside their vertex-space MSE
    w_reconstruction: float = 1.0
    w_pca: float = 0.01
    w_blendshape: float = 1e-4
    duplicate: dict[str, int] = field(default_factory=dict)
    # the encoder frozen whole for the first epochs (fix_encoder_first: one epoch), then fine-tuned
    # with its CNN frozen; each phase starts a new Adam as the release does
    encoder_warmup_epochs: int = 1
    epochs: int = 100  # in all, warm-up included
    lr: float = 1e-4
    batch_size: int = 1
    sampler: Literal["sequential", "bucketed"] = "sequential"
    selection: Literal["val", "last"] = "last"
    audio: AudioEncoderConfig = field(default_factory=_wavlm)
    # fine-tuning a new head (the paper's headline experiment): the UniTalker whose encoder and decoder
    # start this run: a weights file (the release's .pt, save_official's, a run's model.safetensors) or
    # a run (RUN_ID, runs:/RUN_ID, models:/NAME/VERSION; talkbench/weights_ref.py), trained on one
    # dataset, a mixture, or `bench import`-ed; this dataset's head starts at zero, the identity table
    # from the file's pivot row (the release's load_ckpt); all of it trains
    finetune_head: str = field(default="", metadata={"weights": True})
    # bench import: which head of the official file this dataset takes (empty: by dataset name,
    # official.py's table) and the release's pca.npz when the file carries no basis (train.py drops it)
    official_head: str = field(default="", metadata={"identity": False})
    official_pca: str = field(default="", metadata={"identity": False})

    def __post_init__(self) -> None:
        if isinstance(self.audio, dict):
            self.audio = AudioEncoderConfig(**self.audio)
        choices = (("decoder", ("conv", "transformer")), ("sampler", ("sequential", "bucketed")),
                   ("selection", ("val", "last")))
        for key, allowed in choices:
            if getattr(self, key) not in allowed:
                raise ConfigError(f"unitalker.{key} '{getattr(self, key)}', expected one of {allowed}")
        if self.decoder == "transformer" and self.decoder_dim % self.n_heads:
            raise ConfigError(f"unitalker.decoder_dim ({self.decoder_dim}) must be divisible by "
                              f"unitalker.n_heads ({self.n_heads})")
        if not 0.0 <= self.pivot_prob <= 1.0:
            raise ConfigError(f"unitalker.pivot_prob {self.pivot_prob}: expected a probability in [0, 1]")
        if not 0 <= self.encoder_warmup_epochs <= self.epochs:
            raise ConfigError(f"unitalker.encoder_warmup_epochs {self.encoder_warmup_epochs}: expected "
                              f"0..unitalker.epochs ({self.epochs})")
        if self.head_layers < 1 or self.pca_dim < 1 or self.tcn_layers < 1:
            raise ConfigError("unitalker.head_layers, pca_dim and tcn_layers must be at least 1")
        bad = {k: v for k, v in self.duplicate.items() if int(v) < 1}
        if bad:
            raise ConfigError(f"unitalker.duplicate {bad}: each dataset is repeated at least once")
