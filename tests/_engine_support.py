"""Test support for the engine: a tiny Method (audio energy -> vertex offsets), in-memory clips and a
minimal loader with make_loader's API (order a pure function of (seed, epoch)).

Used in-process by tests/test_engine*.py and by the subprocess scripts they start (resume, torchrun).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from talkbench.datasets.batch import Batch, collate
from talkbench.datasets.clip import Clip
from talkbench.datasets.spec import DatasetSpec, Split
from talkbench.methods.base import Method, Stage
from talkbench.registry import METHODS

FPS = 25
SPF = 640  # audio samples per motion frame at 16 kHz / 25 fps
V = 12


@dataclass
class DummyConfig:
    hidden: int = 8
    pre_epochs: int = 3
    fine_epochs: int = 4
    lr: float = 0.02
    batch_size: int = 2
    dropout: float = 0.2
    fine_schedule: str = "step"
    fine_selection: str = "val"
    grad_clip: float | None = 1.0
    nan_loss: bool = False


class DummyMethod(Method):
    """Linear map from per-frame audio energy to vertex offsets; 'pre' trains all, 'fine' only head."""

    name = "dummy"
    Config = DummyConfig
    uses_speaker_id = False

    def __init__(self, config: DummyConfig, spec: DatasetSpec):
        super().__init__(config, spec)
        self.encoder = nn.Linear(2, config.hidden)
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden, spec.n_vertices * 3)
        self.stage_log: list[tuple[str, dict, dict]] = []

    def stages(self) -> list[Stage]:
        c = self.config
        return [
            Stage("pre", c.pre_epochs, c.lr, sampler="bucketed", batch_size=c.batch_size),
            Stage(
                "fine", c.fine_epochs, c.lr, trainable=("head.",), sampler="sequential",
                batch_size=c.batch_size, optimizer="adamw", weight_decay=0.01, schedule=c.fine_schedule,
                step_size=2, gamma=0.5, grad_clip=c.grad_clip, selection=c.fine_selection,
            ),
        ]  # fmt: skip

    def begin_stage(self, stage: Stage) -> None:
        params = {n: p.detach().clone() for n, p in self.named_parameters()}
        grads = {n: p.requires_grad for n, p in self.named_parameters()}
        self.stage_log.append((stage.name, params, grads))

    def offsets(self, audio: torch.Tensor, n_frames: int) -> torch.Tensor:
        b = audio.shape[0]
        spf = audio.shape[1] // n_frames  # loaders align audio and motion: ~16000 / fps samples a frame
        frames = audio[:, : n_frames * spf].reshape(b, n_frames, spf)
        energy = frames.pow(2).mean(-1).add(1e-8).sqrt()
        feats = torch.stack([energy, torch.ones_like(energy)], -1)
        h = torch.tanh(self.encoder(feats))
        return self.head(self.drop(h)).view(b, n_frames, -1, 3)

    def loss(self, stage: str, batch: Batch) -> dict[str, torch.Tensor]:
        t = batch.vertices.shape[1]
        pred = batch.template[:, None] + self.offsets(batch.audio, t)
        m = batch.mask[:, :, None, None].float()
        mse = ((pred - batch.vertices) ** 2 * m).sum() / (m.sum() * pred.shape[2] * 3)
        vm = (batch.mask[:, 1:] & batch.mask[:, :-1])[:, :, None, None].float()
        dv = (pred[:, 1:] - pred[:, :-1]) - (batch.vertices[:, 1:] - batch.vertices[:, :-1])
        vel = (dv**2 * vm).sum() / (vm.sum() * pred.shape[2] * 3).clamp_min(1)
        loss = mse + 0.1 * vel
        if self.config.nan_loss:
            loss = loss * float("nan")
        return {"loss": loss, "mse": mse, "vel": vel}

    @torch.no_grad()
    def predict(self, audio, template, condition=None):
        t = max(1, round(audio.shape[-1] * self.spec.fps / 16000))
        return template[None] + self.offsets(audio[None], t)[0]


def register_dummy() -> None:
    """Register the dummy method and the in-memory dataset ('memory'); ``forget_dummy`` removes both."""
    from talkbench.datasets.registry import DATASETS

    if "dummy" not in METHODS:
        METHODS.register("dummy", DummyMethod)
    if "memory" not in DATASETS:
        DATASETS.register("memory", load_memory)


def forget_dummy() -> None:
    from talkbench.datasets.registry import DATASETS

    METHODS._items.pop("dummy", None)  # the registry has no public removal; keep others' lists clean
    DATASETS._items.pop("memory", None)


def load_memory(root=None, seed: int = 0, sentences: int = 5) -> MemoryData:
    """The loader registered as dataset 'memory' (configs name it; the tests build MemoryData directly)."""
    return MemoryData(seed, sentences)


def make_clip(rng: np.random.Generator, subject: str, sentence: int, template: np.ndarray, gain: np.ndarray):
    t = int(rng.integers(12, 30))
    amp = np.abs(np.sin(np.arange(t) * rng.uniform(0.2, 0.6))).astype(np.float32)
    audio = (rng.standard_normal((t, SPF)) * amp[:, None]).reshape(-1).astype(np.float32)
    verts = template[None] + amp[:, None, None] * gain[None] + 0.01 * rng.standard_normal((t, V, 3))
    return Clip(
        f"{subject}_s{sentence:02d}", subject, sentence, FPS, audio, verts.astype(np.float32), template
    )


class MemoryData:
    """In-memory stand-in for a loaded dataset: ``spec`` and ``split(name)`` (a list of Clip)."""

    def __init__(self, seed: int = 0, sentences: int = 5):
        rng = np.random.default_rng(seed)
        subjects = {"train": ("A", "B"), "val": ("C",), "test": ("D",)}
        self.spec = DatasetSpec(
            name="memory",
            fps=FPS,
            n_vertices=V,
            splits={k: Split(v) for k, v in subjects.items()},
            train_subjects=subjects["train"],
            regions={"lips": np.arange(4), "upper_face": np.arange(6, 12)},
            period=5,
        )
        gain = rng.standard_normal((V, 3)).astype(np.float32) * 0.1
        self._splits: dict[str, list[Clip]] = {}
        for split, subs in subjects.items():
            clips = []
            for s in subs:
                template = rng.standard_normal((V, 3)).astype(np.float32)
                clips += [make_clip(rng, s, i, template, gain) for i in range(sentences)]
            self._splits[split] = clips

    def split(self, name: str) -> list[Clip]:
        if name not in self._splits:
            raise KeyError(name)
        return self._splits[name]


class MemoryLoader:
    def __init__(self, clips, sampler="bucketed", batch_size=2, seed=0, shuffle=True, speaker_index=None):
        self.clips, self.sampler, self.batch_size = clips, sampler, batch_size
        self.seed, self.shuffle, self.speaker_index, self.epoch = seed, shuffle, speaker_index, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.clips) // self.batch_size)

    def __iter__(self):
        n = len(self.clips)
        order = np.arange(n)
        if self.sampler == "bucketed":  # similar lengths together, then shuffled batches
            order = np.argsort([c.n_frames for c in self.clips], kind="stable")
        batches = [order[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
        if self.shuffle:
            perm = np.random.default_rng([self.seed, self.epoch]).permutation(len(batches))
            batches = [batches[i] for i in perm]
        for idx in batches:
            yield collate([self.clips[i] for i in idx], self.speaker_index)


def memory_loader(
    view, sampler="bucketed", batch_size=2, seed=0, shuffle=True, num_workers=0, pin_memory=False,
    speaker_index=None,
):  # fmt: skip
    return MemoryLoader(view, sampler, batch_size, seed, shuffle, speaker_index)


class ListLogger:
    def __init__(self, path: Path | None = None, kill_at_step: int | None = None):
        self.metrics: list[tuple[int, dict[str, float]]] = []
        self.artifacts: list[str] = []
        self.path = path
        self.kill_at_step = kill_at_step

    def log_metrics(self, metrics, step):
        self.metrics.append((step, dict(metrics)))
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as fh:
                fh.write(json.dumps([step, metrics]) + "\n")
        if self.kill_at_step is not None and step == self.kill_at_step:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGKILL)  # die like an OOM-killed or pre-empted job

    def log_artifact(self, path):
        self.artifacts.append(str(path))


def dummy_config(*overrides: str, seed: int = 0):
    from talkbench.config import load_config

    register_dummy()
    return load_config("dummy", dataset="memory", overrides=["device=cpu", *overrides], seed=seed)


def build(cfg, data: MemoryData) -> DummyMethod:
    from talkbench.checkpoint import seed_everything

    seed_everything(cfg.seed)
    return DummyMethod(cfg.method_config, data.spec)


def run_job(args: list[str]) -> None:
    """One training job: ``RUN_DIR OUT.pt [resume] [kill=STEP] [set=KEY=VALUE ...]``."""
    from talkbench.engine import train

    run_dir, out = Path(args[0]), Path(args[1])
    flags = args[2:]
    resume = "resume" in flags
    kill = next((int(f.split("=", 1)[1]) for f in flags if f.startswith("kill=")), None)
    sets = [f.split("=", 1)[1] for f in flags if f.startswith("set=")]
    data = MemoryData()
    cfg = dummy_config(*sets)
    method = build(cfg, data)
    logger = ListLogger(run_dir / "metrics.jsonl", kill_at_step=kill)
    result = train(method, data, cfg, run_dir, logger=logger, resume=resume, progress=False,
                   loader_factory=memory_loader)  # fmt: skip
    method.eval()
    preds = [
        method.predict(torch.from_numpy(c.audio), torch.from_numpy(c.template)) for c in data.split("test")
    ]
    torch.save({"state": method.state_dict(), "best_epochs": result.best_epochs, "history": result.history,
                "resumed_from": result.resumed_from, "predictions": preds}, out)  # fmt: skip


def ddp_job(out_dir: Path, data_root: str | None = None) -> None:
    """One rank under torchrun: train, record what this rank logged, wrote and saw, save its weights.

    With ``data_root`` (a SynthTalk folder) training uses the real make_loader and its rank sharding;
    otherwise in-memory clips and the engine's own ShardedLoader.
    """
    import os

    from talkbench.engine import train

    rank = int(os.environ["RANK"])
    if data_root is not None:
        from talkbench.datasets import load_dataset

        data, factory = load_dataset("synthtalk", root=data_root), None
    else:
        data, factory = MemoryData(), memory_loader
    cfg = dummy_config(
        "dummy.pre_epochs=2", "dummy.fine_epochs=2", "train.checkpoint_every=1", "dummy.batch_size=4"
    )
    method = build(cfg, data)
    seen: list[str] = []
    original_loss = method.loss

    def spy_loss(stage, batch):
        if method.training:
            seen.extend(batch.names)
        return original_loss(stage, batch)

    method.loss = spy_loss
    writes: list[str] = []
    real_save = torch.save

    def spy_save(obj, f, *a, **k):
        target = getattr(f, "name", f)
        if isinstance(target, str | os.PathLike):  # files, not the in-memory buffers of collectives
            writes.append(str(target))
        return real_save(obj, f, *a, **k)

    torch.save = spy_save
    logger = ListLogger()
    try:
        result = train(method, data, cfg, out_dir / "run", logger=logger, progress=False,
                       loader_factory=factory)  # fmt: skip
    finally:
        torch.save = real_save
    real_save({"state": method.state_dict(), "logged": logger.metrics, "artifacts": logger.artifacts,
               "writes": writes, "seen": seen, "world_size": result.world_size},
              out_dir / f"rank{rank}.pt")  # fmt: skip


def main(argv: list[str]) -> None:
    """Subprocess entry: jobs separated by ``--``, run one after the other in this process."""
    torch.set_num_threads(1)
    if argv[0] == "ddp":
        ddp_job(Path(argv[1]), *argv[2:3])
        return
    job: list[str] = []
    for arg in [*argv, "--"]:
        if arg == "--":
            if job:
                run_job(job)
            job = []
        else:
            job.append(arg)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main(sys.argv[1:])
