"""SIGINT/SIGTERM during training become a request that the engine honours at the next step boundary.

The first signal only sets a flag (the engine saves a resumable checkpoint, then raises
``talkbench.errors.Interrupted``); a second one raises ``KeyboardInterrupt`` at once, without a
checkpoint. Handlers are installed only in the main thread (Python allows no other) and the previous
ones are restored on exit.
"""

from __future__ import annotations

import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    def __init__(self) -> None:
        self.received: str | None = None  # name of the first signal, e.g. 'SIGINT'
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            # None: a handler installed outside Python; the default is the closest we can restore
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        if self.received is not None:
            raise KeyboardInterrupt(f"{signal.Signals(signum).name} again: stopping without a checkpoint")
        self.received = signal.Signals(signum).name
