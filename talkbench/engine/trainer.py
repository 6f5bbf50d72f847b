"""The trainer: a method's stages, epoch by epoch, with frozen parameters, AMP, clipping,
validation-based selection and DDP under ``torchrun``; checkpoints and resume are ``resume``'s.
"""

from __future__ import annotations

import inspect
import math
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
from talkbench.errors import TalkbenchError
from talkbench.methods.base import Method, Stage
from talkbench.stop_signals import StopSignals

from .bars import TrainingBars
from .devices import autocast, resolve_device, resolve_precision
from .resume import Checkpoints
from .stages import StageRun, build_optimizer, build_scheduler, check_stages, cpu_state, freeze_for


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
    ``run_dir/checkpoints``; ``resume=True`` continues from ``checkpoints/last.pt`` (an error when
    there is none). SIGINT/SIGTERM save a resumable checkpoint and raise ``errors.Interrupted``.
    """
    if loader_factory is None:
        from talkbench.datasets import make_loader as loader_factory
    run_dir = Path(run_dir)
    ckpt_dir = run_dir / "checkpoints"
    dev_name = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    dinfo = distributed.setup(use_cuda=dev_name.startswith("cuda"))
    try:
        with StopSignals() as stop:
            trainer = Trainer(method, data, cfg, ckpt_dir, logger, dinfo, loader_factory, stop)
            with TrainingBars(progress and dinfo.is_main) as bar:
                return trainer.run(resume, bar)
    finally:
        distributed.teardown(dinfo)


class Trainer:
    """One training run of a method: the stage loop, its epochs, validation and logging."""

    def __init__(self, method, data, cfg: RunConfig, ckpt_dir: Path, logger, dinfo, loader_factory,
                 stop: StopSignals):  # fmt: skip
        self.method = method
        self.data = data
        self.cfg = cfg
        self.ckpt_dir = ckpt_dir
        self.logger = logger
        self.dist = dinfo
        self.loader_factory = loader_factory
        self.bar = TrainingBars(False)
        self.device = resolve_device(cfg.device, dinfo.local_rank)
        self.precision = resolve_precision(cfg.precision, self.device)
        self.pin = self.device.type == "cuda"
        self.result = TrainResult(
            device=str(self.device), precision=self.precision, world_size=dinfo.world_size
        )
        self.checkpoints = Checkpoints(ckpt_dir, cfg, method, dinfo, self.device, stop, self.result)

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
        if train and stage.repeats:  # a mixture member's passes per epoch (the loader ignores it otherwise)
            kw["repeats"] = stage.repeats
        params = inspect.signature(self.loader_factory).parameters
        native_sharding = "rank" in params and "world_size" in params
        if train and self.dist.enabled and native_sharding:
            kw.update(rank=self.dist.rank, world_size=self.dist.world_size, drop_last=False)
        loader = self.loader_factory(view, **_make_loader_kwargs(self.loader_factory, **kw))
        if self.dist.enabled and not (train and native_sharding):
            loader = distributed.ShardedLoader(loader, self.dist, drop_last=train)
        return loader

    def _loss_module(self) -> nn.Module:
        loss_module: nn.Module = _LossModule(self.method)
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            loss_module = DDP(
                loss_module,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,
            )
        return loss_module

    # -- main loop -----------------------------------------------------------------------------
    def run(self, resume: bool, bar: TrainingBars) -> TrainResult:
        self.bar = bar
        ckpt.seed_everything(self.cfg.seed)
        self.method.to(self.device)
        stages = self._stages()
        train_view = self.data.split("train")
        self.method.prepare(train_view)
        val_view = _split_or_none(self.data, "val")
        state = self.checkpoints.load(stages) if resume else None
        start = state.stage_index if state is not None else 0
        if state is not None and state.epoch == 0 and state.batch == 0:
            # the checkpoint sits on a stage boundary: continue exactly as the stage loop would
            self.method.load_state_dict(state.model)
            self.checkpoints.restore_rng(state)
            state = None
        offsets = [sum(s.epochs for s in stages[:i]) for i in range(len(stages) + 1)]
        for idx, stage in enumerate(stages):
            if idx < start or stage.epochs == 0:
                continue
            mid_stage = state if state is not None and idx == state.stage_index else None
            self._run_stage(idx, stage, offsets[idx], len(stages), train_view, val_view, mid_stage)
        self.checkpoints.stop_if_requested(None, offsets[-1])
        return self._finish()

    def _run_stage(self, idx, stage: Stage, offset, n_stages, train_view, val_view, state) -> None:
        run = self._begin_stage(idx, stage, offset, val_view is not None, state)
        loss_module = self._loss_module()
        train_loader = self._loader(train_view, stage, train=True)
        val_loader = self._loader(val_view, stage, train=False) if val_view is not None else None
        start = state.epoch if state is not None else 0
        self.bar.stage(f"{stage.name} ({idx + 1}/{n_stages})", stage.epochs, start)
        for epoch in range(start, stage.epochs):
            t0 = time.perf_counter()
            mid_epoch = state if state is not None and epoch == state.epoch and state.batch > 0 else None
            train_metrics = self._train_epoch(run, epoch, loss_module, train_loader, mid_epoch)
            lr = run.opt.param_groups[0]["lr"]  # the rate this epoch trained with
            if run.sched is not None:
                run.sched.step()
            val_metrics = self._validate(stage, val_loader) if val_loader is not None else {}
            last_epoch = epoch == stage.epochs - 1
            self._select(run, epoch, val_metrics.get("loss", math.inf), last_epoch)
            self.result.stage_seconds[stage.name] += time.perf_counter() - t0
            self._log_epoch(stage, offset + epoch, train_metrics, val_metrics, lr, force=last_epoch)
            self.bar.epoch_done(train_metrics, val_metrics)
            saved = self.checkpoints.after_epoch(run, epoch)
            if not last_epoch:  # a stage end is checked by the next stage (or the end of training)
                self.checkpoints.stop_if_requested(run, offset + epoch + 1, saved)

    def _begin_stage(self, idx, stage: Stage, offset: int, has_val: bool, state) -> StageRun:
        params = freeze_for(self.method, stage)
        self.method.begin_stage(stage)
        opt = build_optimizer(stage, params)
        selection = stage.selection
        if selection == "val" and not has_val:
            selection = "last"  # no validation split: nothing to select on (never the test split)
        self.result.selection[stage.name] = selection
        self.result.stage_seconds.setdefault(stage.name, 0.0)
        run = StageRun(idx, stage, offset, params, opt, build_scheduler(stage, opt), selection)
        if state is not None:  # resuming mid-stage
            self.checkpoints.restore_stage(run, state)
        return run

    def _select(self, run: StageRun, epoch: int, val_loss: float, last_epoch: bool) -> None:
        """Keep the best epoch's weights by validation loss; the stage ends with the selected ones."""
        if run.selection == "val" and val_loss < run.best_val:
            run.best_val, run.best_epoch = val_loss, epoch
            run.best_state = cpu_state(self.method)
        if last_epoch:
            if run.selection == "val" and run.best_state is not None:
                self.method.load_state_dict(run.best_state)
            self.result.best_epochs[run.stage.name] = run.best_epoch if run.best_epoch is not None else epoch

    def _train_epoch(self, run: StageRun, epoch: int, loss_module, loader, state) -> dict[str, float]:
        """One epoch of optimiser steps; ``state`` continues one interrupted after ``state.batch`` steps."""
        stage = run.stage
        loader.set_epoch(epoch)
        loss_module.train()
        zero = torch.zeros((), dtype=torch.float64, device=self.device)
        sums: dict[str, torch.Tensor] = {}
        count = zero.clone()
        batches = iter(loader)  # a DataLoader draws its worker seed here, from the global generator
        done = 0
        if state is not None:
            for _ in range(state.batch):  # the order is a pure function of (seed, epoch): replay it
                next(batches)
            done = state.batch
            sums, count = self.checkpoints.restore_partial(state)
            self.checkpoints.restore_rng(state)
        self.bar.epoch(epoch, _length(loader), done)
        for batch in batches:
            batch = batch.to(self.device, non_blocking=self.pin)
            with autocast(self.device, self.precision):
                out = loss_module(stage.name, batch)
            loss = out["loss"]
            if not torch.isfinite(loss.detach()).all():
                raise TalkbenchError(
                    f"stage '{stage.name}', epoch {epoch}: loss is {float(loss.detach())} on clips "
                    f"{', '.join(batch.names[:4])}; lower the learning rate or check the data"
                )
            run.opt.zero_grad(set_to_none=True)
            loss.backward()
            if stage.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(run.params, stage.grad_clip)
            run.opt.step()
            n = len(batch)
            for k, v in out.items():
                v = torch.as_tensor(v).detach().to(self.device, torch.float64)
                sums[k] = sums.get(k, zero) + v * n
            count += n
            done += 1
            self.bar.step(sums, count)
            if self.checkpoints.stop_requested():
                partial = {"sums": {k: float(v) for k, v in sums.items()}, "count": float(count)}
                self.checkpoints.stop_if_requested(run, run.offset + epoch, None, (epoch, done, partial))
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

    def _log_epoch(self, stage: Stage, step: int, train: dict, val: dict, lr: float, force: bool) -> None:
        metrics = {f"{stage.name}/train/{k}": v for k, v in train.items()}
        metrics.update({f"{stage.name}/val/{k}": v for k, v in val.items()})
        metrics[f"{stage.name}/lr"] = lr
        self.result.history.append((step, metrics))
        self.result.final_metrics.update(metrics)
        every = max(1, self.cfg.train.log_every)
        if self.logger is not None and self.dist.is_main and (force or (step + 1) % every == 0):
            self.logger.log_metrics(metrics, step=step)

    def _finish(self) -> TrainResult:
        for p in self.method.parameters():
            p.requires_grad_(True)
        self.method.eval()
        final = None
        if self.dist.is_main:
            final = ckpt.save_weights(self.method.state_dict(), self.ckpt_dir / ckpt.FINAL)
        distributed.barrier(self.dist)
        self.result.checkpoint = final
        if final is not None and self.logger is not None:
            self.logger.log_artifact(final)
            self.logger.log_artifact(final.with_name(final.name + ckpt.DIGEST_SUFFIX))
        return self.result


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


def _length(loader) -> int | None:
    try:
        return len(loader)
    except TypeError:
        return None
