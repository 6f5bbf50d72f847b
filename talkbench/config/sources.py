"""Where a run's settings come from, and in which order they layer.

Resolution order (later wins): dataclass defaults < preset file (after the files it inherits from
with ``base: <file stem>``) < ``--config`` file < ``--set a.b=c`` < explicit arguments (dataset,
seed, device, data root). Each layer is named in errors (``preset <file>``, ``config file <file>``,
``--set a.b=c``, ``--seed``) and checked by the schema's :class:`Builder`.

Presets live in ``presets/<method>/`` of the top-level package that holds the method: talkbench's own
folder for the built-ins, ``<plugin package>/presets/<method>/`` for a plugin (read without importing
it). Without ``--preset`` a run uses the dataset's default preset when the method ships one, else the
dataclass defaults, recorded as preset :data:`NO_PRESET`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from talkbench.errors import ConfigError

from .schema import DEFAULT_DATASET, PRESET_SOURCE, Builder, RunConfig, read_yaml

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"
BASE_KEY = "base"  # first line of a preset file: ``base: paper-vocaset`` merges that file first
NO_PRESET = "defaults"  # the preset name of a run on the dataclass defaults (no preset file)


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
    file_data = read_yaml(Path(config_file)) if config_file is not None else None

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
    builder = Builder(method, preset_name)  # checks the method name first
    preset_path = find_preset(method, preset_name, ds)
    if preset_path is None and not explicit_preset:  # the method ships no default: say what runs
        preset_name = NO_PRESET
        builder.set("preset", NO_PRESET, "the method's defaults")
    if preset_path is None and explicit_preset and preset_name != NO_PRESET:
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
    """``synthtalk`` on SynthTalk and its variants, else ``paper``; a mixture's when its members agree."""
    from talkbench.contract import mixture_members

    members = mixture_members(dataset)
    found = {"synthtalk" if m.partition("-")[0] == DEFAULT_DATASET else "paper" for m in members}
    if len(found) > 1:
        raise ConfigError(
            f"--dataset {dataset}: its members default to different presets ({', '.join(sorted(found))}); "
            "name one with --preset"
        )
    return found.pop()


def preset_folder(method: str) -> Path:
    """``presets/<method>/`` of talkbench, or else of the plugin package that holds the method."""
    from talkbench.registry import METHODS  # late, as the schema's Builder: names resolve lazily

    own = PRESET_DIR / method
    plugin_root = METHODS.package_root(method) if method in METHODS else None
    if own.is_dir() or plugin_root is None:
        return own
    return plugin_root / "presets" / method


def find_preset(method: str, preset: str, dataset: str) -> Path | None:
    """``presets/<method>/<preset>-<dataset>.yaml`` wins over ``presets/<method>/<preset>.yaml``."""
    base = preset_folder(method)
    for candidate in (base / f"{preset}-{dataset}.yaml", base / f"{preset}.yaml"):
        if candidate.is_file():
            return candidate
    return None


def available_presets(method: str) -> list[str]:
    """File stems under ``presets/<method>/`` (``paper``, ``paper-biwi``, ``tiny``, ...)."""
    base = preset_folder(method)
    return sorted(p.stem for p in base.glob("*.yaml")) if base.is_dir() else []


def preset_layers(path: Path, _seen: tuple[Path, ...] = ()) -> list[tuple[Any, str]]:
    """A preset file's layers, bases first: ``base: <stem>`` names another file of the same folder,
    ``base: <method>/<stem>`` one of another method's (a variant of it: CodeTalker-ND's presets are
    CodeTalker's), whose ``<method>`` section is then read as this method's."""
    data = read_yaml(path)
    source = f"{PRESET_SOURCE}{path}"
    if not isinstance(data, Mapping) or BASE_KEY not in data:
        return [(data, source)]
    base = data[BASE_KEY]
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{source}: '{BASE_KEY}' must name another preset file of {path.parent}")
    other, _, stem = base.rpartition("/")
    folder = preset_folder(other) if other else path.parent
    stems = sorted(p.stem for p in folder.glob("*.yaml") if p != path)
    base_path = folder / f"{stem}.yaml"
    if base_path == path or base_path in _seen:
        chain = " -> ".join(p.stem for p in (*_seen, path, base_path))
        raise ConfigError(f"{source}: '{BASE_KEY}: {base}' makes a cycle ({chain})")
    if not base_path.is_file():
        close = difflib.get_close_matches(stem, stems, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"{source}: '{BASE_KEY}: {base}' names no preset file ({base_path} is missing).{hint} "
            f"Files there: {', '.join(stems) or 'none'}"
        )
    layers = preset_layers(base_path, (*_seen, path))
    mine = path.parent.name
    if other and other != mine:  # the other method's section is this method's settings
        layers = [(_section_renamed(layer, other, mine), src) for layer, src in layers]
    own = {k: v for k, v in data.items() if k != BASE_KEY}
    return [*layers, (own, source)]


def _section_renamed(layer: Any, old: str, new: str) -> Any:
    """A preset layer with its ``old`` method section named ``new``."""
    return {new if k == old else k: v for k, v in layer.items()} if isinstance(layer, Mapping) else layer


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


def _dig(data: Any, keys: tuple[str, ...]) -> Any:
    for k in keys:
        if isinstance(data, Mapping) and k in data:
            data = data[k]
        elif isinstance(data, Mapping) and ".".join(keys) in data:
            return data[".".join(keys)]
        else:
            return None
    return data
