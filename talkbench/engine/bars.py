"""The engine's progress bars on a terminal: one per stage (epochs), one per epoch (steps, loss)."""

from __future__ import annotations

import time

import torch

from talkbench.progress import TerminalBar


class TrainingBars(TerminalBar):
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
