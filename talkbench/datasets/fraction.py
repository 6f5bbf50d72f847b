"""A fraction of a training split (``--set dataset.train_fraction=0.25``): the data-efficiency curves
of fine-tuning experiments (UniTalker's headline one), for any method and dataset.

The subset is drawn by clip within each (speaker, condition) stratum: every training speaker (and, where
the dataset names one, every condition such as a 3DMEAD emotion) keeps ``max(1, round(fraction * n))``
of its ``n`` clips. So the speaker list, the one-hot conditions and identity embeddings of the full run
all still have data, and the mix of speakers is the full split's. The clips of a stratum are ordered by
a permutation that depends only on ``seed`` and the stratum's and clips' names (not on the run seed and
not on the fraction): runs of different methods and seeds at one fraction train on the same clips (a
paired comparison), and a smaller fraction's clips are a subset of a larger one's (nested curves).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

import numpy as np

from talkbench.errors import ConfigError

OPTION = "dataset.train_fraction"


def check_fraction(fraction: float) -> float:
    """``fraction`` as a float in (0, 1]; ConfigError naming the option otherwise."""
    try:
        value = float(fraction)
    except (TypeError, ValueError):
        raise ConfigError(f"{OPTION} {fraction!r}: expected a number in (0, 1]") from None
    if not (0.0 < value <= 1.0):
        raise ConfigError(f"{OPTION} {fraction!r}: expected a share of the training clips in (0, 1] "
                          "(1: all of them)")
    return value


def _rank(seed: int, stratum: str, names: list[str]) -> list[int]:
    """The stratum's clip indices in a seeded order that is a pure function of names and seed."""
    digest = hashlib.sha256(f"{seed}\n{stratum}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    order = sorted(range(len(names)), key=names.__getitem__)  # independent of the file listing's order
    return [order[i] for i in rng.permutation(len(order))]


def subset_indices(refs, fraction: float, seed: int = 0) -> list[int]:
    """Indices (in their original order) of the clips ``refs`` (ClipRef-like: name, subject, group)
    kept at ``fraction``; all of them at 1."""
    fraction = check_fraction(fraction)
    if fraction == 1.0:
        return list(range(len(refs)))
    strata: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, ref in enumerate(refs):
        strata[(ref.subject, getattr(ref, "group", None) or "")].append(i)
    kept: list[int] = []
    for (subject, group), members in strata.items():
        n = max(1, int(np.floor(fraction * len(members) + 0.5)))
        ranked = _rank(seed, f"{subject}\n{group}", [refs[i].name for i in members])
        kept += [members[j] for j in ranked[:n]]
    return sorted(kept)
