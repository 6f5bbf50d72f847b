"""The metric layer: LVE/FDD/MVE as the reference code computes them, lip-sync and speaking-style
measures, a versioned registry, and evaluation with bootstrap CIs and paired tests."""

from talkbench.metrics.core import fdd, lve, lve_frames, mve, mve_frames, upper_face_dynamics, vertex_errors
from talkbench.metrics.evaluate import Evaluation, Evaluator, evaluate
from talkbench.metrics.lipsync import (
    av_offset,
    bilabial_closures,
    load_alignments,
    mouth_opening,
    pearson,
    vowel_openings,
)
from talkbench.metrics.registry import METRIC_ORDER, METRICS, MetricInfo, metric_info
from talkbench.metrics.stats import PairedTest, paired_test

__all__ = [
    "METRICS", "METRIC_ORDER", "Evaluation", "Evaluator", "MetricInfo", "PairedTest", "av_offset",
    "bilabial_closures",
    "evaluate", "fdd", "load_alignments", "lve", "lve_frames", "metric_info", "mouth_opening", "mve",
    "mve_frames", "paired_test", "pearson", "upper_face_dynamics",
    "vertex_errors", "vowel_openings",
]
