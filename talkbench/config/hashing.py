"""A run's identity and its hashes: a compatibility promise.

Runs are matched by their ``talkbench.config_hash`` tag (leaderboards group seeds by it) and
checkpoints are resumed only by a config with the same training fingerprint, so every hash this
module computed keeps its value: ``tests/test_config_hash_pins.py`` pins them for every shipped
preset. A change that must alter them bumps :data:`SCHEME` and keeps the old scheme computable for
the configs it made, as scheme 1 (talkbench 0.1.0) is kept here for its saved configs.

The identity covers only the settings that differ from the schema's defaults and that change
results, so it survives new fields with neutral defaults.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .validation import dataclass_of, type_hints

# 1: talkbench 0.1.0 (the whole saved config dict but the seed; kept for its configs, see legacy_hashes)
# 2: method + the settings that differ from the schema's defaults (identity), sha256, 16 hex digits
SCHEME = 2
DIGITS = 16  # hex digits of sha256 kept in a hash

# Left out of a run's identity because they do not change its results: the seed (runs that differ
# only by seed repeat one experiment), the preset's name (its values count, not its label), where it
# ran (device) and where the data lives (the logged dataset digest identifies the data), speed and
# bookkeeping (loader workers, the audio cache, log and checkpoint frequency) and which artifacts
# are kept (rendered videos, saved predictions). A method's Config may leave out more of its own
# fields with ``field(..., metadata={"identity": False})``.
NOT_IDENTITY = (
    "seed",
    "preset",
    "device",
    "dataset.root",
    "dataset.options.audio_cache_mb",
    "train.num_workers",
    "train.log_every",
    "train.checkpoint_every",
    "eval.render_clips",
    "eval.save_predictions",
    "eval.register",
)
OPTIONS = "dataset.options."  # a dataset option's dotted key (identity, params): one key per option
LEGACY_SYNTHTALK_OPTIONS = ("preset", "seed", "style_coupling")  # dataset.* keys of talkbench 0.1.0


def identity(run) -> dict[str, Any]:
    """Dotted key -> canonical value of each setting of ``run`` (a RunConfig) that differs from the
    schema's defaults (dataclass defaults; the loader's defaults for dataset options), without
    :data:`NOT_IDENTITY` and the method fields marked ``metadata={"identity": False}``."""
    defaults = _leaf_defaults(run)
    skip = (*NOT_IDENTITY, *_marked_out(run))
    out: dict[str, Any] = {}
    for key, value in _leaves(run):
        if any(key == s or key.startswith(f"{s}.") for s in skip):
            continue
        value = _canon(value)
        if key in defaults and _canon(defaults[key]) == value:
            continue
        out[key] = value
    return out


def config_hash(run) -> str:
    """Method + :func:`identity` (so not the seed, device, data root, ...)."""
    return _digest([run.method, identity(run)])


def training_fingerprint(run) -> str:
    """The identity without the evaluation settings, plus the seed: what a checkpoint must match."""
    training = {k: v for k, v in identity(run).items() if not k.startswith("eval.")}
    return _digest([run.method, run.seed, training])


def _digest(payload: Any) -> str:
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:DIGITS]


def _leaves(run) -> list[tuple[str, Any]]:
    """(dotted key, value) of every setting; dataclass sections descended, other values are leaves,
    dataset options one leaf each (absent ones are the loader's defaults)."""
    out: list[tuple[str, Any]] = []

    def rec(prefix: str, obj: Any) -> None:
        for f in dataclasses.fields(obj):
            if not f.init or (obj is run and f.name == "method_config"):
                continue
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                rec(f"{prefix}{f.name}.", value)
            else:
                out.append((f"{prefix}{f.name}", value))

    rec("", run)
    out = [(k, v) for k, v in out if k != "dataset.options"]
    out += [(f"{OPTIONS}{k}", v) for k, v in run.dataset.options.items()]
    if run.method_config is not None and dataclasses.is_dataclass(run.method_config):
        rec(f"{run.method}.", run.method_config)
    return out


def _leaf_defaults(run) -> dict[str, Any]:
    """Dotted key -> the schema's default (fields without a default have none: always in the identity)."""
    out: dict[str, Any] = {}

    def rec(prefix: str, cls: type) -> None:
        for f in dataclasses.fields(cls):
            if not f.init or (cls is type(run) and f.name == "method_config"):
                continue
            if f.default is not dataclasses.MISSING:
                value = f.default
            elif f.default_factory is not dataclasses.MISSING:
                value = f.default_factory()
            else:
                continue
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                rec(f"{prefix}{f.name}.", type(value))
                # a default instance may differ from its class's defaults: take the instance's values
                out.update({f"{prefix}{f.name}.{k}": v for k, v in _instance_leaves(value)})
            else:
                out[f"{prefix}{f.name}"] = value

    rec("", type(run))
    from talkbench.datasets.registry import option_defaults

    for member in reversed(run.dataset.members):  # a mixture: its members' (the first one's first)
        out.update({f"{OPTIONS}{k}": v for k, v in option_defaults(member).items()})
    if run.method_config is not None and dataclasses.is_dataclass(run.method_config):
        rec(f"{run.method}.", type(run.method_config))
    return out


def _instance_leaves(obj: Any) -> list[tuple[str, Any]]:
    out = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            out += [(f"{f.name}.{k}", v) for k, v in _instance_leaves(value)]
        else:
            out.append((f.name, value))
    return out


def _marked_out(run) -> list[str]:
    """Method fields declared ``field(..., metadata={"identity": False})``."""
    out: list[str] = []

    def rec(prefix: str, cls: type) -> None:
        for f in dataclasses.fields(cls):
            if f.metadata.get("identity", True) is False:
                out.append(f"{prefix}{f.name}")
            sub = dataclass_of(type_hints(cls).get(f.name))
            if sub is not None:
                rec(f"{prefix}{f.name}.", sub)

    if run.method_config is not None and dataclasses.is_dataclass(run.method_config):
        rec(f"{run.method}.", type(run.method_config))
    return out


def _canon(value: Any) -> Any:
    """JSON-stable form: tuples as lists, paths as strings, integral floats as ints (1.0 == 1)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, int):
        return value
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _canon(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _canon(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple):
        return [_canon(v) for v in value]
    return str(value)


# -- scheme 1: talkbench 0.1.0 ---------------------------------------------------------------------
def is_0_1_0(data: Mapping[str, Any]) -> bool:
    """Saved by talkbench 0.1.0: its dataset section held the SynthTalk options (and no 'options')."""
    ds = data.get("dataset")
    return isinstance(ds, Mapping) and "options" not in ds and any(k in ds for k in LEGACY_SYNTHTALK_OPTIONS)


def hashes_0_1_0(data: Mapping[str, Any]) -> dict[str, str]:
    """0.1.0's config_hash (the whole saved dict but the seed) and engine training fingerprint."""

    def digest(d: Mapping[str, Any]) -> str:
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:DIGITS]

    config = {k: v for k, v in data.items() if k != "seed"}
    training = {k: v for k, v in data.items() if k not in ("device", "eval", "preset")}
    if isinstance(training.get("train"), Mapping):
        drop = ("num_workers", "log_every", "checkpoint_every")
        training["train"] = {k: v for k, v in training["train"].items() if k not in drop}
    return {"config_hash": digest(config), "fingerprint": digest(training)}
