"""The dataset registry: name -> loader function, built-ins plus the entry-point group ``talkbench.datasets``.

A loader is ``fn(root=None, **options) -> PreparedDataset``; its keyword parameters (all but ``root``)
are the dataset's options, settable as ``dataset.options.<name>`` and checked against its signature.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from talkbench.errors import ConfigError
from talkbench.registry import Registry


def _check_loader(name: str, target: object) -> None:
    if not callable(target):
        raise ConfigError(f"dataset '{name}': the registered target {target!r} is not a loader function")


DATASETS: Registry = Registry("dataset", entry_point_group="talkbench.datasets", check=_check_loader)
DATASETS.register("synthtalk", "talkbench.datasets.synthtalk_loader:load_synthtalk")
DATASETS.register("synthtalk-topology2", "talkbench.datasets.synthtalk_loader:load_synthtalk_topology2")
DATASETS.register("synthtalk-blendshape", "talkbench.datasets.synthtalk_loader:load_synthtalk_blendshape")
DATASETS.register("vocaset", "talkbench.datasets.vocaset:load_vocaset")
DATASETS.register("biwi", "talkbench.datasets.biwi:load_biwi")
DATASETS.register("multiface", "talkbench.datasets.multiface:load_multiface")
DATASETS.register("3dmead", "talkbench.datasets.mead:load_3dmead")


def loader_options(name: str) -> dict[str, inspect.Parameter]:
    """The options a dataset's loader takes (its keyword parameters except ``root``)."""
    fn: Callable[..., Any] = DATASETS.get(name)
    params = inspect.signature(fn).parameters
    return {
        k: p
        for k, p in params.items()
        if k != "root" and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }


def option_defaults(name: str) -> dict[str, Any]:
    """Option -> default value, for the options that have one."""
    return {k: p.default for k, p in loader_options(name).items() if p.default is not inspect.Parameter.empty}


def check_options(name: str, options: Mapping[str, Any], source: str = "dataset options") -> None:
    """ConfigError naming the option, the allowed ones and a did-you-mean for an unknown option."""
    allowed = loader_options(name)
    for key in options:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), list(allowed), n=3, cutoff=0.6)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ConfigError(
                f"{source}: unknown option '{key}' for dataset '{name}'.{hint} "
                f"Options of '{name}': {', '.join(allowed) or 'none'}"
            )
