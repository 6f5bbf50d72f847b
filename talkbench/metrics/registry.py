"""The metric registry: every reported number is a versioned entry with an exact definition.

Bump ``version`` whenever a definition, a reduction or a default parameter changes, so numbers
computed under different definitions are never compared silently (specs/metrics.md §10).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

from talkbench.registry import Registry

REDUCTIONS = ("frame-pooled", "sequence-mean", "segment-pooled", "speaker-pooled")
DIRECTIONS = ("lower", "higher", "zero")  # "zero": a signed quantity, closer to 0 is better


@dataclass(frozen=True)
class MetricInfo:
    """One metric. ``columns`` names the per-sequence columns its reduction reads:

    - frame-pooled: (numerator sum, frame count), value = sum num / sum count over sequences;
    - sequence-mean: (value,), mean over sequences;
    - segment-pooled: (hits, segments), value = sum hits / sum segments;
    - speaker-pooled: (pred energy, true energy), value = mean over speakers of
      |log sqrt(sum pred / sum true)| with the sums over each speaker's sequences.

    ``unit`` uses ``u`` for the dataset's vertex unit (``u^2`` = squared); ``scales`` maps a dataset
    name to the display factor of tables (value shown = value / scale).
    """

    name: str
    version: int
    unit: str
    direction: str
    definition: str
    reduction: str
    columns: tuple[str, ...]
    scales: dict[str, float] = field(default_factory=dict)
    requires: str | None = None  # "mouth_pair" | "alignments" | "<group>_channels" | None
    scale_key: str | None = None  # the table-scale entry it shares (fdd_abs uses fdd's)
    # what it compares (datasets/targets.py): "vertices" (predicted meshes, or weights through the
    # dataset's rig) or "blendshapes" (weights, channel by channel)
    target: str = "vertices"

    def __post_init__(self) -> None:
        assert self.reduction in REDUCTIONS, self.reduction
        assert self.direction in DIRECTIONS, self.direction
        assert self.target in ("vertices", "blendshapes"), self.target

    def unit_for(self, vertex_unit: str) -> str:
        return {"u": vertex_unit, "u^2": f"{vertex_unit}^2"}.get(self.unit, self.unit)

    def scale_for(self, dataset: str, table_scales: dict[str, float] | None = None) -> float:
        """Display scale: the dataset spec's own table scale wins, then the registry's, then 1."""
        key = self.scale_key or self.name
        if table_scales and key in table_scales:
            return float(table_scales[key])
        return float(self.scales.get(dataset.lower(), 1.0))

    @property
    def id(self) -> str:
        return f"{self.name}@v{self.version}"


METRICS: Registry = Registry("metric")

_ENTRIES = (
    MetricInfo(
        "lve", 1, "u^2", "lower",
        "per frame the max over lip vertices of the squared L2 error, mean over all frames pooled over "
        "sequences (CodeTalker cal_metric.py); truncated to the shorter length",
        "frame-pooled", ("lve_sum", "n_frames"), {"vocaset": 1e-5, "biwi": 1e-4},
    ),
    MetricInfo(
        "mve", 1, "u", "lower",
        "unsquared L2 error averaged over all vertices and all frames pooled over sequences "
        "(FaceDiffuser); truncated to the shorter length",
        "frame-pooled", ("mve_sum", "n_frames"), {"vocaset": 1e-3},
    ),
    MetricInfo(
        "fdd", 1, "u^2", "zero",
        "per sequence D(gt) - D(pred), D = mean over upper-face vertices of the std over time (ddof 0) "
        "of the squared displacement-from-template norm; mean over sequences, signed",
        "sequence-mean", ("fdd",), {"vocaset": 1e-7, "biwi": 1e-5},
    ),
    MetricInfo(
        "fdd_abs", 1, "u^2", "lower",
        "mean over sequences of |D(gt) - D(pred)| (FaceDiffuser's ABS FDD)",
        "sequence-mean", ("fdd_abs",), {"vocaset": 1e-7, "biwi": 1e-5}, scale_key="fdd",
    ),
    MetricInfo(
        "lve_dtw", 1, "u^2", "lower",
        "LVE after dynamic time warping: the path through (predicted frame, true frame) pairs within "
        "|i - j| <= round(0.1 s x fps) frames that minimises the summed per-pair LVE term (max over lip "
        "vertices of the squared L2 error; each step counted once, tslearn), first to last common "
        "frame; per sequence the mean over the path's steps, frames pooled over sequences",
        "frame-pooled", ("lve_dtw_sum", "n_frames"), {"vocaset": 1e-5, "biwi": 1e-4}, scale_key="lve",
    ),
    MetricInfo(
        "lip_open_err", 1, "u", "lower",
        "mean over frames pooled over sequences of |predicted - true mouth opening| (the lip_corr curves)",
        "frame-pooled", ("open_abs_sum", "n_frames"), requires="mouth_pair",
    ),
    MetricInfo(
        "lip_open_dtw", 1, "u", "lower",
        "lip_open_err after dynamic time warping of the two opening curves (as lve_dtw: the band of "
        "round(0.1 s x fps) frames, per-pair cost |difference|, mean over the path's steps)",
        "frame-pooled", ("open_dtw_sum", "n_frames"), requires="mouth_pair",
    ),
    MetricInfo(
        "lip_corr", 1, "1", "higher",
        "per sequence the Pearson correlation of predicted and true mouth opening (distance between "
        "the means of the upper- and lower-lip sets; 0 for a constant curve), mean over sequences",
        "sequence-mean", ("lip_corr",), requires="mouth_pair",
    ),
    MetricInfo(
        "av_offset", 1, "frames", "zero",
        "per sequence the lag k in +-max_lag maximising corr(pred_open[t+k], gt_open[t]) (positive = "
        "prediction late), mean over sequences",
        "sequence-mean", ("av_offset",), requires="mouth_pair",
    ),
    MetricInfo(
        "av_offset_abs", 1, "frames", "lower",
        "mean over sequences of |av_offset|",
        "sequence-mean", ("av_offset_abs",), requires="mouth_pair",
    ),
    MetricInfo(
        "bilabial_recall", 1, "1", "higher",
        "fraction of bilabial segments of the true alignment (pooled over sequences) during which the "
        "predicted mouth opening reaches min + 0.2 x (max - min) of the speaker's true opening",
        "segment-pooled", ("n_closed", "n_bilabial"), requires="alignments",
    ),
    MetricInfo(
        "vowel_open_rate", 1, "1", "higher",
        "fraction of vowel segments of the true alignment (pooled over sequences) during which the "
        "predicted mouth opening exceeds min + 0.2 x (max - min) of the speaker's true opening",
        "segment-pooled", ("n_vowel_open", "n_vowel"), requires="alignments",
    ),
    MetricInfo(
        "articulation_log_err", 1, "1", "lower",
        "mean over test speakers of |log g|, g = RMS predicted / RMS true lip displacement from the "
        "template, pooled over the speaker's frames and lip vertices, g clipped to [1e-3, 1e3]",
        "speaker-pooled", ("lip_sq_pred", "lip_sq_gt"),
    ),
    MetricInfo(
        "upper_face_log_err", 1, "1", "lower",
        "mean over test speakers of |log u|, u = RMS predicted / RMS true upper-face displacement "
        "from the template, pooled over the speaker's frames and upper-face vertices, u clipped to "
        "[1e-3, 1e3]",
        "speaker-pooled", ("upper_sq_pred", "upper_sq_gt"),
    ),
    MetricInfo(
        "bs_mse", 1, "1", "lower",
        "per frame the mean over all channels of the squared blendshape-weight error, mean over all "
        "frames pooled over sequences; truncated to the shorter length",
        "frame-pooled", ("bs_sq_sum", "n_frames"), target="blendshapes",
    ),
    MetricInfo(
        "bs_mse_lower", 1, "1", "lower",
        "bs_mse over the dataset's 'lower' channel group (ARKit jaw*, mouth*, tongueOut: lip sync)",
        "frame-pooled", ("bs_lower_sum", "n_frames"), target="blendshapes", requires="lower_channels",
    ),
    MetricInfo(
        "bs_mse_upper", 1, "1", "lower",
        "bs_mse over the dataset's 'upper' channel group (ARKit eye*, brow*)",
        "frame-pooled", ("bs_upper_sum", "n_frames"), target="blendshapes", requires="upper_channels",
    ),
)
METRIC_ORDER: tuple[str, ...] = tuple(m.name for m in _ENTRIES)
for _m in _ENTRIES:
    METRICS.register(_m.name, _m)


def metric_info(name: str) -> MetricInfo:
    """The registry entry of ``name`` (a ConfigError with suggestions if unknown); ``ce_n<N>`` for
    any N (CE carries its sample count in its name) is made from ``ce_n10`` on first use."""
    match = _CE_NAME.fullmatch(name)
    if match and name not in METRICS:
        ce_name(int(match.group(1)))
    return METRICS.get(name)


def metric_versions() -> dict[str, int]:
    return {name: metric_info(name).version for name in METRIC_ORDER}


# the stochastic protocol (specs/stochastic-metrics.md, talkbench.metrics.stochastic): asked of
# methods that sample (``requires="samples"``), N = 10 samples per clip, deterministic ones N = 1.
# Kept out of METRIC_ORDER: the Evaluator adds them to a run whose predictions carry samples.
STOCHASTIC_METRICS = (
    MetricInfo("mee", 1, "u^2", "lower",
               "per frame the max over lip vertices of the squared L2 error of the vertex-wise mean of "
               "the N samples, frames pooled over sequences (ProbTalk3D evaluation.py)",
               "frame-pooled", ("mee_sum", "n_frames"), {"vocaset": 1e-5, "biwi": 1e-4}, requires="samples",
               scale_key="lve"),
    MetricInfo("ce_n10", 1, "u^2", "lower",
               "LVE of the best of N = 10 samples per sequence (smallest summed per-frame lip error), "
               "frames pooled over sequences (ProbTalk3D's 'closest' sample)",
               "frame-pooled", ("ce_sum", "n_frames"), {"vocaset": 1e-5, "biwi": 1e-4}, requires="samples",
               scale_key="lve"),
    MetricInfo("diversity_pt3d", 1, "u", "higher",
               "per sequence the N = 10 samples shuffled (seeded per clip), 5 disjoint pairs (i, i + 5), "
               "mean over frames and all vertices of the unsquared L2; mean over sequences (ProbTalk3D)",
               "sequence-mean", ("div_pt3d",), requires="samples", scale_key="mve"),
    MetricInfo("diversity", 1, "u", "higher",
               "as diversity_pt3d over all N(N-1)/2 pairs of the N samples; mean over sequences",
               "sequence-mean", ("div_all",), requires="samples", scale_key="mve"),
)
for _m in STOCHASTIC_METRICS:
    METRICS.register(_m.name, _m)
# the stochastic metrics a run with samples logs, CE named by its N (see ce_name)
SAMPLE_METRICS = ("mee", "ce_n10", "diversity", "diversity_pt3d")
_CE_NAME = re.compile(r"ce_n([1-9][0-9]*)")


def ce_name(n: int) -> str:
    """The CE metric of best-of-``n`` (``ce_n10`` is the published one), registered on first use: the
    same definition with its N, so CE numbers of different N never share a column."""
    name = f"ce_n{int(n)}"
    if name not in METRICS:
        ten = METRICS.get("ce_n10")
        definition = ten.definition.replace("N = 10", f"N = {int(n)}")
        METRICS.register(name, dataclasses.replace(ten, name=name, definition=definition))
    return name


def is_sample_metric(name: str) -> bool:
    """Whether ``name`` is one of the stochastic metrics (any CE N)."""
    return name in SAMPLE_METRICS or _CE_NAME.fullmatch(name) is not None
