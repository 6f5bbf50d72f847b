"""Where training may stop and go on: the checkpoint cadence, a saved position with everything
needed to continue from it, resuming from the last one, and stopping on SIGINT/SIGTERM.

A checkpoint (``checkpoint.TrainState``) holds model, optimiser, scheduler, best-so-far state, the
position (stage, epoch, batch), every rank's RNG states and the bookkeeping of the run's
``TrainResult``; the loaders' order is a pure function of (seed, epoch), so a resumed run replays
the batches of an interrupted epoch and ends bit-identical to an uninterrupted one (on CPU).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from talkbench import checkpoint as ckpt
from talkbench import distributed
from talkbench.config import RunConfig
from talkbench.errors import ConfigError, Interrupted, TalkbenchError
from talkbench.methods.base import Method, Stage
from talkbench.stop_signals import StopSignals

from .stages import StageRun, cpu_state


class Checkpoints:
    """The checkpoints of one training run in ``ckpt_dir`` (rank 0 writes, every rank reads).

    ``result`` is the run's ``TrainResult``: its history, stage times, best epochs and selection
    rules travel in every checkpoint and come back on resume.
    """

    def __init__(self, ckpt_dir: Path, cfg: RunConfig, method: Method, dinfo, device: torch.device,
                 stop: StopSignals, result: Any):  # fmt: skip
        self.dir = ckpt_dir
        self.cfg = cfg
        self.method = method
        self.dist = dinfo
        self.device = device
        self.stop = stop
        self.result = result

    # -- cadence -------------------------------------------------------------------------------
    def after_epoch(self, run: StageRun, epoch: int) -> Path | None:
        """Checkpoint after ``epoch`` if it ends the stage or the periodic cadence asks for one."""
        stage, every = run.stage, self.cfg.train.checkpoint_every
        if epoch == stage.epochs - 1:
            end = run.offset + stage.epochs
            return self.save(run.index + 1, 0, 0, end, None, stage_end=stage.name)
        if every > 0 and (epoch + 1) % every == 0:
            return self.save(run.index, epoch + 1, 0, run.offset + epoch + 1, run)
        return None

    def save(self, stage_index: int, epoch: int, batch: int, global_epoch: int, run: StageRun | None,
             partial: dict | None = None, stage_end: str | None = None) -> Path:  # fmt: skip
        """Save the position (stage_index, epoch, batch) with everything needed to continue from it."""
        rng = distributed.gather_objects(ckpt.capture_rng(), self.dist)  # every rank's own streams
        partials = distributed.gather_objects(partial, self.dist) if partial is not None else None
        last = self.dir / ckpt.LAST
        if not self.dist.is_main:
            return last
        state = ckpt.TrainState(
            method=self.method.name,
            fingerprint=self.cfg.training_fingerprint(),
            config_hash=self.cfg.config_hash(),
            stage_index=stage_index,
            epoch=epoch,
            global_epoch=global_epoch,
            model=cpu_state(self.method),
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
        path = ckpt.save(state, self.dir / f"stage{stage_index:02d}-{stage_end}.pt")
        return ckpt.atomic_link(path, last)

    # -- signals -------------------------------------------------------------------------------
    def stop_requested(self) -> bool:
        """Whether any rank got SIGINT/SIGTERM (ranks must stop at the same step under DDP)."""
        flag = self.stop.received is not None
        if not self.dist.enabled:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        return bool(distributed.all_reduce_sum(t, self.dist).item() > 0)

    def stop_if_requested(self, run: StageRun | None, global_epoch: int, saved: Path | None = None,
                          mid_epoch: tuple[int, int, dict] | None = None) -> None:  # fmt: skip
        """Save a resumable checkpoint (unless one was just saved) and raise Interrupted."""
        if mid_epoch is None and not self.stop_requested():
            return
        if mid_epoch is not None:
            epoch, batch, partial = mid_epoch
            saved = self.save(run.index, epoch, batch, global_epoch, run, partial)
        elif saved is None and run is not None:  # an epoch end without a periodic checkpoint
            saved = self.save(run.index, global_epoch - run.offset, 0, global_epoch, run)
        path = saved or self.dir / ckpt.LAST
        raise Interrupted(self.stop.received or "signal", str(path), global_epoch)

    # -- resuming ------------------------------------------------------------------------------
    def load(self, stages: list[Stage]) -> ckpt.TrainState:
        """The last checkpoint, checked against this run; the result's bookkeeping restored from it."""
        if self.dist.is_main:
            ckpt.remove_partial_writes(self.dir)  # left behind by a kill during a write
        path = ckpt.last_checkpoint(self.dir)
        if path is None:
            raise TalkbenchError(
                f"nothing to resume: no checkpoint in {self.dir} (the run stopped before its first "
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

    def restore_stage(self, run: StageRun, state: ckpt.TrainState) -> None:
        """Resuming mid-stage: weights, optimiser, schedule and best-so-far as the killed run had them
        (after ``begin_stage``, as the killed run was)."""
        self.method.load_state_dict(state.model)
        run.opt.load_state_dict(state.optimizer)
        if run.sched is not None and state.scheduler is not None:
            run.sched.load_state_dict(state.scheduler)
        best = state.best or {}
        if best.get("epoch") is not None:
            run.best_val, run.best_epoch, run.best_state = best["val"], best["epoch"], best["state"]
        if state.batch == 0:  # mid-epoch resumes restore the generators after replaying batches
            self.restore_rng(state)

    def restore_rng(self, state: ckpt.TrainState) -> None:
        per_rank = state.rng_per_rank
        ckpt.restore_rng(per_rank[self.dist.rank] if self.dist.rank < len(per_rank) else per_rank[0])

    def restore_partial(self, state: ckpt.TrainState) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The running sums and clip count of this rank's epoch, interrupted mid-way."""
        mine = state.partial[self.dist.rank]
        as_t = lambda v: torch.tensor(v, dtype=torch.float64, device=self.device)  # noqa: E731
        return {k: as_t(v) for k, v in mine["sums"].items()}, as_t(mine["count"])
