"""Report figures (matplotlib, Agg backend): training curves, ablation curves, fine-tuning data-fraction
curves, mouth-opening curves, the spread of a sampling method's samples."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _split_terms(per: dict[str, pd.DataFrame], stage: str, split: str) -> list[str]:
    return sorted(k.split("/")[2] for k in per if k.startswith(f"{stage}/{split}/"))


def _total(terms: list[str]) -> str | None:
    """The curve a panel shows: the total ``loss`` when logged, else the first term."""
    return "loss" if "loss" in terms else (terms[0] if terms else None)


def training_curves(curves: dict[str, dict[str, pd.DataFrame]], path: Path) -> Path:
    """The figure of ``training_figure`` saved as a PNG."""
    return _save(training_figure(curves), path)


def training_figure(curves: dict[str, dict[str, pd.DataFrame]]):
    """curves: row label -> {'<stage>/<train|val>/<term>': history (step, value)}.

    Like with like: per stage, training and validation share a panel only when every method logs
    the same loss terms for both (then their totals are the same quantity); otherwise training and
    validation get a panel each and the legend names each curve's terms. A stage with one logged
    epoch is drawn as a marker, so it is never an empty panel.
    """
    stages = sorted({key.split("/")[0] for per in curves.values() for key in per})
    panels: list[tuple[str, tuple[str, ...]]] = []
    for stage in stages:
        same = all(
            _split_terms(per, stage, "train") == _split_terms(per, stage, "val")
            for per in curves.values()
            if _split_terms(per, stage, "train") and _split_terms(per, stage, "val")
        )
        panels += [(stage, ("train", "val"))] if same else [(stage, ("train",)), (stage, ("val",))]
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(4.8 * max(1, len(panels)), 3.6), squeeze=False)
    for ax, (stage, splits) in zip(axes[0], panels):
        positive = True
        for label, per in curves.items():
            for split in splits:
                terms = _split_terms(per, stage, split)
                term = _total(terms)
                hist = per.get(f"{stage}/{split}/{term}") if term else None
                if hist is None or hist.empty:
                    continue
                positive &= bool((hist["value"] > 0).all())
                named = f"{label} {split}" + (
                    f" [{term}: {' + '.join(t for t in terms if t != term)}]"
                    if len(splits) == 1 and len(terms) > 1
                    else ""
                )
                ax.plot(
                    hist["step"],
                    hist["value"],
                    ls="-" if split == "train" else "--",
                    marker="o" if len(hist) < 3 else None,  # one epoch: a visible point
                    label=named,
                )
        what = (
            "training and validation"
            if len(splits) == 2
            else {"train": "training", "val": "validation"}[splits[0]]
        )
        ax.set_title(f"stage {stage}: {what} loss", fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        if positive:
            ax.set_yscale("log")
        ax.legend(fontsize=6)
    return fig


def ablation_curve(table: pd.DataFrame, key: str, metric: str, label: str, path: Path) -> Path:
    """The figure of ``ablation_figure`` saved as a PNG."""
    return _save(ablation_figure(table, key, metric, label), path)


def ablation_figure(table: pd.DataFrame, key: str, metric: str, label: str):
    """table: columns [key, 'mean', 'std', 'count'] (+ optional 'series', named ``setting=value``);
    metric vs swept value, error bars (std over seeds) only where a point has several seeds."""
    fig, ax = plt.subplots(figsize=(5, 3.4))
    series = table.groupby("series") if "series" in table else [("", table)]
    for name, part in series:
        part = part.sort_values(key)
        x = part[key]
        numeric = pd.to_numeric(x, errors="coerce")
        xs = numeric if numeric.notna().all() else np.arange(len(x))
        several = part["count"] > 1 if "count" in part else pd.Series(False, index=part.index)
        yerr = part["std"].where(several, 0.0).fillna(0.0)
        ax.errorbar(xs, part["mean"], yerr=yerr, marker="o", capsize=4, label=str(name) or None)
        if numeric.isna().any():
            ax.set_xticks(xs, x.astype(str))
    ax.set_xlabel(key)
    ax.set_ylabel(label)
    seeds = table["count"] if "count" in table else pd.Series([1])
    what = (
        "mean ± std over seeds"
        if (seeds > 1).all()
        else ("one seed" if (seeds == 1).all() else "mean ± std where several seeds")
    )
    ax.set_title(f"{metric} vs {key.split('.')[-1]} ({what})", fontsize=9)
    if "series" in table:
        ax.legend(fontsize=7)
    return fig


def fraction_curve(table: pd.DataFrame, metric: str, label: str, path: Path) -> Path:
    """The figure of ``fraction_figure`` saved as a PNG."""
    return _save(fraction_figure(table, metric, label), path)


def fraction_figure(table: pd.DataFrame, metric: str, label: str):
    """table: columns fraction, series, mean, low, high (the 95 % CI; NaN where there is none):
    the metric against the share of training clips, one line per series (fine-tuned from a source,
    from scratch), CI bars where the data supports one."""
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for name, part in table.groupby("series", sort=False):
        part = part.sort_values("fraction")
        has = part["low"].notna() & part["high"].notna()
        below = (part["mean"] - part["low"]).where(has, 0.0)
        above = (part["high"] - part["mean"]).where(has, 0.0)
        ax.errorbar(part["fraction"], part["mean"], yerr=[below, above], marker="o", capsize=4, label=name)
    fractions = sorted(table["fraction"].unique())
    ax.set_xticks(fractions, [f"{f:g}" for f in fractions])
    ax.set_xlabel("share of the training clips (dataset.train_fraction)")
    ax.set_ylabel(label)
    ax.set_title(f"{metric} vs training data (95 % CI over seeds and clips where shown)", fontsize=9)
    ax.legend(fontsize=7)
    return fig


def mouth_opening(
    curves: dict[str, np.ndarray], gt: np.ndarray, fps: float, title: str, path: Path, unit: str = "m"
) -> Path:
    """Mouth opening of each method against the ground truth for one clip (mm for metric data)."""
    scale, label = (1000.0, "mm") if unit == "m" else (1.0, unit)
    fig, ax = plt.subplots(figsize=(8, 3.0))
    t = np.arange(len(gt)) / fps
    ax.plot(t, gt * scale, color="black", lw=2, label="ground truth")
    for method, curve in curves.items():
        n = min(len(curve), len(gt))
        ax.plot(t[:n], curve[:n] * scale, lw=1.2, label=method)
    ax.set_xlabel("time (s)")
    ax.set_ylabel(f"mouth opening ({label})")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.28), frameon=False)
    return _save(fig, path)


def sample_spread(curves: dict[str, np.ndarray], clip: str, path: Path, unit: str = "vertex units") -> Path:
    """Per-frame spread of each sampling method's samples on the lips, for one clip (frames on x)."""
    fig, ax = plt.subplots(figsize=(8, 3.0))
    for method, curve in curves.items():
        ax.plot(np.arange(len(curve)), curve, lw=1.2, label=method)
    ax.set_xlabel("frame")
    ax.set_ylabel(f"lip spread of the samples ({unit})")
    ax.set_title(clip)
    ax.set_ylim(bottom=0)
    if curves:
        ax.legend(fontsize=7)
    return _save(fig, path)


def speed_quality(points: pd.DataFrame, metric: str, path: Path) -> Path:
    """The figure of ``speed_quality_figure`` saved as a PNG."""
    return _save(speed_quality_figure(points, metric), path)


def speed_quality_figure(points: pd.DataFrame, metric: str):
    """points: columns label, rtf, value (metric / table scale) and optional err (std over seeds);
    quality against real-time factor (log x: compute per audio second), one labelled point per row."""
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    for _, p in points.iterrows():
        err = p.get("err", 0.0)
        ax.errorbar(p["rtf"], p["value"], yerr=err if np.isfinite(err) else 0.0, marker="o", capsize=3)
        ax.annotate(str(p["label"]), (p["rtf"], p["value"]), fontsize=7, xytext=(4, 4),
                    textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("real-time factor (s of compute per s of audio, log)")
    ax.set_ylabel(metric)
    ax.axvline(1.0, color="grey", lw=0.8, ls=":")  # real time
    ax.set_title(f"{metric} against speed (better: down and left)", fontsize=9)
    return fig
