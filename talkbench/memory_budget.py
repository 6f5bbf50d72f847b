"""Will a run fit in memory? Rough estimates checked before anything is allocated.

A size typed by mistake (``memorytalker.memory_slots=1e11``) used to fail at allocation with a
traceback, or worse be killed by the OS minutes later (``feature_dim=1e8``). Here the method is built
on PyTorch's meta device (shapes only, no storage), its parameters counted, its activations for one
training batch estimated, and the total compared with the memory of the device the run will use.

The estimate is deliberately rough and errs low, so that it refuses only runs that cannot fit:

* training state: 16 bytes per parameter (fp32 weights, gradients and Adam's two moments), 4 when
  no stage trains;
* activations: for one batch of the largest training batch size x :data:`ACTIVATION_SECONDS` of motion
  frames, every Linear/Conv/Embedding output width and every attention map row (heads x frames) of
  each frame, in fp32, counted twice (kept for backward, then its gradient). Audio-rate layers are
  counted at the motion rate, so audio encoders are underestimated.

Bootstrap resampling (confidence intervals) needs ``BOOTSTRAP_BYTES_PER_DRAW`` bytes per
(resample, clip): the draws (int64), the weights (float64) and one product.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from talkbench.errors import ConfigError

log = logging.getLogger(__name__)

TRAIN_BYTES_PER_PARAM = 16  # fp32 weight + gradient + Adam exp_avg + exp_avg_sq
INFER_BYTES_PER_PARAM = 4
ACTIVATION_SECONDS = 10.0  # a long training clip (VOCASET/BIWI sentences last 3-5 s)
BOOTSTRAP_BYTES_PER_DRAW = 24  # (n_boot, n_clips) int64 draws, float64 weights, one product


@dataclass
class Estimate:
    parameters: int
    parameter_bytes: int  # the fp32 weights alone
    activation_bytes: int  # one training batch (see the module docstring)
    training_bytes: int  # training state + activations
    batch_size: int


def available_bytes(device: str) -> tuple[int, str]:
    """Free memory of the run's device in bytes and how to name it in a message."""
    if device.startswith("cuda"):
        import torch

        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free), f"free CUDA memory on {device}"
    import psutil

    return int(psutil.virtual_memory().available), "memory available"


def _shapes_only(method_config):
    """The method's config with its speech encoder built untrained: the sizes are the same, and no
    pretrained checkpoint is read from disk only to be copied onto the meta device."""
    import copy

    config = copy.deepcopy(method_config)
    audio = getattr(config, "audio", None)
    if isinstance(audio, dict) and "pretrained" in audio:  # CodeTalker keeps a plain mapping
        audio["pretrained"] = False
    elif hasattr(audio, "pretrained"):
        audio.pretrained = False
    return config


def estimate(cfg, spec) -> Estimate:
    """Parameters and memory of ``cfg``'s method for ``spec``, built on the meta device (no storage)."""
    import torch

    from talkbench.methods.mixture import build
    from talkbench.registry import METHODS

    cls = METHODS.get(cfg.method)
    with torch.device("meta"):
        method = build(cls, _shapes_only(cfg.method_config), spec)  # a mixture's too
    n_params = sum(p.numel() for p in method.parameters())
    try:
        stages = list(method.stages())
    except Exception:  # stages may look at data; a batch of one is the low estimate
        stages = []
    training = [s for s in stages if s.epochs > 0]
    batch = max((s.batch_size for s in training), default=1)
    frames = max(1, int(ACTIVATION_SECONDS * spec.fps))
    per_frame = 0
    for module in method.modules():
        if isinstance(module, torch.nn.Linear):
            per_frame += module.out_features
        elif isinstance(module, torch.nn.modules.conv._ConvNd):
            per_frame += module.out_channels
        elif isinstance(module, torch.nn.Embedding):
            per_frame += module.embedding_dim
        elif isinstance(module, torch.nn.MultiheadAttention):
            per_frame += module.num_heads * frames  # one attention-map row per head and frame
    act = 2 * 4 * per_frame * frames * batch
    state = (TRAIN_BYTES_PER_PARAM if training else INFER_BYTES_PER_PARAM) * n_params
    return Estimate(n_params, 4 * n_params, act, state + act, batch)


def check_model(cfg, spec, device: str) -> Estimate | None:
    """ConfigError with the numbers when the run's method cannot fit the device's memory.

    None when the method cannot be built on the meta device (the check is then skipped: building it
    for real reports the problem, e.g. a setting its constructor refuses)."""
    try:
        est = estimate(cfg, spec)
    except Exception as exc:
        if "overflow" in str(exc):  # a tensor of more than 2**63 elements (1e11 x 1e11)
            avail, where = available_bytes(device)
            raise ConfigError(
                f"{_culprits(cfg)}: the model needs a tensor of more than 2**63 elements for its "
                f"parameters ({' '.join(str(exc).split())}); this machine has {human_bytes(avail)} {where}"
            ) from None
        # a constructor that reads tensor values, a missing pretrained encoder..: the real build says why
        log.debug("memory estimate of %s skipped: %s", cfg.method, exc)
        return None
    avail, where = available_bytes(device)
    if est.training_bytes <= avail:
        return est
    raise ConfigError(
        f"{_culprits(cfg)}: the model needs ~{human_bytes(est.parameter_bytes)} for its parameters "
        f"({est.parameters:.3g} parameters) and ~{human_bytes(est.training_bytes)} to train (with gradients, "
        f"optimiser state and ~{human_bytes(est.activation_bytes)} of activations for a batch of "
        f"{est.batch_size} x {ACTIVATION_SECONDS:g} s); this machine has {human_bytes(avail)} {where}"
    )


def check_bootstrap(
    n_boot: int, seed: int, n_clips: int | None = None, n_boot_key: str = "--n-boot", seed_key: str = "--seed"
) -> None:
    """``n_boot`` and ``seed`` are usable; with ``n_clips``, the resampling weights fit in memory
    (at most half the available memory). ``*_key`` name the settings in the messages."""
    if n_boot < 0:
        raise ConfigError(
            f"{n_boot_key} {n_boot}: expected 0 (no confidence intervals) or a positive number of resamples"
        )
    if seed < 0:
        raise ConfigError(f"{seed_key} {seed}: expected a non-negative integer")
    if n_clips:
        import psutil

        need = BOOTSTRAP_BYTES_PER_DRAW * n_boot * n_clips
        avail = psutil.virtual_memory().available
        if need > avail // 2:
            raise ConfigError(
                f"{n_boot_key} {n_boot}: resampling {n_clips} clips needs about {need / 2**30:.1f} GiB, "
                f"more than half of the {avail / 2**30:.1f} GiB available; use at most "
                f"{max(1, avail // 2 // (BOOTSTRAP_BYTES_PER_DRAW * n_clips))}"
            )


def check_run(cfg, spec, device: str, n_eval_clips: int) -> None:
    """Everything memory-bound about a run, before any tensor is allocated or any run exists."""
    check_bootstrap(cfg.eval.n_boot, cfg.seed, n_eval_clips, n_boot_key="eval.n_boot", seed_key="seed")
    check_model(cfg, spec, device)


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.3g} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _culprits(cfg) -> str:
    """The integer sizes of the method that exceed their defaults most, as ``key=value`` (the likely
    typo), else the method's name."""
    found: list[tuple[float, str]] = []

    def walk(prefix: str, obj: Any, default: Any) -> None:
        for f in dataclasses.fields(obj):
            value, base = getattr(obj, f.name), getattr(default, f.name, None)
            if dataclasses.is_dataclass(value) and dataclasses.is_dataclass(base):
                walk(f"{prefix}{f.name}.", value, base)
            elif type(value) is int and type(base) is int and value > max(base, 1):
                found.append((value / max(base, 1), f"{prefix}{f.name}={value}"))

    mc = cfg.method_config
    if mc is not None and dataclasses.is_dataclass(mc):
        try:
            walk(f"{cfg.method}.", mc, type(mc)())
        except TypeError:  # a Config without defaults: nothing to compare with
            pass
    found.sort(reverse=True)
    top = found[0][0] if found else 0.0
    keys = [k for ratio, k in found[:3] if ratio >= max(2.0, top / 100)]  # the outliers, not the noise
    return ", ".join(keys) or f"method {cfg.method} with these settings"
