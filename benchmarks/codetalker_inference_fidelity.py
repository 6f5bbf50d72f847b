"""Train CodeTalker on SynthTalk (or load a trained run), then score its test clips with each
inference mode (LVE, MVE, pooled over frames and over every training-speaker condition, as the
evaluator pools them).

    .venv/bin/python benchmarks/codetalker_inference_fidelity.py --preset tiny --data tiny
    .venv/bin/python benchmarks/codetalker_inference_fidelity.py --preset synthtalk --data small \
        --vq-epochs 4 --pred-epochs 6
    TALKBENCH_HOME=/tmp/home .venv/bin/python benchmarks/codetalker_inference_fidelity.py \
        --run-dir ~/.cache/talkbench/runs/<run_id>

    .venv/bin/python benchmarks/codetalker_inference_fidelity.py \
        --speech /work/shared/data/speech/faceformer_demo.wav --seconds 10

``--run-dir``: a trained run's folder (runs/<run_id>, its model/ bundle is used) or a model bundle
folder; read only. The test split is that of the run's dataset (name and options of its config),
loaded from TALKBENCH_HOME: point it at a home with that dataset's cache (a copy; the loader may
write there). ``--threads`` (default 1) fixes the intra-op threads.

``--speech``: no dataset, no training: the paper-vocaset architecture with random weights (as the
speed benchmark builds it: a log-mel encoder in place of wav2vec2, feat_map N(0, 0.02)) animates the
first ``--seconds`` of a real recording under condition 0 with each mode; `exact` is the reference:
per frame the largest vertex error (LVE-style, over all vertices: the VOCASET lip index file is not
in the repository) and the mean vertex error (MVE), next to exact's own offset magnitudes.

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
from talkbench.model_bundle import read_bundle

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


def paper_vocaset_model(seed: int = 0) -> CodeTalker:
    """The architecture of benchmarks/test_bench_codetalker.py's paper_model, random weights."""
    from talkbench.datasets.spec import DatasetSpec, Split

    torch.manual_seed(seed)
    raw = yaml.safe_load((PRESETS / "paper-vocaset.yaml").read_text())["codetalker"]
    raw["audio"] = {"kind": "mel", "d_model": 256, "conv_dim": 256, "n_layers": 2, "n_heads": 4}
    subjects = tuple(f"S{i}" for i in range(8))
    spec = DatasetSpec("bench", 30.0, 5023, {"train": Split(subjects)}, subjects, period=30)
    model = CodeTalker(CodeTalkerConfig(**raw), spec)
    torch.nn.init.normal_(model.predictor.feat_map.weight, std=0.02)
    return model.eval()


def speech_offsets(path: Path, seconds: float, modes: list[str], refreshes: list[str]) -> None:
    from talkbench.animate import load_audio

    audio, note = load_audio(path)
    audio = torch.as_tensor(audio[: int(seconds * 16000)])
    print(f"{note}; first {len(audio) / 16000:.2f} s")
    model = paper_vocaset_model()
    template = torch.zeros(5023, 3)
    runs = [(m, r) for m in modes for r in (refreshes if m == "incremental" else [None])]
    preds, cpu = {}, {}
    for mode, refresh in runs:
        name = mode if refresh is None else f"{mode}/{refresh}"
        if refresh is not None:
            model.config.incremental_refresh = refresh
        t0 = time.process_time()
        preds[name] = model.predict(audio, template, condition=0, mode=mode).numpy()
        cpu[name] = time.process_time() - t0
        print(f"{name}: {cpu[name]:.1f} CPU s, {len(preds[name])} frames", flush=True)
    ref = preds[modes[0]]
    size = np.linalg.norm(ref - template.numpy(), axis=-1)  # exact's offsets, (T, V)
    print(f"{modes[0]} offsets: mean {size.mean():.4g}, mean per-frame max {size.max(1).mean():.4g}")
    for name, p in preds.items():
        err = np.linalg.norm(p - ref, axis=-1)
        lve, mve = err.max(1).mean(), err.mean()
        print(f"{name:24s} LVE-style {lve:.4g} ({lve / size.max(1).mean() * 100:.2f} % of exact's) "
              f"MVE {mve:.4g} ({mve / size.mean() * 100:.2f} %) max abs {np.abs(p - ref).max():.4g} "
              f"cpu {cpu[name]:.1f} s")


def load_run(run_dir: Path) -> tuple[CodeTalker, object]:
    """The trained model of a run folder (its model/ bundle) or of a bundle folder, and its dataset."""
    root = run_dir / "model" if (run_dir / "model").is_dir() else run_dir
    bundle = read_bundle(root)
    if bundle.config.method != "codetalker":
        raise SystemExit(f"{root}: a {bundle.config.method} model, not codetalker")
    model = bundle.method("cpu")
    data = bundle.config.dataset
    ds = load_dataset(data.name, data.root, **dict(data.options or {}))
    if ds.spec.train_subjects != bundle.spec.train_subjects:
        raise SystemExit(f"{root}: its training speakers differ from those of dataset {data.name}")
    print(f"loaded {root} (seed {bundle.config.seed}, preset {bundle.config.preset}, "
          f"configured inference {model.config.inference})")
    return model, ds


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
    ap.add_argument("--run-dir", type=Path, help="a trained run (runs/<run_id>) or model folder: no training")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--speech", type=Path, help="a recording: paper-vocaset architecture, random weights")
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.speech is not None:
        speech_offsets(args.speech, args.seconds, args.modes.split(","), args.refresh.split(","))
        return
    torch.manual_seed(args.seed)
    if args.run_dir is not None:
        model, ds = load_run(args.run_dir)
    else:
        cfg = CodeTalkerConfig(**yaml.safe_load((PRESETS / f"{args.preset}.yaml").read_text())["codetalker"])
        ds = load_dataset("synthtalk", preset=args.data)
        model = CodeTalker(cfg, ds.spec)
        epochs = {"vqvae": args.vq_epochs or cfg.vq_epochs, "predictor": args.pred_epochs or cfg.pred_epochs}
        t0 = time.time()
        train(model, ds, epochs, args.seed)
        print(f"trained in {time.time() - t0:.0f} s")
    print(f"test clips: {len(ds.split('test'))}, conditions: {len(ds.spec.train_subjects)}")
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
