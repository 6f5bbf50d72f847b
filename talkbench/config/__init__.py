"""Typed run configuration: dataclasses, YAML presets, ``--config FILE`` and dotted ``--set`` overrides.

- ``schema``: the dataclasses (:class:`RunConfig` and its sections) and settings checked against them,
- ``validation``: one value against its annotation (pydantic), the dataclasses' annotations,
- ``sources``: where settings come from (presets, ``--config`` files, ``--set``, arguments), in order,
- ``hashing``: a run's identity and its hashes (a compatibility promise, pinned by a test).
"""

from talkbench.errors import ConfigError

from .hashing import NOT_IDENTITY
from .schema import (
    DEFAULT_DATASET,
    SEED_MAX,
    DatasetConfig,
    EvalConfig,
    RunConfig,
    Seed,
    TrainConfig,
    canonical_key,
)
from .sources import (
    BASE_KEY,
    NO_PRESET,
    PRESET_DIR,
    available_presets,
    default_preset,
    find_preset,
    load_config,
    preset_folder,
    preset_layers,
)

__all__ = [
    "BASE_KEY",
    "DEFAULT_DATASET",
    "NOT_IDENTITY",
    "NO_PRESET",
    "PRESET_DIR",
    "SEED_MAX",
    "ConfigError",
    "DatasetConfig",
    "EvalConfig",
    "RunConfig",
    "Seed",
    "TrainConfig",
    "available_presets",
    "canonical_key",
    "default_preset",
    "find_preset",
    "load_config",
    "preset_folder",
    "preset_layers",
]
