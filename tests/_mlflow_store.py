"""Per-test MLflow stores: one migrated SQLite DB per session, copied into each test's tmp_path.

Alembic migrations take seconds on a fresh store; copying a migrated file takes milliseconds.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def _migrated_db(tmp_path_factory) -> Path:
    from talkbench.tracking import Tracker

    db = tmp_path_factory.mktemp("migrated") / "mlflow.db"
    Tracker(f"sqlite:///{db}").client.search_experiments(max_results=1)  # runs the migrations
    return db


@pytest.fixture
def store_uri(_migrated_db, tmp_path) -> str:
    """A fresh, already-migrated sqlite:/// tracking URI under this test's tmp_path."""
    db = tmp_path / "store" / "mlflow.db"
    db.parent.mkdir()
    shutil.copy(_migrated_db, db)
    return f"sqlite:///{db}"
