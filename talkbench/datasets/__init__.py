"""The dataset layer: clips, specs, loaders for VOCASET / BIWI / SynthTalk, samplers and collate.

ds = load_dataset("synthtalk")                      # SynthTalk 'small', generated on first use
ds = load_dataset("vocaset", root="~/data/vocaset")
loader = make_loader(ds.split("train"), sampler="bucketed", batch_size=8, seed=0)
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from pathlib import Path

from talkbench.datasets.batch import Batch, collate
from talkbench.datasets.clip import SAMPLE_RATE, Clip
from talkbench.datasets.loader import ClipLoader, make_loader
from talkbench.datasets.prepared import ClipRef, PreparedDataset, SplitView
from talkbench.datasets.spec import DatasetSpec, Split
from talkbench.errors import ConfigError


def _loaders() -> dict[str, Callable[..., PreparedDataset]]:
    from talkbench.datasets.biwi import load_biwi
    from talkbench.datasets.synthtalk_loader import load_synthtalk
    from talkbench.datasets.vocaset import load_vocaset

    return {"synthtalk": load_synthtalk, "vocaset": load_vocaset, "biwi": load_biwi}


DATASETS = ("synthtalk", "vocaset", "biwi")


def load_dataset(name: str = "synthtalk", root: str | Path | None = None, **opts) -> PreparedDataset:
    """Open a dataset by name. SynthTalk needs no root (cached generation); VOCASET and BIWI do.

    Options: synthtalk ``preset``, ``seed``, ``style_coupling``; biwi ``preprocessing``; all
    ``audio_cache_mb``. Unknown names and options raise ConfigError.
    """
    loaders = _loaders()
    if name not in loaders:
        close = difflib.get_close_matches(str(name), loaders, n=1, cutoff=0.5)
        hint = f" Did you mean: {close[0]}?" if close else ""
        raise ConfigError(f"unknown dataset '{name}'.{hint} Available: {', '.join(DATASETS)}")
    fn = loaders[name]
    allowed = [p for p in inspect.signature(fn).parameters if p != "root"]
    unknown = sorted(set(opts) - set(allowed))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} for dataset '{name}'; allowed: {', '.join(allowed)}"
        )
    return fn(root=root, **opts)


__all__ = [
    "DATASETS",
    "SAMPLE_RATE",
    "Batch",
    "Clip",
    "ClipLoader",
    "ClipRef",
    "DatasetSpec",
    "PreparedDataset",
    "Split",
    "SplitView",
    "collate",
    "load_dataset",
    "make_loader",
]
