"""The training engine: runs a method's stages with freezing, optimisers, schedules, AMP, clipping,
validation-based selection, atomic checkpoints, exact resume and DDP under ``torchrun``.

Methods hold only their model and losses; everything generic lives here:

- ``trainer``: :func:`train` and the stage loop (epochs, validation, selection, logging),
- ``resume``: the checkpoint cadence, saving a position, resuming from it, stopping on signals,
- ``stages``: a stage checked, its parameters frozen, its optimiser and schedule built,
- ``devices``: the device and precision a run trains in; ``bars``: progress on a terminal.

On CPU a run killed after a checkpoint and resumed ends with weights bit-identical to an
uninterrupted run. SIGINT/SIGTERM save such a checkpoint at the next step boundary and raise
``errors.Interrupted``.
"""

from .devices import autocast, resolve_device, resolve_precision
from .stages import check_stages, freeze_for
from .trainer import Logger, TrainResult, train

__all__ = [
    "Logger",
    "TrainResult",
    "autocast",
    "check_stages",
    "freeze_for",
    "resolve_device",
    "resolve_precision",
    "train",
]
