"""The dataset layer: clips, specs, loaders for VOCASET / BIWI / SynthTalk, samplers and collate.

ds = load_dataset("synthtalk")                      # SynthTalk 'small', generated on first use
ds = load_dataset("vocaset", root="~/data/vocaset")
loader = make_loader(ds.split("train"), sampler="bucketed", batch_size=8, seed=0)
"""

from __future__ import annotations

from pathlib import Path

from talkbench.datasets.batch import Batch, collate
from talkbench.datasets.clip import SAMPLE_RATE, Clip
from talkbench.datasets.loader import ClipLoader, make_loader
from talkbench.datasets.prepared import ClipRef, PreparedDataset, SplitView
from talkbench.datasets.registry import DATASETS, check_options
from talkbench.datasets.spec import DatasetSpec, Split


def load_dataset(name: str = "synthtalk", root: str | Path | None = None, **opts) -> PreparedDataset:
    """Open a dataset by name. SynthTalk needs no root (cached generation); VOCASET and BIWI do.

    ``opts`` are the loader's keyword options (synthtalk ``preset``, ``seed``, ``style_coupling``;
    biwi ``preprocessing``; all ``audio_cache_mb``). Unknown names and options raise ConfigError.
    Datasets come from :data:`DATASETS` (built-ins plus the entry-point group ``talkbench.datasets``).
    """
    fn = DATASETS.get(name)
    check_options(name, opts, source=f"dataset '{name}'")
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
