"""Where talkbench keeps things on disk, all under one home (``$TALKBENCH_HOME``).

Nothing depends on the working directory: the home defaults to ``~/.cache/talkbench`` and is made
absolute, so a run started in one folder can be resumed from any other.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "TALKBENCH_HOME"
RUN_RECORD = "run.json"
RUN_CONFIG = "config.yaml"


def home() -> Path:
    raw = os.environ.get(HOME_ENV)
    path = Path(raw).expanduser() if raw else Path.home() / ".cache" / "talkbench"
    return path.absolute()


def runs_root() -> Path:
    return home() / "runs"


def run_dir(run_id: str) -> Path:
    return runs_root() / run_id


def synthtalk_cache() -> Path:
    return home() / "synthtalk"


def feature_cache() -> Path:
    """Frozen speech-encoder features per clip, shared by runs (talkbench.audio.feature_cache)."""
    return home() / "features"


def weights_cache() -> Path:
    """Local copies of other runs' final weights that a run starts from (talkbench.weights_ref)."""
    return home() / "weights"
