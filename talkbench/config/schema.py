"""The run configuration's schema: its dataclasses, and settings checked against them.

A :class:`RunConfig` is built from (dotted key, value, layer) settings by :class:`Builder`: every
key is checked against the schema (an unknown key is a :class:`ConfigError` with a "did you mean"),
every value against its annotation (``validation``), naming the key and the layer it came from. A
method's hyperparameters live under the key of its name (``memorytalker.memory_slots=16``) and
come from ``METHODS.get(name).Config``; the dataset loader's options under ``dataset.options``
(checked against the loader's signature; an option set by a preset file that this dataset's loader
lacks is skipped: one preset may serve several datasets). Which layers there are and in what order
is ``sources``; what makes a run's identity is ``hashing``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, ValidationError

from talkbench.contract import MIXTURE_SEP
from talkbench.errors import ConfigError

from . import hashing
from .hashing import LEGACY_SYNTHTALK_OPTIONS, OPTIONS
from .validation import adapter, dataclass_of, is_mapping_type, reason, type_hints, type_hints_of, validate

DEFAULT_DATASET = "synthtalk"
# how a preset file's layer is named in errors (dataset options it sets that a loader lacks are skipped)
PRESET_SOURCE = "preset "


@dataclass
class DatasetConfig:
    """Which dataset to load and how (``root`` None = the cache / the generated SynthTalk).

    ``options`` are the keyword options of the dataset's loader (``talkbench.datasets.DATASETS``),
    checked against its signature: SynthTalk ``preset``/``seed``/``style_coupling``, BIWI
    ``preprocessing``, ... Absent options take the loader's defaults. ``dataset.<option>`` is accepted
    as a shorthand for ``dataset.options.<option>`` (``--set dataset.style_coupling=0``, and configs
    saved by talkbench 0.1.0, which kept the SynthTalk options there).

    A mixture (datasets/mixture.py) names its members ``a,b``; ``weights`` gives one sampling weight
    per member (None: equal), ``root`` one root per member, comma separated; each option goes to the
    members whose loader takes it.

    ``train_fraction`` trains on that share of the training clips (of each member of a mixture), drawn
    per speaker with ``train_fraction_seed`` (datasets/fraction.py); validation and test are untouched.
    """

    name: str = DEFAULT_DATASET
    root: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    weights: list[float] | None = None  # a mixture's per-member sampling weights, in the order of name
    train_fraction: float = 1.0
    train_fraction_seed: int = 0  # which clips: apart from the run's seed, so runs at a fraction pair up

    def __post_init__(self) -> None:
        from talkbench.contract import mixture_members
        from talkbench.datasets.fraction import check_fraction

        self.name = MIXTURE_SEP.join(mixture_members(self.name))  # "a+b" and "a, b" read as "a,b"
        self.train_fraction = check_fraction(self.train_fraction)
        if self.weights is not None and not self.is_mixture:
            raise ConfigError(
                f"dataset.weights: sampling weights are for a mixture (--dataset a,b); '{self.name}' is one"
            )
        if self.is_mixture:
            from talkbench.datasets.mixture import weights_of

            weights_of(self.members, self.weights)  # one per member, non-negative

    @property
    def members(self) -> list[str]:
        """The datasets a run loads: the mixture's members, or the one dataset."""
        from talkbench.contract import mixture_members

        return mixture_members(self.name)

    @property
    def is_mixture(self) -> bool:
        return len(self.members) > 1

    @property
    def experiment(self) -> str:
        """The MLflow experiment (and dataset tag) of runs on it: the dataset, or the mixture ``a+b``."""
        from talkbench.contract import mixture_name

        return mixture_name(self.members)

    def load(self):
        """The loaded dataset (``talkbench.datasets.load_dataset(name, root=root, **options)``), or a
        mixture's (``talkbench.datasets.mixture.load_mixture``)."""
        if self.is_mixture:
            from talkbench.datasets.mixture import load_mixture

            roots = self.root.split(MIXTURE_SEP) if self.root is not None else None
            data = load_mixture(self.members, self.weights, roots, self.options)
            loaded = list(data.members.values())
        else:
            from talkbench.datasets import load_dataset

            data = load_dataset(self.name, root=self.root, **self.options)
            loaded = [data]
        if self.train_fraction < 1.0:
            for one in loaded:
                one.use_train_fraction(self.train_fraction, self.train_fraction_seed)
        return data

    def effective_options(self) -> dict[str, Any]:
        """The loader's defaults overridden by ``options``: what the loader will actually use (of a
        mixture: every member's defaults, the first member's where they differ)."""
        from talkbench.datasets.registry import option_defaults

        defaults: dict[str, Any] = {}
        for member in reversed(self.members):
            defaults.update(option_defaults(member))
        return {**defaults, **self.options}


@dataclass
class TrainConfig:
    """Generic engine settings; per-stage hyperparameters (epochs, lr, ...) live in the method config."""

    num_workers: int = 0
    checkpoint_every: int = 5  # epochs between periodic checkpoints (0: stage ends only)
    log_every: int = 1  # epochs between metric logs (stage ends are always logged)
    selection: Literal["val", "last"] | None = None  # None: each stage's own rule


DEFAULT_SAMPLES = 10  # N of the stochastic protocol (ProbTalk3D, the benchmark study)


@dataclass
class EvalConfig:
    render_clips: int = 2  # how many test clips to render as videos (0: none)
    save_predictions: bool = True
    n_boot: Annotated[int, Field(ge=0)] = 1000  # bootstrap resamples for confidence intervals (0: none)
    # the split predicted and scored; None: the dataset's published test split (DatasetSpec.eval_split,
    # BIWI's Test-A); checked against the dataset's splits before a run exists (split_for)
    split: str | None = None
    register: str | None = None  # Model Registry name for the run's MLflow model (bench run --register)
    # samples drawn per test clip and condition by a method that samples (None: DEFAULT_SAMPLES, the
    # published protocol); a deterministic method is always predicted once (N = 1)
    samples: Annotated[int, Field(ge=1)] | None = None
    # the seed set of those samples: sample k of a clip under a condition is seeded
    # sample_seed(sample_seed, clip, condition, k) (None: the run's seed); another set re-draws them all
    sample_seed: Annotated[int, Field(ge=0, le=2**32 - 1)] | None = None

    def samples_for(self, method) -> int:
        """N for ``method``: 1 for a deterministic one, else ``samples`` or DEFAULT_SAMPLES."""
        if not getattr(method, "samples", False):
            return 1
        return self.samples if self.samples is not None else DEFAULT_SAMPLES

    def sample_seed_for(self, run_seed: int) -> int:
        """The seed set samples are drawn with: ``sample_seed``, else the run's seed."""
        return run_seed if self.sample_seed is None else self.sample_seed

    # seconds of speech the speed profile times predict on at the end of a run (talkbench.speed); 0: none
    speed_clip_s: Annotated[float, Field(ge=0)] = 10.0

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
        builder = Builder(str(data["method"]), str(data.get("preset", "")))
        builder.saved = True
        builder.apply(data, source)
        run = builder.build()
        if hashing.is_0_1_0(data):
            run.legacy_hashes = hashing.hashes_0_1_0(data)
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
                flat.setdefault(OPTIONS + key, value)
        return flat

    # -- identity (hashing: a compatibility promise) ---------------------------------------------
    def identity(self) -> dict[str, Any]:
        """Dotted key -> canonical value of each setting that changes results and differs from the
        schema's defaults (:func:`hashing.identity`)."""
        return hashing.identity(self)

    def config_hash(self) -> str:
        """The run's identity as 16 hex digits: method + :meth:`identity` (so not the seed, device, data
        root, ...). Adding a schema field whose default keeps the old behaviour leaves it unchanged."""
        return hashing.config_hash(self)

    def training_fingerprint(self) -> str:
        """What a checkpoint must match to be resumed: the identity without the evaluation settings,
        plus the seed (device, workers, logging, evaluation may change between a run and its resume)."""
        return hashing.training_fingerprint(self)

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
        return cls.from_dict(read_yaml(Path(path)), source=str(path))


# -- settings -> a checked RunConfig -----------------------------------------------------------
_SCHEMA_FIELDS = [f for f in dataclasses.fields(RunConfig) if f.init and f.name != "method_config"]
_TOP_LEVEL = {f.name for f in _SCHEMA_FIELDS}
_DATASET_FIELDS = {f.name for f in dataclasses.fields(DatasetConfig)}


def canonical_key(key: str) -> str:
    """The dotted key as runs log it: the shorthand ``dataset.X`` is ``dataset.options.X``."""
    parts = key.split(".")
    if parts[0] == "dataset" and len(parts) > 1 and parts[1] not in _DATASET_FIELDS:
        return OPTIONS + ".".join(parts[1:])
    return key


class Builder:
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
        hints = type_hints(RunConfig)
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
                self.set(f"{OPTIONS}{k}", v, source)
            return
        ann = _resolve_key(self.schema, parts, source, self.method)
        if dataclass_of(ann) is not None and isinstance(value, Mapping):
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
        allowed: dict[str, Any] = {}
        hints: dict[str, Any] = {}
        from talkbench.contract import mixture_members

        for member in reversed(mixture_members(str(name))):
            # a mixture's options: any member's (each member's loader gets those it takes)
            allowed.update(loader_options(member))
            hints.update(type_hints_of(DATASETS.get(member)))
        for key in [k for k in self.values if k.startswith(OPTIONS)]:
            option, source = key[len(OPTIONS) :], self.sources.get(key, "config")
            if option not in allowed and (
                source.startswith(PRESET_SOURCE) or (self.saved and option in LEGACY_SYNTHTALK_OPTIONS)
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
                self.values[key] = validate(self.values[key], ann, key, self.sources[key])
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
            return adapter(cls).validate_python(values)
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join([prefix, *(str(p) for p in err["loc"])])
            source = next(
                (self.sources[k] for k in (key, *_parents(key)) if k in self.sources), "configuration"
            )
            raise ConfigError(f"{source}: '{key}': {reason(err)}") from None


def _flatten_layer(data: Mapping[str, Any], schema: Mapping[str, Any] | None, prefix: str = ""):
    """Flatten a YAML mapping into dotted keys, descending into dataclass sections."""
    for raw_key, value in data.items():
        key = str(raw_key)
        full = f"{prefix}{key}"
        sub = dataclass_of(schema.get(key)) if schema is not None else None
        if isinstance(value, Mapping) and value and sub is not None:
            yield from _flatten_layer(value, type_hints(sub), f"{full}.")
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
        sub = dataclass_of(ann)
        if sub is not None:
            level = type_hints(sub)
        elif is_mapping_type(ann):
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


def read_yaml(path: Path) -> Any:
    """A YAML file's data ({} when empty); a missing or unparsable file is one ConfigError naming it."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {' '.join(str(exc).split())}") from None
    return {} if data is None else data
