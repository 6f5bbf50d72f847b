"""Progress on a terminal: a rich bar on stderr when stderr is a terminal, nothing otherwise.

Shared by training (engine) and first-use dataset generation; imports nothing of talkbench, so any
layer may use it. rich is imported only when a terminal is there to draw on.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


class TerminalBar:
    """Context manager owning a rich ``Progress`` (``self.bar``), or ``None`` without a terminal (or
    when disabled): subclasses then skip their updates, at no cost."""

    def __init__(self, enabled: bool, columns: Callable[[Any], tuple]):
        """``columns(rich.progress)`` -> the bar's columns, built only when a bar is drawn."""
        self.bar = None
        if not (enabled and sys.stderr.isatty()):
            return
        import rich.progress
        from rich.console import Console

        console = Console(stderr=True)
        if console.is_terminal:
            self.bar = rich.progress.Progress(*columns(rich.progress), console=console)

    def __enter__(self):
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
