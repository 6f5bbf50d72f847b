"""Acceptance (slow): CodeTalker trained on SynthTalk `small` beats the template floor by >= 50% LVE
on the test speakers. Also runnable as a script that prints the figures:

    python tests/test_codetalker_acceptance.py [--set codetalker.key=value ...]

The slow test goes through ``bench run``; the script trains through ``talkbench.engine.train`` and
computes LVE with ``talkbench.metrics`` (pooled over frames and over the training-speaker conditions)
for each inference mode, which gives the fast-vs-exact difference.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import numpy as np
import pytest
import torch

from talkbench.config import load_config
from talkbench.engine import train
from talkbench.metrics import lve_frames
from talkbench.registry import METHODS


class _PrintLogger:
    """Engine logger that prints each epoch's metrics (so long runs show progress)."""

    def __init__(self):
        self.t0 = time.time()

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        shown = " ".join(f"{k}={v:.5g}" for k, v in sorted(metrics.items()))
        print(f"[{time.time() - self.t0:7.1f}s] epoch {step}: {shown}", flush=True)

    def log_artifact(self, path) -> None:
        pass


def pooled_lve(model, view, lips, modes=("fast",)) -> dict[str, float]:
    """Test-set LVE per inference mode and for the template floor (sum of per-frame LVE / frames)."""
    sums = {m: 0.0 for m in (*modes, "template")}
    frames = 0
    n_cond = len(model.spec.train_subjects)
    for clip in view:
        audio = torch.from_numpy(np.array(clip.audio))
        template = torch.from_numpy(np.array(clip.template))
        gt = np.asarray(clip.vertices)
        sums["template"] += n_cond * float(
            lve_frames(np.broadcast_to(clip.template, gt.shape), gt, lips).sum()
        )
        for mode in modes:  # mode outer: all conditions of one mode come from one batched pass
            for cond in range(n_cond):
                pred = model.predict(audio, template, condition=cond, mode=mode).numpy()
                sums[mode] += float(lve_frames(pred, gt, lips).sum())
        frames += n_cond * len(gt)
    return {k: v / frames for k, v in sums.items()}


def run(overrides=(), modes=("fast",), seed: int = 0, windows=()) -> dict[str, float]:
    cfg = load_config("codetalker", dataset="synthtalk", preset="synthtalk", overrides=overrides, seed=seed)
    t0 = time.time()
    data = cfg.dataset.load()
    model = METHODS.get("codetalker")(cfg.method_config, data.spec)
    t1 = time.time()
    with tempfile.TemporaryDirectory() as run_dir:
        result = train(model, data, cfg, run_dir, logger=_PrintLogger(), progress=False)
    t2 = time.time()
    model.eval()
    with torch.no_grad():
        lve = pooled_lve(model, data.split("test"), data.spec.regions["lips"], modes)
        for w in windows:  # the fast mode's accuracy/cost trade-off, on the same trained model
            model.config.fast_window = w
            lve[f"fast_w{w}"] = pooled_lve(model, data.split("test"), data.spec.regions["lips"], ("fast",))[
                "fast"
            ]
    t3 = time.time()
    out = {f"lve_{k}": v for k, v in lve.items()}
    out.update(data_s=t1 - t0, train_s=t2 - t1, eval_s=t3 - t2, total_s=t3 - t0)
    out.update({f"{k}_s": v for k, v in result.stage_seconds.items()})
    out.update({f"final_{k}": v for k, v in result.final_metrics.items() if "loss" in k or "perplexity" in k})
    return out


@pytest.mark.slow
def test_bench_run_codetalker_beats_template_floor_on_synthtalk_small(tmp_path):
    """`bench run --method codetalker` (default: SynthTalk small, synthtalk preset) against the
    `template` floor, both through the real pipeline and read back from the tracking store."""
    from typer.testing import CliRunner

    from talkbench import tracking
    from talkbench.cli import app

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    seconds = {}
    for method in ("template", "codetalker"):
        t0 = time.time()
        out = CliRunner().invoke(app, ["run", "--method", method, "--tracking-uri", uri, "--no-progress"])
        seconds[method] = time.time() - t0
        assert out.exit_code == 0, out.output
    runs = tracking.Tracker(uri).search_runs("synthtalk")
    lve = {
        m: float(runs.loc[runs["tags.talkbench.method"] == m, "metrics.test/lve"].iloc[0])
        for m in ("template", "codetalker")
    }
    print(lve, seconds)
    assert lve["codetalker"] <= 0.5 * lve["template"], (lve, seconds)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--modes", default="fast")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--windows", default="", help="extra fast_window values to evaluate, e.g. 8,64")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    windows = tuple(int(w) for w in args.windows.split(",") if w)
    res = run(args.set, tuple(args.modes.split(",")), windows=windows)
    for k, v in res.items():
        print(f"{k:32s} {v:.6g}")
    sys.exit(
        0 if res["lve_fast" if "fast" in args.modes else "lve_exact"] <= 0.5 * res["lve_template"] else 1
    )
