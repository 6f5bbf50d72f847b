"""The Hugging Face speech encoders (wav2vec2, HuBERT, WavLM) behind the one encoder contract.

Called submodule by submodule (FaceFormer spec §2 "recommended re-implementation"): feature_extractor
-> transpose -> align -> feature_projection ([0] if a tuple) -> _mask_hidden_states (training) ->
encoder. Attention maps are never requested. Each family (wav2vec2.py, hubert.py, wavlm.py) names
its classes and the checkpoints it knows; this module builds any of them from a local folder or the
local Hugging Face cache, never the network.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from talkbench.audio.base import AudioEncoder, MotionClock
from talkbench.audio.config import AudioEncoderConfig
from talkbench.audio.feature_cache import FrozenFeatureCache, weights_digest
from talkbench.audio.signal import align_features, normalize_audio, pad_stack
from talkbench.errors import ConfigError
from talkbench.sequence import lengths_to_mask

# the large architecture (24 layers, 1024-d, pre-LN transformer, layer-norm CNN with biases)
LARGE = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
             do_stable_layer_norm=True, feat_extract_norm="layer", conv_bias=True)


@dataclass(frozen=True)
class Family:
    """One encoder family: its transformers classes and the checkpoints the methods use."""

    kind: str
    model_class: str
    ctc_class: str
    checkpoints: dict[str, str]  # name -> what it is and who uses it
    # the transformers config fields of a known checkpoint that differ from the library default (the
    # base architecture), so that a randomly initialised model has the paper's shapes offline
    architectures: dict[str, dict] = dataclasses.field(default_factory=dict)

    @property
    def default(self) -> str:
        return next(iter(self.checkpoints))


def _hf_cache() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _missing(family: Family, name: str, err: Exception) -> ConfigError:
    known = "; ".join(f"{k} ({v})" for k, v in family.checkpoints.items())
    return ConfigError(
        f"{family.kind} checkpoint '{name}' is not available locally ({type(err).__name__}). Put it in "
        f"the Hugging Face cache ({_hf_cache()}) with `huggingface-cli download {name}` on a machine with "
        f"network, or pass a local folder with `--set <method>.audio.name_or_path=/path/to/checkpoint`; "
        f"known {family.kind} checkpoints: {known}; tests use `audio.pretrained=false`."
    )


def load_model(family: Family, cfg: AudioEncoderConfig, ctc: bool = False) -> nn.Module:
    """The model of ``cfg`` (pretrained from a local path or cache, or randomly initialised)."""
    import transformers

    cls = getattr(transformers, family.ctc_class if ctc else family.model_class)
    overrides = dict(cfg.hf_overrides)
    if cfg.mask_time_prob is not None:
        overrides["mask_time_prob"] = cfg.mask_time_prob
    if cfg.mask_time_length is not None:
        overrides["mask_time_length"] = cfg.mask_time_length
    if cfg.pretrained:
        try:
            return cls.from_pretrained(cfg.name_or_path, local_files_only=True, **overrides)
        except (OSError, ValueError) as err:
            raise _missing(family, cfg.name_or_path, err) from None
    config_cls = cls.config_class
    try:
        config = config_cls.from_pretrained(cfg.name_or_path, local_files_only=True)
    except (OSError, ValueError):  # not cached: the library default (base) with the known shapes
        config = config_cls(**family.architectures.get(cfg.name_or_path, {}))
    for key, value in overrides.items():
        if not hasattr(config, key):
            raise ConfigError(f"audio.hf_overrides: '{key}' is not a {config_cls.__name__} field")
        setattr(config, key, value)
    return cls(config)


def ctc_head_weights(family: Family, cfg: AudioEncoderConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight (vocab, hidden), bias (vocab,)) of a CTC-fine-tuned checkpoint's ``lm_head`` (e.g.
    hubert-large-ls960-ft), for a method whose text head starts from real ASR posteriors."""
    model = load_model(family, cfg, ctc=True)
    return model.lm_head.weight.detach().clone(), model.lm_head.bias.detach().clone()


def _last_hidden(out) -> torch.Tensor:
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]


class HFSpeechEncoder(AudioEncoder):
    """A wav2vec2-style model (CNN, feature projection, transformer) with the frozen CNN's features
    cached per clip (``cache_frozen_cnn``), ``frozen_layers`` transformer layers frozen with the
    projection, and the output of transformer layer ``layer`` (default: the last). With
    ``ctc_head`` it is built from the family's CTC class and keeps its ``lm_head`` as ``ctc_head``."""

    family: Family

    def __init__(self, cfg: AudioEncoderConfig, spec: MotionClock, ctc_head: bool = False):
        super().__init__(cfg, spec)
        if ctc_head:  # a recognizer: the CTC checkpoint's encoder and its head, loaded once
            full = load_model(self.family, cfg, ctc=True)
            self.model = getattr(full, full.base_model_prefix)
            self.ctc_head = full.lm_head
        else:
            self.model = load_model(self.family, cfg)
        conf = self.model.config
        n_layers = int(conf.num_hidden_layers)
        if not 0 <= cfg.frozen_layers <= n_layers:
            raise ConfigError(f"audio.frozen_layers {cfg.frozen_layers}: expected 0..{n_layers}")
        if cfg.interpolate_at not in ("features", "output"):
            raise ConfigError(f"audio.interpolate_at '{cfg.interpolate_at}': expected 'features' or 'output'")
        if cfg.layer is not None and not 0 <= cfg.layer <= n_layers:
            raise ConfigError(f"audio.layer {cfg.layer}: expected 0..{n_layers} or null (the last)")
        if cfg.freeze_cnn:  # HubertModel has no freeze_feature_encoder() in transformers 5
            for p in self.model.feature_extractor.parameters():
                p.requires_grad_(False)
            self.model.feature_extractor._requires_grad = False
        if cfg.frozen_layers:
            self.model.feature_projection.requires_grad_(False)
            for layer in self.model.encoder.layers[: cfg.frozen_layers]:
                layer.requires_grad_(False)
        self.out_dim = int(conf.hidden_size)
        self.output_layer = "last" if cfg.layer is None else f"hidden_states[{cfg.layer}]"
        self._kernels = list(conf.conv_kernel)
        self._strides = list(conf.conv_stride)
        # group norm over time in the first conv layer: padding would leak into the statistics, so
        # the CNN runs per element on its valid samples; layer-norm CNNs are exact when batched
        self._cnn_batches = getattr(conf, "feat_extract_norm", "group") == "layer"
        self.front_end_cache = FrozenFeatureCache()
        self._digest: tuple[tuple, str] | None = None  # (weights version, digest) of the frozen CNN

    def trainable_prefixes(self) -> tuple[str, ...]:
        if not self.cfg.freeze_cnn and not self.cfg.frozen_layers:
            return ("",)
        frozen = {"feature_extractor"} if self.cfg.freeze_cnn else set()
        if self.cfg.frozen_layers:
            frozen.add("feature_projection")
        names = [n for n, _ in self.model.named_children() if n not in frozen]
        if self.cfg.frozen_layers:
            names.remove("encoder")
            names += [f"encoder.{n}" for n, _ in self.model.encoder.named_children() if n != "layers"]
            n_layers = len(self.model.encoder.layers)
            names += [f"encoder.layers.{i}." for i in range(self.cfg.frozen_layers, n_layers)]
        names += [n for n, _ in self.model.named_parameters(recurse=False)]
        return tuple(f"model.{n}" for n in names)

    def cnn_lengths(self, n_samples: torch.Tensor) -> torch.Tensor:
        n = n_samples.clone()
        for k, s in zip(self._kernels, self._strides):
            n = torch.div(n - k, s, rounding_mode="floor") + 1
        return n.clamp(min=0)

    def cnn_digest(self) -> str:
        """The frozen CNN's weights digest, recomputed only when a weight tensor changed."""
        extractor = self.model.feature_extractor
        version = tuple((id(p), p.data_ptr(), p._version) for p in extractor.parameters())
        if self._digest is None or self._digest[0] != version:
            self._digest = (version, weights_digest(extractor))
        return self._digest[1]

    def cnn(self, audio: torch.Tensor, audio_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S) normalised audio -> 50 Hz CNN features (B, S', 512) and valid lengths (B,)."""
        lengths = self.cnn_lengths(audio_lengths)
        extractor = self.model.feature_extractor
        frozen = not any(p.requires_grad for p in extractor.parameters())
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            if frozen and self.training and self.cfg.cache_frozen_cnn:
                digest = self.cnn_digest()
                items = [
                    self.front_end_cache.get(
                        audio[b, : int(n)], digest, lambda x: extractor(x[None])[0].transpose(0, 1)
                    )
                    for b, n in enumerate(audio_lengths.tolist())
                ]
                feats = pad_stack(items)
            elif self._cnn_batches:
                feats = extractor(audio).transpose(1, 2)[:, : int(lengths.max())]
            else:
                items = [
                    extractor(audio[b : b + 1, : int(n)])[0].transpose(0, 1)
                    for b, n in enumerate(audio_lengths.tolist())
                ]
                feats = pad_stack(items)
        return feats, lengths

    def forward(self, audio, audio_lengths, n_frames=None):
        self._check_lengths(audio, audio_lengths)
        with self.inference_precision(audio):
            h, out_len = self._encode(audio, audio_lengths, n_frames)
        return h.float(), out_len

    def _encode(self, audio, audio_lengths, n_frames):
        x = normalize_audio(audio, audio_lengths)
        feats, lengths = self.cnn(x, audio_lengths)
        n_frames = self.default_frames(audio_lengths, n_frames)
        late = getattr(self.cfg, "interpolate_at", "features") == "output"  # configs pickled before it
        if late:
            out_len = lengths
        else:
            feats, out_len = align_features(feats, lengths, n_frames, self.alignment, self.fps, audio_lengths)
        hidden = self.model.feature_projection(feats)
        if isinstance(hidden, tuple):  # transformers >= 4.1x returns (hidden, normed)
            hidden = hidden[0]
        attn = lengths_to_mask(out_len, hidden.shape[1])
        full = bool(attn.all())
        if self.training:
            hidden = self.model._mask_hidden_states(hidden, attention_mask=None if full else attn.long())
        mask = None if full else attn
        if self.cfg.layer is None:
            h = _last_hidden(self.model.encoder(hidden, attention_mask=mask))
        else:
            h = self._layer_output(hidden, mask)
        h = h * attn[..., None].to(h.dtype)
        if late:
            return align_features(h, lengths, n_frames, "interpolate", self.fps, audio_lengths)
        return h, out_len

    def _layer_output(self, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """The input of transformer layer ``layer`` (0: after the positional conv) or the output of
        layer ``layer - 1`` counted from 1, as ``hidden_states[layer]``, before any final layer norm;
        taken with a hook, because transformers 5 fills ``hidden_states`` only at the model level."""
        k = self.cfg.layer
        layers = self.model.encoder.layers
        if k == 0:
            handle = layers[0].register_forward_pre_hook(
                lambda _m, args, kwargs: captured.append(args[0] if args else kwargs["hidden_states"]),
                with_kwargs=True,
            )
        else:
            handle = layers[k - 1].register_forward_hook(lambda _m, _a, out: captured.append(out))
        captured: list = []
        try:
            self.model.encoder(hidden, attention_mask=mask)
        finally:
            handle.remove()
        if not captured:  # layerdrop skipped it
            raise ConfigError(f"audio.layer {k}: skipped by layerdrop; set audio.hf_overrides.layerdrop=0")
        out = captured[-1]
        return out[0] if isinstance(out, tuple) else out
