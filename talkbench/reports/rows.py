"""The leaderboard as data: rows (a config's seeds grouped), metric columns and the ranking.

:mod:`talkbench.reports.leaderboard` builds and renders these; :mod:`talkbench.reports.evidence`
fills their seeds x clips estimates and significant bests. Both import this module, never each other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from talkbench.contract import OFFICIAL_LABEL, parse_mixture_tag
from talkbench.metrics.stats import SeedClipComparison, SeedClipEstimate

_ARROWS = {"lower": "↓", "higher": "↑", "zero": "→0"}
_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


@dataclass
class Row:
    method: str
    preset: str
    config_hash: str
    run_ids: list[str]
    seeds: list[str]
    values: dict[str, tuple[float, float, int]]  # metric -> (mean, std over seeds, n)
    floor: bool = False
    highlighted: bool = False
    params: dict[str, str] = field(default_factory=dict)  # params of the group's newest run
    variant: str = ""  # what sets this row apart from other rows of the same method
    imported: bool = False  # an official checkpoint (bench import), not a talkbench training
    mixture: str = ""  # trained on a mixture (Tag.MIXTURE, "a=1,b=2"); the row scores its member
    estimates: dict[str, SeedClipEstimate] = field(default_factory=dict)  # metric -> seeds x clips
    # a deterministic method (talkbench.samples = 1): its MEE, CE and Diversity are LVE, LVE and 0
    # by definition (N = 1), filled in, not measured (reports.leaderboard._single_sample)
    single_sample: bool = False
    # reports.provenance: what the row's runs used (encoder, data, code, threads, device) and speed means
    provenance: dict[str, str] = field(default_factory=dict)
    speed: dict[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        name = f"{self.method} ({self.variant})" if self.variant else self.method
        if self.mixture:
            weights = parse_mixture_tag(self.mixture)
            name = f"{name} (trained on {' + '.join(f'{m}×{w:g}' for m, w in weights.items())})"
        if self.imported:
            name = f"{name} ({OFFICIAL_LABEL})"
        return f"{name} (floor)" if self.floor else name

    @property
    def n_seeds(self) -> int:
        return len(self.run_ids)


_TITLES = {"diversity": "Diversity", "diversity_pt3d": "Diversity (PT3D)"}


def metric_title(name: str) -> str:
    """Acronyms (LVE, MVE, FDD) in capitals, longer names as words (articulation log err); CE with
    its sample count (CE@10)."""
    if name in _TITLES:
        return _TITLES[name]
    if name.startswith("ce_n") and name[4:].isdigit():
        return f"CE@{name[4:]}"
    return name.upper() if "_" not in name else name.replace("_", " ")


@dataclass
class MetricColumn:
    name: str
    direction: str
    scale: float
    unit: str

    def header(self, arrows: dict[str, str] = _ARROWS, latex: bool = False) -> str:
        head = f"{metric_title(self.name)} {arrows.get(self.direction, '')}".strip()
        if self.scale != 1.0:
            exp = math.log10(self.scale)
            if abs(exp - round(exp)) < 1e-9:
                e = int(round(exp))
                head += f" ($\\times 10^{{{e}}}$)" if latex else f" (×10{str(e).translate(_SUPERSCRIPT)})"
            else:
                head += f" (×{self.scale:g})"
        return head


@dataclass
class Leaderboard:
    dataset: str
    columns: list[MetricColumn]
    rows: list[Row] = field(default_factory=list)
    # metric -> (config hash of the significantly best row, its comparison with the runner-up)
    best_claims: dict[str, tuple[str, SeedClipComparison]] = field(default_factory=dict)
    evidence: bool = False  # per-sequence tables were attached (estimates and best claims)
    column_sets: tuple[str, ...] = ("quality",)  # what renderers show: quality, speed, provenance

    def best(self, metric: str) -> float | None:
        """The best group mean of one metric (by its direction), or None without values."""
        col = next(c for c in self.columns if c.name == metric)
        means = [r.values[metric][0] for r in self.rows if metric in r.values]
        if not means:
            return None
        if col.direction == "higher":
            return max(means)
        if col.direction == "zero":
            return min(means, key=abs)
        return min(means)

    def ranked(self, metric: str) -> list[Row]:
        """Rows with a value of ``metric``, best first by its direction."""
        col = next(c for c in self.columns if c.name == metric)
        rows = [r for r in self.rows if metric in r.values]
        key = {"higher": lambda r: -r.values[metric][0], "zero": lambda r: abs(r.values[metric][0])}
        return sorted(rows, key=key.get(col.direction, lambda r: r.values[metric][0]))

    def is_best(self, row: Row, metric: str) -> bool:
        """Only a significantly best value counts (see ``reports.evidence``)."""
        claim = self.best_claims.get(metric)
        return claim is not None and claim[0] == row.config_hash


def md_table(head: list[str], rows: list[list[str]]) -> str:
    """A Markdown (GitHub) table."""
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)
