"""A method's stages as the engine trains them: checked, parameters frozen, optimiser and schedule
built, and the mutable state of the stage being trained."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from talkbench.errors import ConfigError
from talkbench.methods.base import Method, Stage

OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("constant", "step", "cosine")
SAMPLERS = ("sequential", "bucketed", "triplet")
SELECTIONS = ("val", "last")


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
            (all(int(r) >= 1 for r in s.repeats.values()), f"repeats {s.repeats} (expected >= 1 each)"),
        ]
        for ok, what in checks:
            if not ok:
                raise ConfigError(f"{where}: invalid {what}")


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


@dataclass
class StageRun:
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


def cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the module's weights on the CPU (the best epoch's, a checkpoint's)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
