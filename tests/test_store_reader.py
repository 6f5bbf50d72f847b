"""The sqlite3 reader of a local MLflow store answers as talkbench.tracking.Tracker does."""

from __future__ import annotations

import _mlflow_store
import numpy as np
import pandas as pd
import pytest
from test_leaderboard import _log_runs_with_tables, store  # noqa: F401  (fixture)

from talkbench.contract import PER_SEQUENCE_ARTIFACT
from talkbench.errors import TalkbenchError
from talkbench.reports import evidence as ev
from talkbench.reports import leaderboard as lb
from talkbench.store_reader import SqliteRunReader, open_run_reader
from talkbench.tracking import Tracker

_migrated_db = _mlflow_store._migrated_db
store_uri = _mlflow_store.store_uri


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a[sorted(a.columns)], b[sorted(b.columns)])


@pytest.mark.parametrize("finished_only", [True, False])
def test_search_runs_as_tracker(store, store_uri, finished_only):  # noqa: F811
    tr, ids = store
    tr.log_metrics(ids[("faceformer", "hashA", 1)], {"test/nan_metric": float("nan")})
    tr.client.delete_run(ids[("template", "hashT", 0)])  # deleted runs are not listed
    reader = open_run_reader(store_uri)
    assert isinstance(reader, SqliteRunReader)
    ours = reader.search_runs("synthtalk", finished_only=finished_only)
    assert ids[("template", "hashT", 0)] not in set(ours["run_id"])
    assert set(ids.values()) - set(ours["run_id"]) == {ids[("template", "hashT", 0)]}
    _same(ours, tr.search_runs("synthtalk", finished_only=finished_only))
    assert reader.search_runs("no-such-dataset").empty


def test_leaderboard_with_evidence_as_through_mlflow(store_uri):
    tr = Tracker(store_uri)
    rng = np.random.default_rng(0)
    clip_values = 3e-5 + 1e-5 * rng.random(12)
    _log_runs_with_tables(tr, "faceformer", "hF", [0, 1, 2], clip_values, 0.0, rng)
    _log_runs_with_tables(tr, "memorytalker", "hM", [0, 1, 2], clip_values, 0.5e-5, rng)
    board = lb.leaderboard("synthtalk", tracking_uri=store_uri, metrics=["lve"])
    reference = lb.build(tr.search_runs("synthtalk"), "synthtalk", ["lve"], None)
    ev.attach(reference, ev.per_sequence_tables(tr, [i for r in reference.rows for i in r.run_ids]))
    assert lb.render(board, "markdown") == lb.render(reference, "markdown")
    assert "**" in lb.render(board, "markdown")  # the evidence was read: a significant best


def test_artifacts_and_errors(store_uri):
    tr = Tracker(store_uri)
    rng = np.random.default_rng(1)
    _log_runs_with_tables(tr, "faceformer", "hF", [0], 3e-5 + np.zeros(4), 0.0, rng)
    (run_id,) = tr.search_runs("synthtalk")["run_id"]
    reader = open_run_reader(store_uri)
    ours = pd.read_csv(reader.download_artifacts(run_id, PER_SEQUENCE_ARTIFACT))
    _same(ours, pd.read_csv(tr.download_artifacts(run_id, PER_SEQUENCE_ARTIFACT)))
    with pytest.raises(TalkbenchError, match="has no artifact"):
        reader.download_artifacts(run_id, "nothing.csv")
    with pytest.raises(TalkbenchError, match="does not exist"):
        reader.download_artifacts("0" * 32, PER_SEQUENCE_ARTIFACT)
    with pytest.raises(TalkbenchError, match="takes no filter"):
        reader.search_runs("synthtalk", filter_string="metrics.x > 1")


def test_missing_store_is_trackers_error(tmp_path):
    with pytest.raises(TalkbenchError, match="no tracking store"):
        open_run_reader(f"sqlite:///{tmp_path / 'absent.db'}")
