"""MLflow tracking: the only package of talkbench that imports mlflow.

- ``store``: reaching a store (tracking URIs, early checks, SQLite lock retries, HTTP limits, auth),
- ``provenance``: the git commit and package versions a run is tagged with,
- ``tracker``: the :class:`Tracker` (one store, talkbench's conventions) and the engine's logger,
- ``run_record``: a run directory's ``run.json`` (its store) and ``--resume last``.

What a run writes is the run contract in :mod:`talkbench.contract`; where run directories live is
:mod:`talkbench.paths`.
"""

from .provenance import git_info, package_versions
from .run_record import last_interrupted_run, read_run_record, write_run_record
from .store import (
    STORE_FILE,
    TrackingUnavailable,
    default_tracking_uri,
    resolve_tracking_uri,
    retry_locked,
    sqlite_path,
)
from .tracker import MAX_PARAM_CHARS, MlflowLogger, Tracker

__all__ = [
    "MAX_PARAM_CHARS",
    "STORE_FILE",
    "MlflowLogger",
    "Tracker",
    "TrackingUnavailable",
    "default_tracking_uri",
    "git_info",
    "last_interrupted_run",
    "package_versions",
    "read_run_record",
    "resolve_tracking_uri",
    "retry_locked",
    "sqlite_path",
    "write_run_record",
]
