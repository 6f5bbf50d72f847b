"""Typed run configuration: dataclasses, YAML presets, ``--config FILE`` and dotted ``--set`` overrides.

Resolution order (later wins): dataclass defaults < preset file (after the files it inherits from
with ``base: <file stem>``) < ``--config`` file < ``--set a.b=c`` < explicit arguments (dataset,
seed, device, data root). Every key of every layer is checked against the schema: an unknown key is
a :class:`ConfigError` with a "did you mean"; values are validated by pydantic v2 against the
dataclasses' annotations, and a value of the wrong type is a :class:`ConfigError` naming the key and
the layer it came from. A method's hyperparameters live under the key of its name
(``memorytalker.memory_slots=16``) and come from ``METHODS.get(name).Config``; the dataset loader's
options under ``dataset.options`` (checked against the loader's signature; an option set by a preset
file that this dataset's loader lacks is skipped: one preset may serve several datasets).

A run's identity (:meth:`RunConfig.config_hash`) covers only the settings that differ from the
schema's defaults and that change results, so it survives new fields with neutral defaults.
"""

from __future__ import annotations

import dataclasses
import decimal
import difflib
import functools
import hashlib
import json
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BeforeValidator, ConfigDict, Field, Strict, TypeAdapter, ValidationError

from talkbench.errors import ConfigError

PRESET_DIR = Path(__file__).resolve().parent / "presets"
DEFAULT_DATASET = "synthtalk"
_PRESET_SOURCE = "preset "  # how a preset file's layer is named in errors
BASE_KEY = "base"  # first line of a preset file: ``base: paper-vocaset`` merges that file first

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
    n_boot: Annotated[int, Field(ge=0)] = 1000  # bootstrap resamples for confidence intervals (0: none)
    # the split predicted and scored; None: the dataset's published test split (DatasetSpec.eval_split,
    # BIWI's Test-A); checked against the dataset's splits before a run exists (split_for)
    split: str | None = None
    register: str | None = None  # Model Registry name for the run's MLflow model (bench run --register)


    def split_for(self, spec) -> str:
        """The evaluation split of this dataset: ``split`` or the dataset's default, if it has it."""
        name = self.split if self.split is not None else getattr(spec, "eval_split", "test")
        if name not in spec.splits:
            raise ConfigError(
                f"eval.split '{name}': dataset {spec.name} has no such split; "
                f"available: {', '.join(spec.splits)}"
            )
        return name


# numpy's generators take seeds in [0, 2**32 - 1]; checked here, not at the bootstrap after training
SEED_MAX = 2**32 - 1
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]
# any integer setting fits int64 (PyTorch sizes, numpy): bigger ones are typos, refused by name
_INT64 = (-(2**63), 2**63 - 1)


@dataclass
class RunConfig:
    """One fully resolved run. ``method_config`` is the method's own Config dataclass instance."""

    method: str
    preset: str
    seed: Seed = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    method_config: Any = None
    # hashes a talkbench 0.1.0 saved config had ({"config_hash", "fingerprint"}), for matching its runs
    legacy_hashes: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)

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
        """Rebuild (and re-validate) a config from ``to_dict`` output, e.g. a saved ``config.yaml``.

        Configs saved by talkbench 0.1.0 load too (their SynthTalk options sat at ``dataset.*``);
        their hashes of that version are kept in ``legacy_hashes``.
        """
        if not isinstance(data, Mapping) or "method" not in data:
            raise ConfigError(f"{source}: expected a mapping with a 'method' key")
        builder = _Builder(str(data["method"]), str(data.get("preset", "")))
        builder.saved = True
        builder.apply(data, source)
        run = builder.build()
        if _is_0_1_0(data):
            run.legacy_hashes = _hashes_0_1_0(data)
        return run

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

    def params(self) -> dict[str, Any]:
        """What a run logs as MLflow params: :meth:`flatten`, plus, for generated data (no root), the
        dataset options left at the loader's defaults, so runs that differ in one (style_coupling)
        show its value on both sides; with a root the options are not what made the data."""
        flat = self.flatten()
        if self.dataset.root is None:
            flat.pop("dataset.options", None)  # "{}" when nothing was set
            for key, value in self.dataset.effective_options().items():
                flat.setdefault(_OPTIONS + key, value)
        return flat

    # -- identity -------------------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        """Dotted key -> canonical value of each setting that differs from the schema's defaults
        (dataclass defaults; the loader's defaults for dataset options), without :data:`NOT_IDENTITY`
        and the method fields marked ``metadata={"identity": False}``."""
        defaults = _leaf_defaults(self)
        skip = (*NOT_IDENTITY, *_marked_out(self))
        out: dict[str, Any] = {}
        for key, value in _leaves(self):
            if any(key == s or key.startswith(f"{s}.") for s in skip):
                continue
            value = _canon(value)
            if key in defaults and _canon(defaults[key]) == value:
                continue
            out[key] = value
        return out

    def config_hash(self) -> str:
        """The run's identity as 16 hex digits: method + :meth:`identity` (so not the seed, device, data
        root, ...). Adding a schema field whose default keeps the old behaviour leaves it unchanged."""
        blob = json.dumps([self.method, self.identity()], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def training_fingerprint(self) -> str:
        """What a checkpoint must match to be resumed: the identity without the evaluation settings,
        plus the seed (device, workers, logging, evaluation may change between a run and its resume)."""
        training = {k: v for k, v in self.identity().items() if not k.startswith("eval.")}
        blob = json.dumps([self.method, self.seed, training], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def resumes(self, fingerprint: str) -> bool:
        """Whether a checkpoint with this training fingerprint continues this configuration (also one
        written by talkbench 0.1.0 for the 0.1.0 config this one was loaded from)."""
        return fingerprint in (self.training_fingerprint(), self.legacy_hashes.get("fingerprint"))

    def known_hashes(self) -> set[str]:
        """Hashes runs of this configuration may carry: today's and, for a 0.1.0 config, that version's."""
        return {self.config_hash(), *([self.legacy_hashes["config_hash"]] if self.legacy_hashes else [])}

    # -- files ----------------------------------------------------------------------------------
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
        for data, source in preset_layers(preset_path):
            builder.apply(data, source)
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
    return "synthtalk" if dataset.partition("-")[0] == DEFAULT_DATASET else "paper"  # its variants too


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


def preset_layers(path: Path, _seen: tuple[Path, ...] = ()) -> list[tuple[Any, str]]:
    """A preset file's layers, bases first: ``base: <stem>`` names another file of the same folder."""
    data = _read_yaml(path)
    source = f"{_PRESET_SOURCE}{path}"
    if not isinstance(data, Mapping) or BASE_KEY not in data:
        return [(data, source)]
    base = data[BASE_KEY]
    stems = sorted(p.stem for p in path.parent.glob("*.yaml") if p != path)
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{source}: '{BASE_KEY}' must name another preset file of {path.parent}")
    base_path = path.parent / f"{base}.yaml"
    if base_path == path or base_path in _seen:
        chain = " -> ".join(p.stem for p in (*_seen, path, base_path))
        raise ConfigError(f"{source}: '{BASE_KEY}: {base}' makes a cycle ({chain})")
    if not base_path.is_file():
        close = difflib.get_close_matches(base, stems, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"{source}: '{BASE_KEY}: {base}' names no preset file ({base_path} is missing).{hint} "
            f"Files here: {', '.join(stems) or 'none'}"
        )
    own = {k: v for k, v in data.items() if k != BASE_KEY}
    return [*preset_layers(base_path, (*_seen, path)), (own, source)]


# -- building and validation ---------------------------------------------------------------------
_SCHEMA_FIELDS = [f for f in dataclasses.fields(RunConfig) if f.init and f.name != "method_config"]
_TOP_LEVEL = {f.name for f in _SCHEMA_FIELDS}
_DATASET_FIELDS = {f.name for f in dataclasses.fields(DatasetConfig)}
_OPTIONS = "dataset.options."
_LEGACY_SYNTHTALK_OPTIONS = ("preset", "seed", "style_coupling")  # dataset.* keys of talkbench 0.1.0


def canonical_key(key: str) -> str:
    """The dotted key as runs log it: the shorthand ``dataset.X`` is ``dataset.options.X``."""
    parts = key.split(".")
    if parts[0] == "dataset" and len(parts) > 1 and parts[1] not in _DATASET_FIELDS:
        return _OPTIONS + ".".join(parts[1:])
    return key


class _Builder:
    """Accumulates (dotted key, value, layer) settings, then validates them and builds the dataclasses."""

    def __init__(self, method: str, preset: str):
        from talkbench.registry import METHODS  # late: the registry imports method modules lazily

        self.method = method
        self.method_cls = METHODS.get(method)  # unknown method -> ConfigError with did-you-mean
        cfg_cls = getattr(self.method_cls, "Config", None)
        self.method_config_cls = cfg_cls if dataclasses.is_dataclass(cfg_cls) else None
        self.values: dict[str, Any] = {"method": method, "preset": preset}
        self.sources: dict[str, str] = {}
        self.annotations: dict[str, Any] = {}
        self.shorthand: dict[str, str] = {}  # dataset.options.X -> the dataset.X it was given as
        self.saved = False  # a saved config: drop 0.1.0's SynthTalk keys that another loader lacks
        hints = _type_hints(RunConfig)
        self.schema: dict[str, Any] = {f.name: hints[f.name] for f in _SCHEMA_FIELDS}
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
        if canonical_key(key) != key:  # shorthand: dataset.X = dataset.options.X
            given, key = key, canonical_key(key)
            self.shorthand[key] = given
            parts = key.split(".")
        if key == "dataset.options" and isinstance(value, Mapping):
            for k, v in value.items():  # one entry per option, so each remembers its layer
                self.set(f"{_OPTIONS}{k}", v, source)
            return
        ann = _resolve_key(self.schema, parts, source, self.method)
        if _dataclass_of(ann) is not None and isinstance(value, Mapping):
            for k, v in value.items():  # a whole section as one value: each key checked on its own
                self.set(f"{key}.{k}", v, source)
            return
        self.values[key] = value
        self.sources[key] = source
        self.annotations[key] = ann

    def _check_dataset_options(self) -> None:
        """Options against the loader's signature (did-you-mean); their types from its annotations."""
        from talkbench.datasets.registry import DATASETS, loader_options

        name = self.values.get("dataset.name", DEFAULT_DATASET)
        allowed = loader_options(name)
        hints = _type_hints_of(DATASETS.get(name))
        for key in [k for k in self.values if k.startswith(_OPTIONS)]:
            option, source = key[len(_OPTIONS) :], self.sources.get(key, "config")
            if option not in allowed and (
                source.startswith(_PRESET_SOURCE) or (self.saved and option in _LEGACY_SYNTHTALK_OPTIONS)
            ):
                # a preset may serve several datasets (tiny.yaml's SynthTalk 'preset: tiny' on VOCASET);
                # 0.1.0 saved the SynthTalk options for every dataset, and only SynthTalk read them
                del self.values[key]
                continue
            if option not in allowed:
                given = self.shorthand.get(key, key)
                prefix = given[: len(given) - len(option)]
                names = [*allowed, *(_DATASET_FIELDS if prefix == "dataset." else ())]
                close = difflib.get_close_matches(option, names, n=3, cutoff=0.6)
                hint = f" Did you mean: {', '.join(prefix + c for c in close)}?" if close else ""
                raise ConfigError(
                    f"{source}: unknown config key '{given}' ('{option}' is not an option of dataset "
                    f"'{name}').{hint} Options of '{name}': {', '.join(allowed) or 'none'}"
                )
            self.annotations[key] = hints.get(option, Any)

    def build(self) -> RunConfig:
        self._check_dataset_options()
        for key, ann in self.annotations.items():
            if key in self.values:
                self.values[key] = _validate(self.values[key], ann, key, self.sources[key])
        nested = _nest(self.values)
        method_section = nested.pop(self.method, {}) if self.method_config_cls else {}
        run = RunConfig(
            method=nested.pop("method"),
            preset=nested.pop("preset"),
            dataset=self._construct(DatasetConfig, nested.pop("dataset", {}), "dataset"),
            train=self._construct(TrainConfig, nested.pop("train", {}), "train"),
            eval=self._construct(EvalConfig, nested.pop("eval", {}), "eval"),
            method_config=(
                self._construct(self.method_config_cls, method_section, self.method)
                if self.method_config_cls
                else None
            ),
            **nested,
        )
        return run

    def _construct(self, cls: type, values: Mapping[str, Any], prefix: str) -> Any:
        """The dataclass from validated values, defaults elsewhere (its __post_init__ checks run too)."""
        try:
            return _adapter(cls).validate_python(values)
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join([prefix, *(str(p) for p in err["loc"])])
            source = next(
                (self.sources[k] for k in (key, *_parents(key)) if k in self.sources), "configuration"
            )
            raise ConfigError(f"{source}: '{key}': {_reason(err)}") from None


def _validate(value: Any, ann: Any, key: str, source: str) -> Any:
    """Check/convert ``value`` with pydantic against ``ann``; ConfigError naming the key and layer."""
    if value is None and not _allows_none(ann):
        raise ConfigError(f"{source}: '{key}' expects {_describe(ann)}, got None (null is not allowed)")
    try:
        return _adapter(_config_type(ann)).validate_python(value)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        reason = f"{where}: {_reason(err)}" if where else _reason(err)
        raise ConfigError(f"{source}: '{key}' expects {_describe(ann)}, got {value!r} ({reason})") from None


def _reason(err: Mapping[str, Any]) -> str:
    return " ".join(str(err["msg"]).split())


@functools.cache
def _adapter(ann: Any) -> TypeAdapter:
    # numbers are fine where a string is expected (a YAML ``name: 123``); a config dict cannot be
    # given for a dataclass (it has its own), and those have no string fields to coerce at top level
    if isinstance(ann, type) and dataclasses.is_dataclass(ann):
        return TypeAdapter(ann)
    return TypeAdapter(ann, config=ConfigDict(coerce_numbers_to_str=True))


def _config_type(ann: Any) -> Any:
    """The annotation pydantic validates: booleans strict (``flag=1`` is a mistake, not True)."""
    if typing.get_origin(ann) is Annotated:  # bounds (Field(ge=..)) kept around the converted type
        base, *meta = typing.get_args(ann)
        if base is int:  # its own bounds replace the int64 one
            return Annotated[(int, BeforeValidator(_integral_text), *meta)]
        return Annotated[(_config_type(base), *meta)]
    if ann is bool:
        return Annotated[bool, Strict()]
    if ann is int:  # integral floats accepted (1e11, 1.0e+11: sizes are written so), fractions refused
        return Annotated[int, BeforeValidator(_integral_text), Field(ge=_INT64[0], le=_INT64[1])]
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is typing.Union or origin is types.UnionType:
        return typing.Union[tuple(_config_type(a) for a in args)]  # noqa: UP007 (built from a tuple)
    if origin in (tuple, list) and args:
        return origin[tuple(a if a is Ellipsis else _config_type(a) for a in args)]
    return ann


def _integral_text(value: Any) -> Any:
    """``"1e11"`` (YAML 1.1 reads an exponent without a dot as a string) -> 100000000000 when integral;
    anything else is left to pydantic's lax int (which takes the float 1.0e+11 and refuses 2.5)."""
    if isinstance(value, str) and any(c in value for c in ".eE"):
        try:
            number = decimal.Decimal(value.strip())
        except decimal.InvalidOperation:
            return value
        if number.is_finite() and number == number.to_integral_value():
            # the int64 bound refuses big ones by name; absurd exponents stay floats (no huge int)
            return int(number) if abs(number) < 10**100 else float(number)
    return value


def _allows_none(ann: Any) -> bool:
    if typing.get_origin(ann) is Annotated:
        return _allows_none(typing.get_args(ann)[0])
    if ann is Any or ann is None or ann is type(None):
        return True
    origin = typing.get_origin(ann)
    if origin is typing.Union or origin is types.UnionType:
        return type(None) in typing.get_args(ann)
    if origin is Literal:
        return None in typing.get_args(ann)
    return False


def _describe(ann: Any) -> str:
    origin = typing.get_origin(ann)
    if origin is Annotated:  # int with bounds: "int >= 0, <= 4294967295"
        base, *meta = typing.get_args(ann)
        found = [c for m in meta for c in (m, *getattr(m, "metadata", ()))]  # FieldInfo keeps Ge/Le inside
        ops = ((">=", "ge"), ("<=", "le"))
        bounds = [f"{op} {getattr(c, a)}" for c in found for op, a in ops if hasattr(c, a)]
        return _describe(base) + (" " + ", ".join(bounds) if bounds else "")
    if origin is Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(ann)))
    if origin is typing.Union or origin is types.UnionType:
        return " or ".join(_describe(a) for a in typing.get_args(ann))
    if ann is type(None):
        return "null"
    if isinstance(ann, type) and origin is None:
        return ann.__name__
    return str(ann).replace("typing.", "")


def _flatten_layer(data: Mapping[str, Any], schema: Mapping[str, Any] | None, prefix: str = ""):
    """Flatten a YAML mapping into dotted keys, descending into dataclass sections."""
    for raw_key, value in data.items():
        key = str(raw_key)
        full = f"{prefix}{key}"
        sub = _dataclass_of(schema.get(key)) if schema is not None else None
        if isinstance(value, Mapping) and value and sub is not None:
            yield from _flatten_layer(value, _type_hints(sub), f"{full}.")
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


def _nest(values: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted keys -> nested dicts; shorter keys first so 'a.b: {..}' then 'a.b.c' merge in order."""
    nested: dict[str, Any] = {}
    for key, value in sorted(values.items(), key=lambda kv: kv[0].count(".")):
        node = nested
        *head, last = key.split(".")
        for p in head:
            node = node.setdefault(p, {})
        if isinstance(value, Mapping) and isinstance(node.get(last), Mapping):
            node[last] = {**node[last], **value}
        else:
            node[last] = value
    return nested


def _parents(key: str) -> list[str]:
    parts = key.split(".")
    return [".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]


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
        hints = _type_hints_of(cls)
        _HINTS[cls] = {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls)}
    return dict(_HINTS[cls])


def _type_hints_of(obj: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(obj, include_extras=True)  # keeps Annotated bounds
    except Exception:  # a forward reference we cannot resolve: accept any value there
        return {}


# -- identity helpers ----------------------------------------------------------------------------
def _leaves(run: RunConfig) -> list[tuple[str, Any]]:
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
    out += [(f"{_OPTIONS}{k}", v) for k, v in run.dataset.options.items()]
    if run.method_config is not None and dataclasses.is_dataclass(run.method_config):
        rec(f"{run.method}.", run.method_config)
    return out


def _leaf_defaults(run: RunConfig) -> dict[str, Any]:
    """Dotted key -> the schema's default (fields without a default have none: always in the identity)."""
    out: dict[str, Any] = {}

    def rec(prefix: str, cls: type) -> None:
        for f in dataclasses.fields(cls):
            if not f.init or (cls is RunConfig and f.name == "method_config"):
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

    rec("", RunConfig)
    from talkbench.datasets.registry import option_defaults

    out.update({f"{_OPTIONS}{k}": v for k, v in option_defaults(run.dataset.name).items()})
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


def _marked_out(run: RunConfig) -> list[str]:
    """Method fields declared ``field(..., metadata={"identity": False})``."""
    out: list[str] = []

    def rec(prefix: str, cls: type) -> None:
        for f in dataclasses.fields(cls):
            if f.metadata.get("identity", True) is False:
                out.append(f"{prefix}{f.name}")
            sub = _dataclass_of(_type_hints(cls).get(f.name))
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


def _is_0_1_0(data: Mapping[str, Any]) -> bool:
    """Saved by talkbench 0.1.0: its dataset section held the SynthTalk options (and no 'options')."""
    ds = data.get("dataset")
    return isinstance(ds, Mapping) and "options" not in ds and any(k in ds for k in _LEGACY_SYNTHTALK_OPTIONS)


def _hashes_0_1_0(data: Mapping[str, Any]) -> dict[str, str]:
    """0.1.0's config_hash (the whole saved dict but the seed) and engine training fingerprint."""

    def digest(d: Mapping[str, Any]) -> str:
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    config = {k: v for k, v in data.items() if k != "seed"}
    training = {k: v for k, v in data.items() if k not in ("device", "eval", "preset")}
    if isinstance(training.get("train"), Mapping):
        drop = ("num_workers", "log_every", "checkpoint_every")
        training["train"] = {k: v for k, v in training["train"].items() if k not in drop}
    return {"config_hash": digest(config), "fingerprint": digest(training)}


# -- small helpers ---------------------------------------------------------------------------------
def _plain(obj: Any) -> Any:
    """Dataclasses/tuples/Paths -> dicts/lists/strings, for YAML and JSON."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
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
