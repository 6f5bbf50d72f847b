"""The training engine: runs a method's stages with freezing, optimisers, schedules, AMP, clipping,
validation-based selection, atomic checkpoints, exact resume and DDP under ``torchrun``.

Methods hold only their model and losses; everything generic lives here. On CPU a run killed after a
checkpoint and resumed ends with weights bit-identical to an uninterrupted run: the checkpoint
(``checkpoint.TrainState``) holds model, optimiser, scheduler, best-so-far state, the position
(stage, epoch, batch) and every RNG state, and the loaders' order is a pure function of (seed, epoch).
SIGINT/SIGTERM save such a checkpoint at the next step boundary and raise ``errors.Interrupted``.
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
from talkbench.errors import ConfigError, Interrupted, TalkbenchError
from talkbench.methods.base import Method, Stage
from talkbench.progress import TerminalBar
from talkbench.stop_signals import StopSignals

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
    """Hash of the settings that shape training; a resume may change the rest (device, workers, eval).
    Defined by the config (``RunConfig.training_fingerprint``: stable when the schema gains fields)."""
    return cfg.training_fingerprint()


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


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


class _Progress(TerminalBar):
    """One bar per stage (epochs) and one per epoch (steps, running loss) on a terminal's stderr.

    Without a terminal (or disabled) every call is a no-op: no rich objects, no device syncs.
    The running loss needs a device sync, so it is refreshed at most every ``REFRESH_S`` seconds.
    """

    REFRESH_S = 0.25

    def __init__(self, enabled: bool):
        super().__init__(enabled, lambda rp: (
            rp.TextColumn("[bold]{task.description}"), rp.BarColumn(), rp.MofNCompleteColumn(),
            rp.TextColumn("{task.fields[unit]}  loss {task.fields[loss]}  {task.fields[extra]}"),
            rp.TimeElapsedColumn(), rp.TextColumn("ETA"), rp.TimeRemainingColumn(),
        ))  # fmt: skip
        self._stage = self._epoch = None
        self._shown = 0.0

    def stage(self, description: str, epochs: int, done: int) -> None:
        if self.bar is not None:
            self._stage = self.bar.add_task(description, total=epochs, completed=done, unit="epochs",
                                            loss="-", extra="val -")  # fmt: skip

    def epoch(self, epoch: int, steps: int | None, done: int) -> None:
        if self.bar is None:
            return
        if self._epoch is not None:
            self.bar.remove_task(self._epoch)
        self._epoch = self.bar.add_task(f"  epoch {epoch + 1}", total=steps, completed=done, unit="steps",
                                        loss="-", extra="")  # fmt: skip

    def step(self, sums: dict[str, torch.Tensor], count: torch.Tensor) -> None:
        if self.bar is None:
            return
        now = time.monotonic()
        fields = {}
        if now - self._shown >= self.REFRESH_S and "loss" in sums:
            self._shown = now
            fields["loss"] = f"{float(sums['loss'] / count.clamp_min(1)):.4g}"
        self.bar.update(self._epoch, advance=1, **fields)

    def epoch_done(self, train: dict[str, float], val: dict[str, float]) -> None:
        if self.bar is not None:
            v = f"val {val['loss']:.4g}" if "loss" in val else "val -"
            self.bar.update(self._stage, advance=1, loss=f"{train.get('loss', float('nan')):.4g}", extra=v)


@dataclass
class _StageRun:
    """The mutable state of the stage being trained."""

    index: int
    stage: Stage
    offset: int  # global epoch of the stage's first epoch
    params: list[nn.Parameter]
    opt: torch.optim.Optimizer
    sched: Any
    selection: str  # the rule actually used ('val' falls back to 'last' without a validation split)
    best_val: float = math.inf
    best_epoch: int | None = None
    best_state: dict[str, torch.Tensor] | None = None

    def best(self) -> dict[str, Any]:
        return {"val": self.best_val, "epoch": self.best_epoch, "state": self.best_state}


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
            trainer = _Trainer(method, data, cfg, ckpt_dir, logger, dinfo, loader_factory, stop)
            with _Progress(progress and dinfo.is_main) as bar:
                return trainer.run(resume, bar)
    finally:
        distributed.teardown(dinfo)


class _Trainer:
    def __init__(self, method, data, cfg: RunConfig, ckpt_dir: Path, logger, dinfo, loader_factory,
                 stop: StopSignals):  # fmt: skip
        self.method = method
        self.data = data
        self.cfg = cfg
        self.ckpt_dir = ckpt_dir
        self.logger = logger
        self.dist = dinfo
        self.loader_factory = loader_factory
        self.stop = stop
        self.bar = _Progress(False)
        self.device = resolve_device(cfg.device, dinfo.local_rank)
        self.precision = resolve_precision(cfg.precision, self.device)
        self.pin = self.device.type == "cuda"
        self.result = TrainResult(
            device=str(self.device), precision=self.precision, world_size=dinfo.world_size
        )

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
    def run(self, resume: bool, bar: _Progress) -> TrainResult:
        self.bar = bar
        ckpt.seed_everything(self.cfg.seed)
        self.method.to(self.device)
        stages = self._stages()
        train_view = self.data.split("train")
        self.method.prepare(train_view)
        val_view = _split_or_none(self.data, "val")
        state = self._resume_state(stages) if resume else None
        start = state.stage_index if state is not None else 0
        if state is not None and state.epoch == 0 and state.batch == 0:
            # the checkpoint sits on a stage boundary: continue exactly as the stage loop would
            self.method.load_state_dict(state.model)
            self._restore_rng(state)
            state = None
        offsets = [sum(s.epochs for s in stages[:i]) for i in range(len(stages) + 1)]
        for idx, stage in enumerate(stages):
            if idx < start or stage.epochs == 0:
                continue
            mid_stage = state if state is not None and idx == state.stage_index else None
            self._run_stage(idx, stage, offsets[idx], len(stages), train_view, val_view, mid_stage)
        self._stop_if_requested(None, offsets[-1])
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
            if run.selection == "val" and val_metrics.get("loss", math.inf) < run.best_val:
                run.best_val, run.best_epoch = val_metrics["loss"], epoch
                run.best_state = _cpu_state(self.method)
            last_epoch = epoch == stage.epochs - 1
            if last_epoch and run.selection == "val" and run.best_state is not None:
                self.method.load_state_dict(run.best_state)
            self.result.stage_seconds[stage.name] += time.perf_counter() - t0
            self._log_epoch(stage, offset + epoch, train_metrics, val_metrics, lr, force=last_epoch)
            self.bar.epoch_done(train_metrics, val_metrics)
            saved = self._epoch_checkpoint(run, epoch)
            if not last_epoch:  # a stage end is checked by the next stage (or the end of training)
                self._stop_if_requested(run, offset + epoch + 1, saved)

    def _begin_stage(self, idx, stage: Stage, offset: int, has_val: bool, state) -> _StageRun:
        params = freeze_for(self.method, stage)
        self.method.begin_stage(stage)
        opt = build_optimizer(stage, params)
        selection = stage.selection
        if selection == "val" and not has_val:
            selection = "last"  # no validation split: nothing to select on (never the test split)
        self.result.selection[stage.name] = selection
        self.result.stage_seconds.setdefault(stage.name, 0.0)
        run = _StageRun(idx, stage, offset, params, opt, build_scheduler(stage, opt), selection)
        if state is not None:  # resuming mid-stage: after begin_stage, as the killed run was
            self.method.load_state_dict(state.model)
            opt.load_state_dict(state.optimizer)
            if run.sched is not None and state.scheduler is not None:
                run.sched.load_state_dict(state.scheduler)
            best = state.best or {}
            if best.get("epoch") is not None:
                run.best_val, run.best_epoch, run.best_state = best["val"], best["epoch"], best["state"]
            if state.batch == 0:  # mid-epoch resumes restore the generators after replaying batches
                self._restore_rng(state)
        return run

    def _train_epoch(self, run: _StageRun, epoch: int, loss_module, loader, state) -> dict[str, float]:
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
            sums, count = self._restore_partial(state)
            self._restore_rng(state)
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
            if self._stop_requested():
                partial = {"sums": {k: float(v) for k, v in sums.items()}, "count": float(count)}
                self._stop_if_requested(run, run.offset + epoch, None, (epoch, done, partial))
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
            final = ckpt.atomic_save(_cpu_state(self.method), self.ckpt_dir / "model.pt")
        distributed.barrier(self.dist)
        self.result.checkpoint = final
        if final is not None and self.logger is not None:
            self.logger.log_artifact(final)
        return self.result

    # -- signals -------------------------------------------------------------------------------
    def _stop_requested(self) -> bool:
        """Whether any rank got SIGINT/SIGTERM (ranks must stop at the same step under DDP)."""
        flag = self.stop.received is not None
        if not self.dist.enabled:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        return bool(distributed.all_reduce_sum(t, self.dist).item() > 0)

    def _stop_if_requested(self, run: _StageRun | None, global_epoch: int, saved: Path | None = None,
                           mid_epoch: tuple[int, int, dict] | None = None) -> None:  # fmt: skip
        """Save a resumable checkpoint (unless one was just saved) and raise Interrupted."""
        if mid_epoch is None and not self._stop_requested():
            return
        if mid_epoch is not None:
            epoch, batch, partial = mid_epoch
            saved = self._checkpoint(run.index, epoch, batch, global_epoch, run, partial)
        elif saved is None and run is not None:  # an epoch end without a periodic checkpoint
            saved = self._checkpoint(run.index, global_epoch - run.offset, 0, global_epoch, run)
        path = saved or self.ckpt_dir / ckpt.LAST
        raise Interrupted(self.stop.received or "signal", str(path), global_epoch)

    # -- checkpoints ---------------------------------------------------------------------------
    def _epoch_checkpoint(self, run: _StageRun, epoch: int) -> Path | None:
        """Checkpoint after ``epoch`` if it ends the stage or the periodic cadence asks for one."""
        stage, every = run.stage, self.cfg.train.checkpoint_every
        if epoch == stage.epochs - 1:
            best = run.best_epoch if run.best_epoch is not None else epoch
            self.result.best_epochs[stage.name] = best
            end = run.offset + stage.epochs
            return self._checkpoint(run.index + 1, 0, 0, end, None, stage_end=stage.name)
        if every > 0 and (epoch + 1) % every == 0:
            return self._checkpoint(run.index, epoch + 1, 0, run.offset + epoch + 1, run)
        return None

    def _checkpoint(self, stage_index: int, epoch: int, batch: int, global_epoch: int, run: _StageRun | None,
                    partial: dict | None = None, stage_end: str | None = None) -> Path:  # fmt: skip
        """Save the position (stage_index, epoch, batch) with everything needed to continue from it."""
        rng = distributed.gather_objects(ckpt.capture_rng(), self.dist)  # every rank's own streams
        partials = distributed.gather_objects(partial, self.dist) if partial is not None else None
        last = self.ckpt_dir / ckpt.LAST
        if not self.dist.is_main:
            return last
        state = ckpt.TrainState(
            method=self.method.name,
            fingerprint=training_fingerprint(self.cfg),
            config_hash=self.cfg.config_hash(),
            stage_index=stage_index,
            epoch=epoch,
            global_epoch=global_epoch,
            model=_cpu_state(self.method),
            rng_per_rank=rng,
            batch=batch,
            optimizer=run.opt.state_dict() if run is not None else None,
            scheduler=run.sched.state_dict() if run is not None and run.sched is not None else None,
            best=run.best() if run is not None else None,
            partial=partials,
            history=self.result.history,
            stage_seconds=self.result.stage_seconds,
            best_epochs=self.result.best_epochs,
            selection=self.result.selection,
        )
        if stage_end is None:
            return ckpt.save(state, last)
        path = ckpt.save(state, self.ckpt_dir / f"stage{stage_index:02d}-{stage_end}.pt")
        return ckpt.atomic_link(path, last)

    def _resume_state(self, stages: list[Stage]) -> ckpt.TrainState:
        if self.dist.is_main:
            ckpt.remove_partial_writes(self.ckpt_dir)  # left behind by a kill during a write
        path = ckpt.last_checkpoint(self.ckpt_dir)
        if path is None:
            raise TalkbenchError(
                f"nothing to resume: no checkpoint in {self.ckpt_dir} (the run stopped before its first "
                "checkpoint was written); start it again without --resume"
            )
        state = ckpt.load(path)
        self._check_compatible(state, path, stages)
        self.result.history = [(int(s), dict(m)) for s, m in state.history]
        for _, m in self.result.history:
            self.result.final_metrics.update(m)
        self.result.stage_seconds = dict(state.stage_seconds)
        self.result.best_epochs = dict(state.best_epochs)
        self.result.selection = dict(state.selection)
        self.result.resumed_from = int(state.global_epoch)
        return state

    def _check_compatible(self, state: ckpt.TrainState, path: Path, stages: list[Stage]) -> None:
        if state.method != self.method.name:
            raise TalkbenchError(
                f"checkpoint {path} belongs to method '{state.method}', not '{self.method.name}'"
            )
        if not self.cfg.resumes(state.fingerprint):  # today's fingerprint, or 0.1.0's for a 0.1.0 config
            raise ConfigError(
                f"checkpoint {path} was written by a run with other training settings (config hash "
                f"{state.config_hash}, this run {self.cfg.config_hash()}); resume with the same "
                "configuration or use a new run dir"
            )
        if not 0 <= state.stage_index <= len(stages):
            raise TalkbenchError(
                f"checkpoint {path} points at stage {state.stage_index}, which does not exist"
            )
        if state.batch > 0 and (state.partial is None or len(state.partial) != self.dist.world_size):
            raise TalkbenchError(
                f"checkpoint {path} was taken mid-epoch by {len(state.partial or [])} process(es); "
                f"resume it with the same number, not {self.dist.world_size}"
            )

    def _restore_rng(self, state: ckpt.TrainState) -> None:
        per_rank = state.rng_per_rank
        ckpt.restore_rng(per_rank[self.dist.rank] if self.dist.rank < len(per_rank) else per_rank[0])

    def _restore_partial(self, state: ckpt.TrainState) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        mine = state.partial[self.dist.rank]
        as_t = lambda v: torch.tensor(v, dtype=torch.float64, device=self.device)  # noqa: E731
        return {k: as_t(v) for k, v in mine["sums"].items()}, as_t(mine["count"])


def _length(loader) -> int | None:
    try:
        return len(loader)
    except TypeError:
        return None
