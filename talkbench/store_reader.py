"""A read-only view of a local MLflow SQLite store through sqlite3, for the leaderboard.

MLflow's SQLAlchemy store costs more CPU to import and set up (about 1.2 s) than the leaderboard
needs in all; the two calls the leaderboard makes (``search_runs`` of one experiment, a run's local
artifact file) read five stable tables of MLflow's schema instead. Anything else (another backend,
remote artifacts, an unreadable or unexpected schema) uses :class:`talkbench.tracking.Tracker`.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import unquote, urlparse

from talkbench import contract
from talkbench.errors import TalkbenchError

_RUN_COLUMNS = "run_uuid, experiment_id, name, status, artifact_uri, start_time, end_time"


class SqliteRunReader:
    """``search_runs`` and ``download_artifacts`` as :class:`Tracker` answers them, read-only."""

    def __init__(self, db: Path, uri: str):
        self.db, self.uri = db, uri
        self._con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)

    def _experiment_id(self, name: str):
        row = self._con.execute("SELECT experiment_id FROM experiments WHERE name = ?", (name,)).fetchone()
        return None if row is None else row[0]

    def experiment_names(self) -> list[str]:
        rows = self._con.execute("SELECT name FROM experiments WHERE lifecycle_stage = 'active'").fetchall()
        return [r[0] for r in rows]

    def search_runs(self, dataset: str, filter_string: str = "", finished_only: bool = True):
        """Columns as ``Tracker.search_runs`` (newest first); active runs only, as MLflow's default."""
        import pandas as pd

        if filter_string:
            raise TalkbenchError("the SQLite run reader takes no filter; use talkbench.tracking.Tracker")
        exp = self._experiment_id(dataset)
        if exp is None:
            return pd.DataFrame()
        where = "experiment_id = ? AND lifecycle_stage = 'active'"
        if finished_only:
            where += " AND status = 'FINISHED'"
        runs = self._con.execute(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE {where} ORDER BY start_time DESC, run_uuid", (exp,)
        ).fetchall()
        rows = []
        for run_id, exp_id, name, status, artifact_uri, start, end in runs:
            row = {
                "run_id": run_id,
                "experiment_id": str(exp_id),
                "run_name": name,
                "status": status,
                "artifact_uri": artifact_uri,
                "start_time": pd.to_datetime(start, unit="ms", utc=True),
                "end_time": pd.to_datetime(end, unit="ms", utc=True) if end else pd.NaT,
            }
            for key, value, is_nan in self._con.execute(
                "SELECT key, value, is_nan FROM latest_metrics WHERE run_uuid = ?", (run_id,)
            ):
                row[contract.metric_column(key)] = float("nan") if is_nan else float(value)
            for key, value in self._con.execute(
                "SELECT key, value FROM params WHERE run_uuid = ?", (run_id,)
            ):
                row[contract.param_column(key)] = value
            for key, value in self._con.execute("SELECT key, value FROM tags WHERE run_uuid = ?", (run_id,)):
                row[contract.column(key)] = value
            rows.append(row)
        return pd.DataFrame(rows)

    def download_artifacts(self, run_id: str, path: str, dst=None) -> Path:
        """The artifact file itself (local stores only; nothing is copied)."""
        row = self._con.execute("SELECT artifact_uri FROM runs WHERE run_uuid = ?", (run_id,)).fetchone()
        if row is None:
            raise TalkbenchError(f"run '{run_id}' does not exist in tracking store '{self.uri}'")
        root = _local_path(row[0])
        found = root / path if root is not None else None
        if found is None or not found.exists():
            raise TalkbenchError(f"run '{run_id}' has no artifact '{path}'")
        return found


def _local_path(artifact_uri: str | None) -> Path | None:
    if not artifact_uri:
        return None
    parsed = urlparse(artifact_uri)
    if parsed.scheme in ("", "file") and not parsed.netloc:
        return Path(unquote(parsed.path))
    return None


def open_run_reader(tracking_uri: str | None = None):
    """A :class:`SqliteRunReader` for a local SQLite store with local artifacts, else a read-only
    :class:`Tracker` (which also gives the errors for a missing or unreachable store)."""
    from talkbench.tracking import resolve_tracking_uri, sqlite_path

    uri = resolve_tracking_uri(tracking_uri)
    db = sqlite_path(uri)
    if db is not None and db.is_file():
        try:
            reader = SqliteRunReader(db, uri)
            roots = reader._con.execute("SELECT DISTINCT artifact_location FROM experiments").fetchall()
            reader._con.execute(f"SELECT {_RUN_COLUMNS}, lifecycle_stage FROM runs LIMIT 0")
            reader._con.execute("SELECT key, value, is_nan, run_uuid FROM latest_metrics LIMIT 0")
            if all(_local_path(r[0]) is not None for r in roots):
                return reader
        except sqlite3.Error:  # locked, corrupt or another schema: MLflow itself decides
            pass
    from talkbench.tracking import Tracker

    return Tracker(tracking_uri, create=False)
