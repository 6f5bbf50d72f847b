"""Train CodeTalker on SynthTalk, then score its test clips with each inference mode (LVE, MVE,
pooled over frames and over every training-speaker condition, as the evaluator pools them).

    .venv/bin/python benchmarks/codetalker_inference_fidelity.py --preset tiny --data tiny
    .venv/bin/python benchmarks/codetalker_inference_fidelity.py --preset synthtalk --data small \
        --vq-epochs 4 --pred-epochs 6

A plain training loop over the method's own stages (optimiser, lr, frozen parts as declared), so the
comparison does not depend on the pipeline. Not a test: it prints a table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from talkbench.datasets import load_dataset
from talkbench.datasets.loader import make_loader
from talkbench.methods.codetalker import CodeTalker, CodeTalkerConfig
from talkbench.metrics.core import lve_frames, mve_frames

PRESETS = Path(__file__).resolve().parents[1] / "talkbench" / "presets" / "codetalker"


def train(model: CodeTalker, ds, epochs: dict[str, int], seed: int) -> None:
    for stage in model.stages():
        model.begin_stage(stage)
        params = [p for n, p in model.named_parameters() if n.startswith(stage.trainable) and p.requires_grad]
        if stage.optimizer == "adamw":
            opt = torch.optim.AdamW(params, lr=stage.lr, weight_decay=stage.weight_decay)
        else:
            opt = torch.optim.Adam(params, lr=stage.lr)
        loader = make_loader(ds.split("train"), stage.sampler, stage.batch_size, seed=seed)
        model.train()
        for epoch in range(epochs[stage.name]):
            loader.set_epoch(epoch)
            total = 0.0
            for batch in loader:
                loss = model.loss(stage.name, batch)["loss"]
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss)
            print(f"{stage.name} epoch {epoch}: loss {total / len(loader):.5f}", flush=True)
    model.eval()


def score(model: CodeTalker, ds, modes: list[str]) -> dict[str, dict[str, float]]:
    lips = ds.spec.regions["lips"]
    n_cond = len(ds.spec.train_subjects)
    sums = {m: {"lve": 0.0, "mve": 0.0, "frames": 0, "seconds": 0.0} for m in modes}
    outs: dict[str, list[np.ndarray]] = {m: [] for m in modes}
    for clip in ds.split("test"):
        audio = torch.as_tensor(clip.audio)
        template = torch.as_tensor(clip.template)
        for m in modes:
            t0 = time.process_time()
            pred = model.predict_conditions(audio, template, range(n_cond), m).numpy()
            sums[m]["seconds"] += time.process_time() - t0
            outs[m].append(pred)
            for p in pred:
                sums[m]["lve"] += float(lve_frames(p, clip.vertices, lips).sum())
                sums[m]["mve"] += float(mve_frames(p, clip.vertices).sum())
                sums[m]["frames"] += min(len(p), len(clip.vertices))
    ref = modes[0]
    result = {}
    for m in modes:
        s = sums[m]
        dev = max(float(np.abs(a - b).max()) for a, b in zip(outs[m], outs[ref]))
        result[m] = {"lve": s["lve"] / s["frames"], "mve": s["mve"] / s["frames"],
                     "cpu_s": s["seconds"], "max_abs_vs_" + ref: dev}
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--data", default="tiny", help="SynthTalk preset")
    ap.add_argument("--vq-epochs", type=int)
    ap.add_argument("--pred-epochs", type=int)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--modes", default="exact,incremental,fast")
    ap.add_argument("--refresh", default="doubling,none")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    cfg = CodeTalkerConfig(**yaml.safe_load((PRESETS / f"{args.preset}.yaml").read_text())["codetalker"])
    ds = load_dataset("synthtalk", preset=args.data)
    model = CodeTalker(cfg, ds.spec)
    epochs = {"vqvae": args.vq_epochs or cfg.vq_epochs, "predictor": args.pred_epochs or cfg.pred_epochs}
    t0 = time.time()
    train(model, ds, epochs, args.seed)
    print(f"trained in {time.time() - t0:.0f} s; test clips: {len(ds.split('test'))}")
    modes = args.modes.split(",")
    rows = {}
    for refresh in args.refresh.split(","):
        model.config.incremental_refresh = refresh
        res = score(model, ds, modes)
        for m, r in res.items():
            rows[m if m != "incremental" else f"incremental/{refresh}"] = r
    base = rows[modes[0]]
    for name, r in rows.items():
        rel_lve = (r["lve"] / base["lve"] - 1) * 100
        rel_mve = (r["mve"] / base["mve"] - 1) * 100
        extra = ", ".join(f"{k} {v:.4g}" for k, v in r.items())
        print(f"{name:24s} LVE {rel_lve:+.2f} % MVE {rel_mve:+.2f} % vs {modes[0]}  ({extra})")


if __name__ == "__main__":
    main()
