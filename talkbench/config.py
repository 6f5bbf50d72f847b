"""Typed run configuration: dataclasses, YAML presets, ``--config FILE`` and dotted ``--set`` overrides.

Resolution order (later wins): dataclass defaults < preset file < ``--config`` file < ``--set a.b=c``
< explicit arguments (dataset, seed, device, data root). Every key of every layer is checked against
the schema: an unknown key is a :class:`ConfigError` with a "did you mean", a value of the wrong type
is a :class:`ConfigError` naming the key and where it came from. A method's hyperparameters live
under the key of its name (``memorytalker.memory_slots=16``) and come from ``METHODS.get(name).Config``.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from talkbench.errors import ConfigError

PRESET_DIR = Path(__file__).resolve().parent / "presets"
DEFAULT_DATASET = "synthtalk"


@dataclass
class DatasetConfig:
    """Which dataset to load and how (``root`` None = the cache / the generated SynthTalk).

    ``options`` are the keyword options of the dataset's loader (``talkbench.datasets.DATASETS``),
    checked against its signature: SynthTalk ``preset``/``seed``/``style_coupling``, BIWI
    ``preprocessing``, ... Absent options take the loader's defaults. ``dataset.<option>`` is accepted
    as a shorthand for ``dataset.options.<option>`` (``--set dataset.style_coupling=0``, and configs
    saved by talkbench 0.1.0, which kept the SynthTalk options there).
    """

    name: str = DEFAULT_DATASET
    root: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def load(self):
        """The loaded dataset (``talkbench.datasets.load_dataset(name, root=root, **options)``)."""
        from talkbench.datasets import load_dataset

        return load_dataset(self.name, root=self.root, **self.options)

    def effective_options(self) -> dict[str, Any]:
        """The loader's defaults overridden by ``options``: what the loader will actually use."""
        from talkbench.datasets.registry import option_defaults

        return {**option_defaults(self.name), **self.options}


@dataclass
class TrainConfig:
    """Generic engine settings; per-stage hyperparameters (epochs, lr, ...) live in the method config."""

    num_workers: int = 0
    checkpoint_every: int = 5  # epochs between periodic checkpoints (0: stage ends only)
    log_every: int = 1  # epochs between metric logs (stage ends are always logged)
    selection: Literal["val", "last"] | None = None  # None: each stage's own rule


@dataclass
class EvalConfig:
    render_clips: int = 2  # how many test clips to render as videos (0: none)
    save_predictions: bool = True
    n_boot: int = 1000  # bootstrap resamples for confidence intervals


@dataclass
class RunConfig:
    """One fully resolved run. ``method_config`` is the method's own Config dataclass instance."""

    method: str
    preset: str
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    method_config: Any = None

    # -- views ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML/JSON safe); the method config sits under the method's name."""
        out: dict[str, Any] = {
            "method": self.method,
            "preset": self.preset,
            "seed": self.seed,
            "device": self.device,
            "precision": self.precision,
            "dataset": _plain(self.dataset),
            "train": _plain(self.train),
            "eval": _plain(self.eval),
        }
        if self.method_config is not None:
            out[self.method] = _plain(self.method_config)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "config dict") -> RunConfig:
        """Rebuild (and re-validate) a config from ``to_dict`` output, e.g. a saved ``config.yaml``."""
        if not isinstance(data, Mapping) or "method" not in data:
            raise ConfigError(f"{source}: expected a mapping with a 'method' key")
        builder = _Builder(str(data["method"]), str(data.get("preset", "")))
        builder.saved = True
        builder.apply(data, source)
        return builder.build()

    def flatten(self) -> dict[str, Any]:
        """Dotted keys -> scalar values (lists/tuples as strings), e.g. for MLflow params."""
        flat: dict[str, Any] = {}

        def rec(prefix: str, value: Any) -> None:
            if isinstance(value, Mapping) and value:
                for k, v in value.items():
                    rec(f"{prefix}.{k}" if prefix else str(k), v)
            elif isinstance(value, list | tuple):
                flat[prefix] = json.dumps(value)
            elif isinstance(value, Mapping):
                flat[prefix] = "{}"
            else:
                flat[prefix] = value

        rec("", self.to_dict())
        return flat

    def config_hash(self) -> str:
        """Stable hash of the resolved config without the seed: runs differing only by seed share it."""
        d = self.to_dict()
        d.pop("seed")
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> Path:
        """Write the resolved config as YAML (the artifact saved with every run)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_yaml())
        return path

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        return cls.from_dict(_read_yaml(Path(path)), source=str(path))


# -- public entry point -------------------------------------------------------------------------
def load_config(
    method: str,
    dataset: str | None = None,
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: Iterable[str] = (),
    seed: int | None = None,
    device: str | None = None,
    data_root: str | Path | None = None,
) -> RunConfig:
    """Resolve a run's configuration (see the module docstring for the order of layers)."""
    overrides = list(overrides)
    parsed_overrides = [_parse_override(o) for o in overrides]
    file_data = _read_yaml(Path(config_file)) if config_file is not None else None

    # the dataset picks the preset file, so settle it first: argument > --set > --config > default
    ds = dataset
    if ds is None:
        for key, value in reversed(parsed_overrides):
            if key == "dataset.name":
                ds = str(value)
                break
    if ds is None and file_data is not None:
        ds = _dig(file_data, ("dataset", "name"))
    ds = str(ds) if ds is not None else DEFAULT_DATASET

    explicit_preset = preset is not None
    preset_name = preset if explicit_preset else default_preset(ds)
    builder = _Builder(method, preset_name)
    preset_path = find_preset(method, preset_name, ds)
    if preset_path is None and explicit_preset:
        known = available_presets(method)
        close = difflib.get_close_matches(preset_name, known, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"unknown preset '{preset_name}' for method '{method}' (dataset '{ds}').{hint} "
            f"Available: {', '.join(known) or 'none'}"
        )
    if preset_path is not None:
        builder.apply(_read_yaml(preset_path), f"preset {preset_path}")
    if file_data is not None:
        builder.apply(file_data, f"config file {config_file}")
    for text, (key, value) in zip(overrides, parsed_overrides):
        builder.set(key, value, f"--set {text}")
    builder.set("dataset.name", ds, "--dataset")
    if seed is not None:
        builder.set("seed", seed, "--seed")
    if device is not None:
        builder.set("device", device, "--device")
    if data_root is not None:
        builder.set("dataset.root", str(data_root), "--data-root")
    return builder.build()


def default_preset(dataset: str) -> str:
    return "synthtalk" if dataset == DEFAULT_DATASET else "paper"


def find_preset(method: str, preset: str, dataset: str) -> Path | None:
    """``presets/<method>/<preset>-<dataset>.yaml`` wins over ``presets/<method>/<preset>.yaml``."""
    base = PRESET_DIR / method
    for candidate in (base / f"{preset}-{dataset}.yaml", base / f"{preset}.yaml"):
        if candidate.is_file():
            return candidate
    return None


def available_presets(method: str) -> list[str]:
    """File stems under ``presets/<method>/`` (``paper``, ``paper-biwi``, ``tiny``, ...)."""
    base = PRESET_DIR / method
    return sorted(p.stem for p in base.glob("*.yaml")) if base.is_dir() else []


# -- building and validation ---------------------------------------------------------------------
_TOP_LEVEL = {f.name for f in dataclasses.fields(RunConfig)} - {"method_config"}
_DATASET_FIELDS = {f.name for f in dataclasses.fields(DatasetConfig)}
_LEGACY_SYNTHTALK_OPTIONS = ("preset", "seed", "style_coupling")  # dataset.* keys of talkbench 0.1.0


def _type_hints_of(fn: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # an unresolvable annotation: accept any value for it
        return {}


class _Builder:
    """Accumulates validated (dotted key, value) settings, then builds the dataclasses."""

    def __init__(self, method: str, preset: str):
        from talkbench.registry import METHODS  # late: the registry imports method modules lazily

        self.method = method
        self.method_cls = METHODS.get(method)  # unknown method -> ConfigError with did-you-mean
        cfg_cls = getattr(self.method_cls, "Config", None)
        self.method_config_cls = cfg_cls if dataclasses.is_dataclass(cfg_cls) else None
        self.values: dict[str, Any] = {"method": method, "preset": preset}
        self.sources: dict[str, str] = {}
        self.saved = False  # a saved config: drop 0.1.0's SynthTalk keys that another loader lacks
        self.schema: dict[str, Any] = _type_hints(RunConfig)
        self.schema.pop("method_config")
        if self.method_config_cls is not None:
            if method in _TOP_LEVEL:
                raise ConfigError(f"method name '{method}' clashes with the config section '{method}'")
            self.schema[method] = self.method_config_cls

    def apply(self, data: Any, source: str) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: expected a mapping of settings, got {type(data).__name__}")
        for key, value in _flatten_layer(data, self.schema):
            self.set(key, value, source)

    def set(self, key: str, value: Any, source: str) -> None:
        parts = key.split(".")
        if parts[0] == "method":
            if len(parts) == 1 and value == self.method:
                return
            raise ConfigError(
                f"{source}: 'method' cannot be changed here (this run's method is '{self.method}'; "
                f"its settings go under '{self.method}.')"
            )
        if parts[0] == "dataset" and len(parts) > 1 and parts[1] not in _DATASET_FIELDS:
            parts = ["dataset", "options", *parts[1:]]  # shorthand: dataset.X = dataset.options.X
            key = ".".join(parts)
        if key == "dataset.options" and isinstance(value, Mapping):
            for k, v in value.items():  # one entry per option, so each remembers its layer
                self.set(f"dataset.options.{k}", v, source)
            return
        ann = _resolve_key(self.schema, parts, source, self.method)
        self.values[key] = _coerce(value, ann, key, source)
        self.sources[key] = source

    def _check_dataset_options(self) -> None:
        """Options against the loader's signature (did-you-mean) and its annotations."""
        from talkbench.datasets.registry import DATASETS, loader_options

        name = self.values.get("dataset.name", DEFAULT_DATASET)
        prefix = "dataset.options."
        allowed = loader_options(name)
        hints = _type_hints_of(DATASETS.get(name))
        for key in [k for k in self.values if k.startswith(prefix)]:
            option, source = key[len(prefix) :], self.sources.get(key, "config")
            if option not in allowed and self.saved and option in _LEGACY_SYNTHTALK_OPTIONS:
                del self.values[key]  # 0.1.0 saved them for every dataset; only SynthTalk read them
                continue
            if option not in allowed:
                close = difflib.get_close_matches(option, list(allowed), n=3, cutoff=0.6)
                hint = f" Did you mean: {', '.join(prefix + c for c in close)}?" if close else ""
                raise ConfigError(
                    f"{source}: unknown option '{option}' for dataset '{name}' ('{key}').{hint} "
                    f"Options of '{name}': {', '.join(allowed) or 'none'}"
                )
            self.values[key] = _coerce(self.values[key], hints.get(option, Any), key, source)

    def build(self) -> RunConfig:
        self._check_dataset_options()
        nested: dict[str, Any] = {}
        # shorter keys first so that 'a.b: {..}' then 'a.b.c' merge in the right order
        items = copy.deepcopy(self.values)
        for key, value in sorted(items.items(), key=lambda kv: kv[0].count(".")):
            node = nested
            *head, last = key.split(".")
            for p in head:
                node = node.setdefault(p, {})
            if isinstance(value, Mapping) and isinstance(node.get(last), Mapping):
                node[last] = {**node[last], **value}
            else:
                node[last] = value
        method_section = nested.pop(self.method, {}) if self.method_config_cls else {}
        try:
            run = RunConfig(
                method=nested.pop("method"),
                preset=nested.pop("preset"),
                dataset=_construct(DatasetConfig, nested.pop("dataset", {})),
                train=_construct(TrainConfig, nested.pop("train", {})),
                eval=_construct(EvalConfig, nested.pop("eval", {})),
                method_config=(
                    _construct(self.method_config_cls, method_section) if self.method_config_cls else None
                ),
                **nested,
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid configuration for method '{self.method}': {exc}") from exc
        return run


def _construct(cls: type, values: Mapping[str, Any]) -> Any:
    """Instantiate a (possibly nested) dataclass from validated values, defaults elsewhere."""
    hints = _type_hints(cls)
    kwargs = {}
    for name, value in values.items():
        sub = _dataclass_of(hints.get(name))
        if sub is not None and isinstance(value, Mapping):
            value = _construct(sub, value)
        kwargs[name] = value
    return cls(**kwargs)


def _flatten_layer(data: Mapping[str, Any], schema: Mapping[str, Any], prefix: str = ""):
    """Flatten a YAML mapping into dotted keys, descending into dataclass and dict sections."""
    for raw_key, value in data.items():
        key = str(raw_key)
        full = f"{prefix}{key}"
        ann = schema.get(key) if schema is not None else None
        sub = _dataclass_of(ann)
        if isinstance(value, Mapping) and value and sub is not None:
            yield from _flatten_layer(value, _type_hints(sub) if sub else None, f"{full}.")
        else:
            yield full, value


def _resolve_key(schema: Mapping[str, Any], parts: list[str], source: str, method: str) -> Any:
    """Walk a dotted key through the schema; return the leaf annotation or raise a did-you-mean."""
    level: Mapping[str, Any] | None = schema
    ann: Any = None
    for i, part in enumerate(parts):
        if level is None:  # below a free-form dict field: anything goes
            return Any
        if part not in level:
            where = ".".join(parts[:i]) or "the top level"
            close = difflib.get_close_matches(part, list(level), n=3, cutoff=0.6)
            hint = f" Did you mean: {', '.join('.'.join([*parts[:i], c]) for c in close)}?" if close else ""
            extra = ""
            if i == 0 and part not in _TOP_LEVEL and not close:
                extra = f" (settings of method '{method}' go under '{method}.')"
            raise ConfigError(
                f"{source}: unknown config key '{'.'.join(parts)}' ('{part}' is not a field of {where})."
                f"{hint}{extra} Valid keys here: {', '.join(sorted(level))}"
            )
        ann = level[part]
        sub = _dataclass_of(ann)
        if sub is not None:
            level = _type_hints(sub)
        elif _is_mapping_type(ann):
            level = None
        elif i < len(parts) - 1:
            raise ConfigError(f"{source}: '{'.'.join(parts[: i + 1])}' is a value, not a section")
    return ann


def _coerce(value: Any, ann: Any, key: str, source: str) -> Any:
    """Check/convert ``value`` against a type annotation; ConfigError naming the key if it does not fit."""
    try:
        return _convert(value, ann)
    except _Mismatch as exc:
        raise ConfigError(f"{source}: '{key}' expects {_describe(ann)}, got {value!r} ({exc})") from None


class _Mismatch(Exception):
    pass


def _convert(value: Any, ann: Any) -> Any:
    if ann is Any or ann is None or ann is typing.Any:
        return value
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if origin is typing.Union or origin is types.UnionType:
        if value is None:
            if type(None) in args:
                return None
            raise _Mismatch("null is not allowed")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg)
            except _Mismatch as exc:
                errors.append(str(exc))
        raise _Mismatch("; ".join(errors))
    if origin is Literal:
        if value in args:
            return value
        raise _Mismatch(f"choose one of {', '.join(map(repr, args))}")
    if value is None:
        raise _Mismatch("null is not allowed")
    sub = _dataclass_of(ann)
    if sub is not None:
        if isinstance(value, sub):
            return value
        if not isinstance(value, Mapping):
            raise _Mismatch("expected a mapping")
        hints = _type_hints(sub)
        out = {}
        for k, v in value.items():
            if k not in hints:
                raise _Mismatch(f"unknown field '{k}'")
            out[k] = _convert(v, hints[k])
        return out
    if ann is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch("expected true or false")
    if ann is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise _Mismatch("expected an integer")
    if ann is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads '1e-4' as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise _Mismatch("expected a number")
    if ann is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise _Mismatch("expected a string")
    if ann is Path:
        if isinstance(value, str | Path):
            return str(value)
        raise _Mismatch("expected a path")
    if origin in (tuple, list) or ann in (tuple, list):
        seq = list(value) if isinstance(value, list | tuple) else [value]
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(seq) != len(args):
                raise _Mismatch(f"expected {len(args)} items")
            items = [_convert(v, a) for v, a in zip(seq, args)]
        else:
            item_ann = args[0] if args else Any
            items = [_convert(v, item_ann) for v in seq]
        return tuple(items) if (origin is tuple or ann is tuple) else items
    if _is_mapping_type(ann):
        if isinstance(value, Mapping):
            return dict(value)
        raise _Mismatch("expected a mapping")
    if isinstance(ann, type):
        if isinstance(value, ann):
            return value
        raise _Mismatch(f"expected {ann.__name__}")
    return value


def _describe(ann: Any) -> str:
    origin = typing.get_origin(ann)
    if origin is Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(ann)))
    if origin is typing.Union or origin is types.UnionType:
        return " or ".join(_describe(a) for a in typing.get_args(ann))
    if ann is type(None):
        return "null"
    if isinstance(ann, type) and origin is None:
        return ann.__name__
    return str(ann).replace("typing.", "")


def _dataclass_of(ann: Any) -> type | None:
    """The dataclass behind an annotation (``X`` or ``X | None``), else None."""
    if ann is None:
        return None
    if isinstance(ann, type) and dataclasses.is_dataclass(ann):
        return ann
    origin = typing.get_origin(ann)
    if origin is typing.Union or origin is types.UnionType:
        for arg in typing.get_args(ann):
            if isinstance(arg, type) and dataclasses.is_dataclass(arg):
                return arg
    return None


def _is_mapping_type(ann: Any) -> bool:
    return ann in (dict, Mapping) or typing.get_origin(ann) in (dict, Mapping)


_HINTS: dict[type, dict[str, Any]] = {}


def _type_hints(cls: type) -> dict[str, Any]:
    """Field name -> resolved annotation (string annotations resolved; unresolvable ones = Any)."""
    if cls not in _HINTS:
        try:
            hints = typing.get_type_hints(cls)
        except Exception:  # a forward reference we cannot resolve: accept any value there
            hints = {}
        _HINTS[cls] = {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls)}
    return dict(_HINTS[cls])


def _plain(obj: Any) -> Any:
    """Dataclasses/tuples/Paths -> dicts/lists/strings, for YAML and JSON."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _parse_override(text: str) -> tuple[str, Any]:
    """``a.b=c`` -> ("a.b", YAML-parsed c)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {text}: expected KEY=VALUE, e.g. --set train.checkpoint_every=10")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        reason = " ".join(str(exc).split())
        raise ConfigError(f"--set {text}: cannot parse the value as YAML ({reason})") from None
    return key, value


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {' '.join(str(exc).split())}") from None
    return {} if data is None else data


def _dig(data: Any, keys: tuple[str, ...]) -> Any:
    for k in keys:
        if isinstance(data, Mapping) and k in data:
            data = data[k]
        elif isinstance(data, Mapping) and ".".join(keys) in data:
            return data[".".join(keys)]
        else:
            return None
    return data
