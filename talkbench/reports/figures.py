"""Report figures (matplotlib, Agg backend): training curves, ablation curves, mouth-opening curves."""

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


def training_curves(curves: dict[str, dict[str, pd.DataFrame]], path: Path) -> Path:
    """curves: method -> {'<stage>/train/loss' ...: history (step, value)}; one panel per stage."""
    stages = sorted({key.split("/")[0] for per in curves.values() for key in per})
    fig, axes = plt.subplots(1, max(1, len(stages)), figsize=(4.5 * max(1, len(stages)), 3.4), squeeze=False)
    for ax, stage in zip(axes[0], stages):
        for method, per in curves.items():
            for key, hist in sorted(per.items()):
                if key.split("/")[0] != stage or hist.empty:
                    continue
                split = key.split("/")[1]
                ax.plot(
                    hist["step"],
                    hist["value"],
                    ls="-" if split == "train" else "--",
                    label=f"{method} {split}",
                )
        ax.set_title(f"stage: {stage}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    return _save(fig, path)


def ablation_curve(table: pd.DataFrame, key: str, metric: str, label: str, path: Path) -> Path:
    """table: columns [key, 'mean', 'std', 'n'] (+ optional 'series'); metric vs swept value, error bars."""
    fig, ax = plt.subplots(figsize=(5, 3.4))
    series = table.groupby("series") if "series" in table else [("", table)]
    for name, part in series:
        part = part.sort_values(key)
        x = part[key]
        numeric = pd.to_numeric(x, errors="coerce")
        xs = numeric if numeric.notna().all() else np.arange(len(x))
        ax.errorbar(
            xs, part["mean"], yerr=part["std"].fillna(0), marker="o", capsize=4, label=str(name) or None
        )
        if numeric.isna().any():
            ax.set_xticks(xs, x.astype(str))
    ax.set_xlabel(key)
    ax.set_ylabel(label)
    ax.set_title(f"{metric} vs {key.split('.')[-1]} (mean ± std over seeds)")
    if "series" in table:
        ax.legend(fontsize=7)
    return _save(fig, path)


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
