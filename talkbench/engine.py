"""The training engine: runs a method's stages with freezing, optimisers, schedules, AMP, clipping,
validation-based selection, atomic checkpoints, exact resume and DDP under ``torchrun``.

Methods hold only their model and losses; everything generic lives here. On CPU a run killed after a
checkpoint and resumed ends with weights bit-identical to an uninterrupted run: the checkpoint holds
model, optimiser, scheduler, best-so-far state, the position (stage, epoch) and every RNG state, and
the loaders' order is a pure function of (seed, epoch).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from talkbench import checkpoint as ckpt
from talkbench import distributed
from talkbench.config import RunConfig
from talkbench.errors import ConfigError, TalkbenchError
from talkbench.methods.base import Method, Stage

OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("constant", "step", "cosine")
SAMPLERS = ("sequential", "bucketed", "triplet")
SELECTIONS = ("val", "last")


class Logger(Protocol):
    """What the engine logs to (the pipeline passes an MLflow-backed one)."""

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    def log_artifact(self, path: str | Path) -> None: ...


@dataclass
class TrainResult:
    final_metrics: dict[str, float] = field(default_factory=dict)  # last logged value per key
    best_epochs: dict[str, int] = field(default_factory=dict)  # stage -> selected epoch (0-based)
    stage_seconds: dict[str, float] = field(default_factory=dict)  # wall time per stage
    history: list[tuple[int, dict[str, float]]] = field(default_factory=list)  # (global epoch, metrics)
    selection: dict[str, str] = field(default_factory=dict)  # stage -> rule actually used
    checkpoint: Path | None = None  # final checkpoint (model weights after the last stage)
    resumed_from: int | None = None  # global epoch the run resumed at
    device: str = "cpu"
    precision: str = "fp32"
    world_size: int = 1


# -- devices and precision ----------------------------------------------------------------------
def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("device 'cuda' requested but no CUDA device is available; use --device cpu")
        return torch.device("cuda", local_rank) if device == "cuda" else torch.device(device)
    if device != "cpu":
        raise ConfigError(f"unknown device '{device}'; expected auto, cpu or cuda")
    return torch.device("cpu")


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision not in ("auto", "fp32", "bf16"):
        raise ConfigError(f"unknown precision '{precision}'; expected auto, fp32 or bf16")
    bf16_ok = device.type != "cuda" or not torch.cuda.is_available() or torch.cuda.is_bf16_supported()
    if precision == "auto":  # bf16 autocast on GPUs that have it (Ampere and later), else fp32
        return "bf16" if device.type == "cuda" and bf16_ok else "fp32"
    if precision == "bf16" and not bf16_ok:
        raise ConfigError("precision 'bf16' requested but this GPU has no bfloat16 support; use fp32")
    return precision


def autocast(device: torch.device, precision: str):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


# -- stage plumbing -----------------------------------------------------------------------------
def check_stages(stages: list[Stage], method_name: str) -> None:
    """One clear ConfigError for a malformed stage list (the method builds it from its config)."""
    seen = set()
    for s in stages:
        where = f"method '{method_name}', stage '{s.name}'"
        if s.name in seen:
            raise ConfigError(f"{where}: duplicate stage name")
        seen.add(s.name)
        checks = [
            (s.optimizer in OPTIMIZERS, f"optimizer '{s.optimizer}' (expected {', '.join(OPTIMIZERS)})"),
            (s.schedule in SCHEDULES, f"schedule '{s.schedule}' (expected {', '.join(SCHEDULES)})"),
            (s.sampler in SAMPLERS, f"sampler '{s.sampler}' (expected {', '.join(SAMPLERS)})"),
            (s.selection in SELECTIONS, f"selection '{s.selection}' (expected val or last)"),
            (s.epochs >= 0, f"epochs {s.epochs} (expected >= 0)"),
            (s.batch_size >= 1, f"batch_size {s.batch_size} (expected >= 1)"),
            (s.lr > 0 or s.epochs == 0, f"lr {s.lr} (expected > 0)"),
            (s.grad_clip is None or s.grad_clip > 0, f"grad_clip {s.grad_clip} (expected > 0 or null)"),
        ]
        for ok, what in checks:
            if not ok:
                raise ConfigError(f"{where}: invalid {what}")


def training_fingerprint(cfg: RunConfig) -> str:
    """Hash of the settings that shape training; a resume may change the rest (device, workers, eval)."""
    d = cfg.to_dict()
    for key in ("device", "eval", "preset"):
        d.pop(key, None)
    for key in ("num_workers", "log_every", "checkpoint_every"):
        d["train"].pop(key, None)
    blob = json.dumps(d, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def freeze_for(method: Method, stage: Stage) -> list[nn.Parameter]:
    """requires_grad True only for parameters matching the stage's prefixes; returns those."""
    trainable = {name for name, _ in method.named_trainable(stage)}
    params = []
    for name, p in method.named_parameters():
        p.requires_grad_(name in trainable)
        if name in trainable:
            params.append(p)
    if not params:
        raise ConfigError(
            f"method '{method.name}', stage '{stage.name}': no parameter matches trainable "
            f"{list(stage.trainable)}"
        )
    return params


def build_optimizer(stage: Stage, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    cls = torch.optim.AdamW if stage.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=stage.lr, betas=tuple(stage.betas), weight_decay=stage.weight_decay)


def build_scheduler(stage: Stage, opt: torch.optim.Optimizer):
    """Stepped once per epoch. ``constant`` has no scheduler."""
    if stage.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, stage.step_size), gamma=stage.gamma)
    if stage.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, stage.epochs))
    return None


class _LossModule(nn.Module):
    """Routes ``method.loss`` through ``forward`` so DistributedDataParallel sees every step."""

    def __init__(self, method: Method):
        super().__init__()
        self.method = method

    def forward(self, stage: str, batch):
        return self.method.loss(stage, batch)


def _make_loader_kwargs(factory: Callable, **kw) -> dict[str, Any]:
    params = inspect.signature(factory).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return kw
    return {k: v for k, v in kw.items() if k in params}


def _split_or_none(data, name: str):
    try:
        view = data.split(name)
    except (KeyError, TalkbenchError):
        return None
    return view if len(view) > 0 else None


def _progress(enabled: bool):
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    enabled = enabled and console.is_terminal and sys.stderr.isatty()
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("epochs  loss {task.fields[loss]}  val {task.fields[val]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
        transient=False,
    )


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


# -- the engine ---------------------------------------------------------------------------------
def train(
    method: Method,
    data,
    cfg: RunConfig,
    run_dir: str | Path,
    logger: Logger | None = None,
    resume: bool = False,
    progress: bool = True,
    loader_factory: Callable | None = None,
) -> TrainResult:
    """Train ``method`` on ``data`` (``data.spec``, ``data.split(name)``) through all its stages.

    ``loader_factory`` defaults to ``talkbench.datasets.make_loader``. Checkpoints go to
    ``run_dir/checkpoints``; ``resume=True`` continues from ``checkpoints/last.pt`` when present.
    """
    if loader_factory is None:
        from talkbench.datasets import make_loader as loader_factory
    run_dir = Path(run_dir)
    ckpt_dir = run_dir / "checkpoints"
    dev_name = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    dinfo = distributed.setup(use_cuda=dev_name.startswith("cuda"))
    try:
        return _Trainer(method, data, cfg, ckpt_dir, logger, dinfo, loader_factory, progress).run(resume)
    finally:
        distributed.teardown(dinfo)


class _Trainer:
    def __init__(self, method, data, cfg: RunConfig, ckpt_dir: Path, logger, dinfo, loader_factory, progress):
        self.method = method
        self.data = data
        self.cfg = cfg
        self.ckpt_dir = ckpt_dir
        self.logger = logger
        self.dist = dinfo
        self.loader_factory = loader_factory
        self.progress = progress
        self.device = resolve_device(cfg.device, dinfo.local_rank)
        self.precision = resolve_precision(cfg.precision, self.device)
        self.pin = self.device.type == "cuda"
        self.result = TrainResult(
            device=str(self.device), precision=self.precision, world_size=dinfo.world_size
        )
        self.global_epoch = 0

    # -- setup ---------------------------------------------------------------------------------
    def _stages(self) -> list[Stage]:
        stages = list(self.method.stages())
        if self.cfg.train.selection is not None:
            stages = [replace(s, selection=self.cfg.train.selection) for s in stages]
        check_stages(stages, self.method.name)
        return stages

    def _loader(self, view, stage: Stage, train: bool):
        spec = self.data.spec
        if train:
            sampler, shuffle = stage.sampler, True
        else:  # validation: a fixed order; triplet stages need their positives/negatives
            # (when the split has them: a one-speaker validation split has no negatives)
            subjects = {r.subject for r in view.refs} if hasattr(view, "refs") else None
            triplet = stage.sampler == "triplet" and (subjects is None or len(subjects) >= 2)
            sampler, shuffle = ("triplet" if triplet else "sequential"), False
        kw = dict(
            sampler=sampler,
            batch_size=stage.batch_size,
            seed=self.cfg.seed,
            shuffle=shuffle,
            num_workers=self.cfg.train.num_workers,
            pin_memory=self.pin,
            speaker_index=spec.speaker_index,
        )
        params = inspect.signature(self.loader_factory).parameters
        native_sharding = "rank" in params and "world_size" in params
        if train and self.dist.enabled and native_sharding:
            kw.update(rank=self.dist.rank, world_size=self.dist.world_size, drop_last=False)
        loader = self.loader_factory(view, **_make_loader_kwargs(self.loader_factory, **kw))
        if self.dist.enabled and not (train and native_sharding):
            loader = distributed.ShardedLoader(loader, self.dist, drop_last=train)
        return loader

    # -- main loop -----------------------------------------------------------------------------
    def run(self, resume: bool) -> TrainResult:
        ckpt.seed_everything(self.cfg.seed)
        method = self.method.to(self.device)
        stages = self._stages()
        train_view = self.data.split("train")
        method.prepare(train_view)
        val_view = _split_or_none(self.data, "val")

        payload = None
        if self.dist.is_main:
            ckpt.remove_partial_writes(self.ckpt_dir)  # left behind by a kill during a write
        if resume:
            path = ckpt.last_checkpoint(self.ckpt_dir)
            if path is not None:
                payload = ckpt.load(path)
                self._check_compatible(payload, path, stages)
                self._restore_bookkeeping(payload)
        start_stage = payload["stage_index"] if payload else 0
        if payload is not None and payload["epoch"] == 0:
            # the checkpoint sits on a stage boundary: continue exactly as the stage loop would
            method.load_state_dict(payload["model"])
            self._restore_rng(payload)
            payload = None

        stage_offsets = [0]
        for s in stages:
            stage_offsets.append(stage_offsets[-1] + s.epochs)

        for idx, stage in enumerate(stages):
            if idx < start_stage or stage.epochs == 0:
                continue
            self.global_epoch = stage_offsets[idx]
            self._run_stage(idx, stage, len(stages), train_view, val_view, payload)
            payload = None

        for p in method.parameters():
            p.requires_grad_(True)
        method.eval()
        final = self._save_final()
        distributed.barrier(self.dist)
        self.result.checkpoint = final
        if final is not None and self.logger is not None and self.dist.is_main:
            self.logger.log_artifact(final)
        return self.result

    def _run_stage(self, idx, stage: Stage, n_stages, train_view, val_view, payload) -> None:
        method = self.method
        params = freeze_for(method, stage)
        method.begin_stage(stage)
        opt = build_optimizer(stage, params)
        sched = build_scheduler(stage, opt)
        best_val, best_epoch, best_state = math.inf, None, None
        start_epoch = 0
        elapsed = self.result.stage_seconds.get(stage.name, 0.0)
        if payload is not None:  # resuming mid-stage: after begin_stage, as the killed run was
            method.load_state_dict(payload["model"])
            opt.load_state_dict(payload["optimizer"])
            if sched is not None and payload.get("scheduler") is not None:
                sched.load_state_dict(payload["scheduler"])
            best = payload.get("best") or {}
            if best.get("epoch") is not None:
                best_val, best_epoch, best_state = best["val"], best["epoch"], best["state"]
            start_epoch = payload["epoch"]
            self.result.resumed_from = payload["global_epoch"]
            self._restore_rng(payload)

        selection = stage.selection
        if selection == "val" and val_view is None:
            selection = "last"  # no validation split: nothing to select on (never the test split)
        self.result.selection[stage.name] = selection

        loss_module: nn.Module = _LossModule(method)
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            loss_module = DDP(
                loss_module,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,
            )
        train_loader = self._loader(train_view, stage, train=True)
        val_loader = self._loader(val_view, stage, train=False) if val_view is not None else None

        with _progress(self.progress and self.dist.is_main) as bar:
            task = bar.add_task(
                f"{stage.name} ({idx + 1}/{n_stages})",
                total=stage.epochs,
                completed=start_epoch,
                loss="-",
                val="-",
            )
            for epoch in range(start_epoch, stage.epochs):
                t0 = time.perf_counter()
                step = self.global_epoch + epoch
                train_metrics = self._train_epoch(stage, epoch, loss_module, train_loader, params, opt)
                lr = opt.param_groups[0]["lr"]  # the rate this epoch trained with
                if sched is not None:
                    sched.step()
                val_metrics = self._validate(stage, val_loader) if val_loader is not None else {}
                if selection == "val" and val_metrics.get("loss", math.inf) < best_val:
                    best_val, best_epoch, best_state = val_metrics["loss"], epoch, _cpu_state(method)
                metrics = {f"{stage.name}/train/{k}": v for k, v in train_metrics.items()}
                metrics.update({f"{stage.name}/val/{k}": v for k, v in val_metrics.items()})
                metrics[f"{stage.name}/lr"] = lr
                last_epoch = epoch == stage.epochs - 1
                if last_epoch and selection == "val" and best_state is not None:
                    method.load_state_dict(best_state)
                elapsed += time.perf_counter() - t0
                self.result.stage_seconds[stage.name] = elapsed
                self._log(metrics, step, force=last_epoch)
                every = self.cfg.train.checkpoint_every
                if last_epoch:
                    self.result.best_epochs[stage.name] = best_epoch if best_epoch is not None else epoch
                    self._checkpoint(idx + 1, 0, step + 1, None, None, None, stage_end=stage.name)
                elif every > 0 and (epoch + 1) % every == 0:
                    best = {"val": best_val, "epoch": best_epoch, "state": best_state}
                    self._checkpoint(idx, epoch + 1, step + 1, opt, sched, best)
                bar.update(
                    task,
                    advance=1,
                    loss=f"{train_metrics.get('loss', float('nan')):.4g}",
                    val=f"{val_metrics['loss']:.4g}" if "loss" in val_metrics else "-",
                )

    def _train_epoch(self, stage, epoch, loss_module, loader, params, opt) -> dict[str, float]:
        loader.set_epoch(epoch)
        loss_module.train()
        sums: dict[str, torch.Tensor] = {}
        count = torch.zeros((), dtype=torch.float64, device=self.device)
        for batch in loader:
            batch = batch.to(self.device, non_blocking=self.pin)
            with autocast(self.device, self.precision):
                out = loss_module(stage.name, batch)
            loss = out["loss"]
            if not torch.isfinite(loss.detach()).all():
                raise TalkbenchError(
                    f"stage '{stage.name}', epoch {epoch}: loss is {float(loss.detach())} on clips "
                    f"{', '.join(batch.names[:4])}; lower the learning rate or check the data"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if stage.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, stage.grad_clip)
            opt.step()
            n = len(batch)
            for k, v in out.items():
                v = torch.as_tensor(v).detach().to(self.device, torch.float64)
                sums[k] = sums.get(k, torch.zeros((), dtype=torch.float64, device=self.device)) + v * n
            count += n
        return self._reduce(sums, count)

    @torch.no_grad()
    def _validate(self, stage: Stage, loader) -> dict[str, float]:
        method = self.method
        was_training = method.training
        method.eval()
        loader.set_epoch(0)
        sums: dict[str, torch.Tensor] = {}
        count = torch.zeros((), dtype=torch.float64, device=self.device)
        for batch in loader:
            batch = batch.to(self.device, non_blocking=self.pin)
            with autocast(self.device, self.precision):
                out = method.validation_loss(stage.name, batch)
            n = len(batch)
            for k, v in out.items():
                v = torch.as_tensor(v).detach().to(self.device, torch.float64)
                sums[k] = sums.get(k, torch.zeros((), dtype=torch.float64, device=self.device)) + v * n
            count += n
        method.train(was_training)
        return self._reduce(sums, count)

    def _reduce(self, sums: dict[str, torch.Tensor], count: torch.Tensor) -> dict[str, float]:
        """Clip-weighted means over the epoch, summed across ranks under DDP."""
        keys = sorted(sums)
        if self.dist.enabled:  # a rank may have had no batch (small validation split): agree on keys
            keys = sorted(set().union(*distributed.gather_objects(keys, self.dist)))
        zero = torch.zeros((), dtype=torch.float64, device=self.device)
        flat = torch.stack([count] + [sums.get(k, zero) for k in keys])
        flat = distributed.all_reduce_sum(flat, self.dist)
        total = float(flat[0])
        return {k: float(flat[i + 1]) / max(total, 1.0) for i, k in enumerate(keys)}

    def _log(self, metrics: dict[str, float], step: int, force: bool) -> None:
        self.result.history.append((step, metrics))
        self.result.final_metrics.update(metrics)
        every = max(1, self.cfg.train.log_every)
        if self.logger is not None and self.dist.is_main and (force or (step + 1) % every == 0):
            self.logger.log_metrics(metrics, step=step)

    # -- checkpoints ---------------------------------------------------------------------------
    def _checkpoint(self, stage_index, epoch, global_epoch, opt, sched, best, stage_end: str | None = None):
        rng = distributed.gather_objects(ckpt.capture_rng(), self.dist)  # every rank's own streams
        if not self.dist.is_main:
            return
        payload = {
            "format": ckpt.FORMAT,
            "version": ckpt.VERSION,
            "method": self.method.name,
            "config_hash": self.cfg.config_hash(),
            "fingerprint": training_fingerprint(self.cfg),
            "seed": self.cfg.seed,
            "stage_index": stage_index,
            "epoch": epoch,
            "global_epoch": global_epoch,
            "sampler_epoch": epoch,
            "model": _cpu_state(self.method),
            "optimizer": opt.state_dict() if opt is not None else None,
            "scheduler": sched.state_dict() if sched is not None else None,
            "best": best,
            "rng": rng[0],
            "rng_per_rank": rng,
            "history": self.result.history,
            "stage_seconds": self.result.stage_seconds,
            "best_epochs": self.result.best_epochs,
            "selection": self.result.selection,
        }
        if stage_end is not None:
            path = ckpt.atomic_save(payload, self.ckpt_dir / f"stage{stage_index:02d}-{stage_end}.pt")
            ckpt.atomic_link(path, self.ckpt_dir / ckpt.LAST)
        else:
            ckpt.atomic_save(payload, self.ckpt_dir / ckpt.LAST)

    def _save_final(self) -> Path | None:
        if not self.dist.is_main:
            return None
        return ckpt.atomic_save(_cpu_state(self.method), self.ckpt_dir / "model.pt")

    def _check_compatible(self, payload, path: Path, stages: list[Stage]) -> None:
        if payload["method"] != self.method.name:
            raise TalkbenchError(
                f"checkpoint {path} belongs to method '{payload['method']}', not '{self.method.name}'"
            )
        if payload.get("fingerprint") != training_fingerprint(self.cfg):
            raise ConfigError(
                f"checkpoint {path} was written by a run with other training settings (config hash "
                f"{payload.get('config_hash')}, this run {self.cfg.config_hash()}); resume with the same "
                "configuration or use a new run dir"
            )
        if not 0 <= payload["stage_index"] <= len(stages):
            raise TalkbenchError(
                f"checkpoint {path} points at stage {payload['stage_index']}, which does not exist"
            )

    def _restore_bookkeeping(self, payload) -> None:
        self.result.history = [(int(s), dict(m)) for s, m in payload.get("history", [])]
        for _, m in self.result.history:
            self.result.final_metrics.update(m)
        self.result.stage_seconds = dict(payload.get("stage_seconds", {}))
        self.result.best_epochs = dict(payload.get("best_epochs", {}))
        self.result.selection = dict(payload.get("selection", {}))
        self.result.resumed_from = int(payload["global_epoch"])

    def _restore_rng(self, payload) -> None:
        per_rank = payload.get("rng_per_rank") or [payload["rng"]]
        state = per_rank[self.dist.rank] if self.dist.rank < len(per_rank) else payload["rng"]
        ckpt.restore_rng(state)
