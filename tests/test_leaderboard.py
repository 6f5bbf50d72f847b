"""Leaderboards built from runs logged through talkbench.tracking into a real SQLite store."""

from __future__ import annotations

import csv
import io
import time

import _mlflow_store
import numpy as np
import pytest

from talkbench.errors import ConfigError
from talkbench.reports import leaderboard as lb
from talkbench.tracking import Tracker

_migrated_db = _mlflow_store._migrated_db
store_uri = _mlflow_store.store_uri

# (method, config hash, seed, lve, fdd, mve)
RUNS = [
    ("faceformer", "hashA", 0, 3.0e-5, 2.0e-7, 1.0e-3),
    ("faceformer", "hashA", 1, 3.4e-5, -1.0e-7, 1.2e-3),
    ("faceformer", "hashA", 2, 2.9e-5, 0.5e-7, 1.1e-3),
    ("faceformer", "hashB", 0, 4.0e-5, 3.0e-7, 1.5e-3),
    ("memorytalker", "hashM", 0, 2.0e-5, 0.2e-7, 0.9e-3),
    ("template", "hashT", 0, 9.0e-5, 8.0e-7, 2.0e-3),
    ("mean-motion", "hashMM", 0, 7.0e-5, 6.0e-7, 1.9e-3),
]


@pytest.fixture
def store(store_uri):
    """A store with the runs above, plus noise the leaderboard must ignore."""
    tr = Tracker(store_uri)
    exp = tr.ensure_experiment("synthtalk")
    ids = {}
    for method, h, seed, lve, fdd, mve in RUNS:
        rid = tr.create_run(
            exp,
            f"{method}/seed{seed}",
            {
                "talkbench.method": method,
                "talkbench.config_hash": h,
                "talkbench.seed": seed,
                "talkbench.preset": "synthtalk",
                "talkbench.scale.lve": 1e-5,
            },
        )
        tr.log_params(rid, {"seed": seed, "method": method})
        tr.log_metrics(rid, {"test/lve": lve, "test/fdd": fdd, "test/mve": mve})
        tr.finish_run(rid)
        ids[(method, h, seed)] = rid
    # an unfinished run and a sweep parent without metrics: both excluded
    running = tr.create_run(
        exp, "running", {"talkbench.method": "faceformer", "talkbench.config_hash": "hashA"}
    )
    tr.log_metrics(running, {"test/lve": 1.0})
    parent = tr.create_run(exp, "sweep", {"talkbench.method": "faceformer", "talkbench.config_hash": "sweep"})
    tr.finish_run(parent)
    return tr, ids


def test_groups_seeds_and_orders_rows(store):
    tr, ids = store
    board = lb.build(tr.search_runs("synthtalk"), "synthtalk", highlight=ids[("faceformer", "hashA", 1)])
    assert [c.name for c in board.columns] == ["lve", "mve", "fdd"]
    assert [(r.method, r.config_hash, r.n_seeds) for r in board.rows] == [
        ("memorytalker", "hashM", 1),
        ("faceformer", "hashA", 3),
        ("faceformer", "hashB", 1),
        ("mean-motion", "hashMM", 1),
        ("template", "hashT", 1),
    ]
    assert [r.floor for r in board.rows] == [False, False, False, True, True]
    assert [r.highlighted for r in board.rows] == [False, True, False, False, False]
    mean, std, n = board.rows[1].values["lve"]
    expected = np.array([3.0e-5, 3.4e-5, 2.9e-5])
    assert n == 3 and mean == pytest.approx(expected.mean()) and std == pytest.approx(expected.std(ddof=1))


def test_cell_agrees_with_mlflow_search_runs(store, store_uri):
    """Recompute one cell straight from mlflow.search_runs and compare with the rendered table."""
    import mlflow

    tr, _ = store
    mlflow.set_tracking_uri(store_uri)
    df = mlflow.search_runs(
        experiment_names=["synthtalk"],
        filter_string="tags.talkbench.config_hash = 'hashA' and attributes.status = 'FINISHED'",
    )
    vals = df["metrics.test/mve"].to_numpy()
    cell = f"{vals.mean() / 1e-3:.3f} ± {vals.std(ddof=1) / 1e-3:.3f}"  # MVE scale (vocaset): 1e-3
    board = lb.build(tr.search_runs("synthtalk"), "vocaset")  # vocaset scales from the registry
    assert board.columns[1].scale == 1e-3
    row = next(r for r in board.rows if r.config_hash == "hashA")
    assert lb.cell(row, board.columns[1]) == cell
    assert cell in lb.render(board, "markdown")


def test_directions_and_no_bold_without_evidence(store):
    tr, _ = store
    board = lb.build(tr.search_runs("synthtalk"), "synthtalk")
    md = lb.render(board, "markdown")
    header = md.splitlines()[0]
    assert "LVE ↓ (×10⁻⁵)" in header and "FDD →0" in header and "MVE ↓" in header
    # no per-sequence tables: nothing can be shown significantly best, and the table says so
    assert "**" not in md and "nothing marked best" in md
    # ranking by direction: FDD "zero" -> closest to 0 first (memorytalker 2e-8), not the most negative
    assert board.best("fdd") == pytest.approx(0.2e-7)
    assert board.ranked("fdd")[0].method == "memorytalker"
    assert board.ranked("lve")[0].method == "memorytalker" and board.ranked("lve")[-1].method == "template"


def test_one_seed_prints_no_spread(store):
    tr, _ = store
    md = lb.render(lb.build(tr.search_runs("synthtalk"), "synthtalk"), "markdown")
    single = next(line for line in md.splitlines() if "memorytalker" in line)
    assert "±" not in single and "2.000" in single
    several = next(line for line in md.splitlines() if "faceformer" in line and "| 3 |" in line)
    assert several.count("±") == 3  # three seeds: a spread in every column


def test_formats(store):
    tr, ids = store
    hl = ids[("memorytalker", "hashM", 0)]
    board = lb.build(tr.search_runs("synthtalk"), "synthtalk", metrics=["lve", "fdd"], highlight=hl)
    tex = lb.render(board, "latex")
    assert r"\toprule" in tex and "2.000" in tex and r"$\downarrow$" in tex
    assert "mean-motion (floor)" in tex and tex.count(r"\midrule") == 2
    rows = list(csv.DictReader(io.StringIO(lb.render(board, "csv"))))
    assert [r["method"] for r in rows][0] == "memorytalker" and rows[0]["highlighted"] == "True"
    assert float(rows[0]["lve_mean"]) == pytest.approx(2.0e-5)
    assert set(rows[0]) >= {"lve_mean", "lve_std", "lve_n", "lve_ci_lo", "fdd_mean", "fdd_std", "n_seeds"}
    assert rows[0]["lve_std"] == "nan" and rows[0]["lve_n"] == "1"  # one seed: no std, not 0
    table = lb.render(board, "table")
    assert "Leaderboard: synthtalk" in table and "▶" in table and "faceformer" in table
    with pytest.raises(ConfigError, match="--format 'html'"):
        lb.render(board, "html")


def test_unknown_metric_suggests(store):
    tr, _ = store
    with pytest.raises(ConfigError, match="unknown metric 'lvee'.*Did you mean: lve"):
        lb.build(tr.search_runs("synthtalk"), "synthtalk", metrics=["lvee"])


def test_empty_store_gives_empty_board(store_uri):
    board = lb.leaderboard("synthtalk", tracking_uri=store_uri)
    assert board.rows == []
    assert "method" in lb.render(board, "markdown")


def test_same_seed_twice_newest_counts(store_uri):
    tr = Tracker(store_uri)
    exp = tr.ensure_experiment("synthtalk")
    for lve in (5.0, 1.0):  # the second run (newer) replaces the first
        rid = tr.create_run(
            exp, "x", {"talkbench.method": "codetalker", "talkbench.config_hash": "h", "talkbench.seed": 0}
        )
        tr.log_metrics(rid, {"test/lve": lve})
        tr.finish_run(rid)
        time.sleep(0.01)  # distinct start times
    (row,) = lb.build(tr.search_runs("synthtalk"), "synthtalk").rows
    assert row.n_seeds == 1 and row.values["lve"][0] == 1.0


def _log_runs_with_tables(tr, method, config_hash, seeds, clip_values, shift, rng):
    """Runs of one row, each with a per-sequence table of `lve` (frame-pooled: lve_sum, n_frames)."""
    import pandas as pd

    from talkbench.contract import PER_SEQUENCE_ARTIFACT

    exp = tr.ensure_experiment("synthtalk")
    for seed in seeds:
        values = clip_values + shift + 0.02e-5 * rng.standard_normal(len(clip_values))
        table = pd.DataFrame(
            {
                "clip": [f"clip{i}" for i in range(len(values))],
                "subject": ["S1", "S2"] * (len(values) // 2) + ["S1"] * (len(values) % 2),
                "condition": [None] * len(values),
                "lve_sum": values * 30,
                "n_frames": 30,
            }
        )
        rid = tr.create_run(
            exp,
            f"{method}/seed{seed}",
            {
                "talkbench.method": method,
                "talkbench.config_hash": config_hash,
                "talkbench.seed": seed,
                "talkbench.scale.lve": 1e-5,
            },
        )
        tr.log_params(rid, {"seed": seed})
        tr.log_metrics(rid, {"test/lve": float(values.mean())})
        tr.log_table(rid, table, PER_SEQUENCE_ARTIFACT)
        tr.finish_run(rid)


@pytest.mark.parametrize(
    "gap, n_seeds, n_clips, bold",
    [
        (0.5e-5, 3, 12, True),  # a clear gap, enough data: best is significant
        (0.0, 3, 12, False),  # no gap: no claim
        (0.5e-5, 1, 12, False),  # one seed: no claim, no CI
        (0.5e-5, 3, 5, False),  # 5 clips: no claim, no CI
    ],
)
def test_best_is_bold_only_where_significant(store_uri, gap, n_seeds, n_clips, bold):
    tr = Tracker(store_uri)
    rng = np.random.default_rng(0)
    clip_values = 3e-5 + 1e-5 * rng.random(n_clips)  # clips shared by both methods (hard clips)
    seeds = list(range(n_seeds))
    _log_runs_with_tables(tr, "faceformer", "hF", seeds, clip_values, 0.0, rng)
    _log_runs_with_tables(tr, "memorytalker", "hM", seeds, clip_values, gap, rng)
    board = lb.leaderboard("synthtalk", tracking_uri=store_uri, metrics=["lve"])
    md = lb.render(board, "markdown")
    assert ("**" in md) == bold, md
    best_row = board.ranked("lve")[0]
    est = best_row.estimates["lve"]
    assert (est.n_seeds, est.n_clips) == (n_seeds, n_clips)
    if bold:
        assert board.is_best(best_row, "lve") and best_row.method == "faceformer"
        lo, hi = est.ci
        assert f"[{lo / 1e-5:.3f}, {hi / 1e-5:.3f}]" in md
    if n_seeds == 1:
        assert "no CI: one seed" in md and "±" not in md.split("\n\n")[0]
    if n_clips < 8:
        assert f"no CI: {n_clips} clips" in md and "[" not in md.split("\n\n")[0].split("\n", 2)[2]


def test_variant_names_show_a_missing_param_as_a_dash(store_uri):
    """Runs logged before every dataset option was logged lack the param: the variant name says '–',
    never 'nan'; runs logged now carry the loader's default on both sides."""
    tr = Tracker(store_uri)
    exp = tr.ensure_experiment("synthtalk")
    for h, params in (("h0", {"dataset.options.style_coupling": 0.0}), ("h1", {})):
        rid = tr.create_run(exp, h, {"talkbench.method": "memorytalker", "talkbench.config_hash": h,
                                     "talkbench.seed": 0})
        tr.log_params(rid, {"seed": 0, "memorytalker.stage2": False, **params})
        tr.log_metrics(rid, {"test/lve": 1.0})
        tr.finish_run(rid)
    variants = sorted(r.variant for r in lb.build(tr.search_runs("synthtalk"), "synthtalk").rows)
    assert variants == ["style_coupling=0.0", "style_coupling=–"]


def test_stochastic_columns_and_deterministic_rows_as_n_1(store_uri):
    """MEE, CE (by its N) and Diversity become columns once a run logged them; a deterministic row
    (talkbench.samples = 1) shows MEE = CE = LVE and Diversity 0 marked N = 1; a row without the tag
    (an older run) shows '–'."""
    tr = Tracker(store_uri)
    exp = tr.ensure_experiment("synthtalk")
    rows = (
        ("facediffuser", "10",
         {"test/lve": 3e-5, "test/mee": 2e-5, "test/ce_n10": 1e-5, "test/diversity": 0.01}),
        ("faceformer", "1", {"test/lve": 4e-5}),
        ("memorytalker", None, {"test/lve": 5e-5}),
    )
    for method, n, metrics in rows:
        tags = {"talkbench.method": method, "talkbench.config_hash": method, "talkbench.seed": 0,
                "talkbench.scale.lve": 1e-5}
        if n is not None:
            tags["talkbench.samples"] = n
        rid = tr.create_run(exp, method, tags)
        tr.log_metrics(rid, metrics)
        tr.finish_run(rid)
    board = lb.build(tr.search_runs("synthtalk"), "synthtalk")
    assert [c.name for c in board.columns] == ["lve", "mee", "ce_n10", "diversity"]
    by = {r.method: r for r in board.rows}
    det = by["faceformer"].values
    assert det["mee"] == det["ce_n10"] == det["lve"]
    assert det["diversity"][0] == 0.0
    assert "mee" not in by["memorytalker"].values
    text = lb.to_markdown(board)
    line = next(row for row in text.splitlines() if "faceformer" in row)
    assert "4.000 (N = 1)" in line and "(N = 1): a deterministic method" in text
    assert "(N = 1)" not in next(row for row in text.splitlines() if "facediffuser" in row)


def _provenance_store(store_uri):
    """Two faceformer seeds with the encoder tags and speed metrics of a run, and an older run
    without them whose encoder is read from its config params."""
    tr = Tracker(store_uri)
    exp = tr.ensure_experiment("synthtalk")
    for seed, rtf in ((0, 0.2), (1, 0.4)):
        rid = tr.create_run(exp, f"ff{seed}", {
            "talkbench.method": "faceformer", "talkbench.config_hash": "hF", "talkbench.seed": seed,
            "talkbench.preset": "synthtalk", "talkbench.dataset_digest": "d1" * 8, "talkbench.device": "cpu",
            "talkbench.threads": 1, "talkbench.git_commit": "c" * 40,
            "talkbench.encoder.name": "wav2vec2: facebook/wav2vec2-base-960h",
            "talkbench.encoder.frozen_digest": "f" * 32, "talkbench.encoder.weights_digest": "w" * 32,
        })
        tr.log_metrics(rid, {"test/lve": 2e-5, "speed/rtf": rtf, "speed/first_frame_ms": 8.0,
                             "speed/ms_per_audio_s": 1000 * rtf, "speed/encoder_share": 0.25,
                             "speed/params_total": 2e6, "speed/params_trainable": 1.5e6,
                             "speed/train_s": 90.0 + 60 * rtf})
        tr.finish_run(rid)
    old = tr.create_run(exp, "old", {"talkbench.method": "memorytalker", "talkbench.config_hash": "hM"})
    tr.log_params(old, {"memorytalker.audio.kind": "hubert", "memorytalker.audio.name_or_path": "x/hubert",
                        "memorytalker.audio.pretrained": "False"})
    tr.log_metrics(old, {"test/lve": 3e-5})
    tr.finish_run(old)
    return tr


def test_speed_and_provenance_columns(store_uri):
    tr = _provenance_store(store_uri)
    board = lb.build(tr.search_runs("synthtalk"), "synthtalk", ["lve"])
    board = lb.with_columns(board, ["speed", "provenance"])
    ff = next(r for r in board.rows if r.method == "faceformer")
    assert ff.speed["rtf"] == pytest.approx(0.3)  # mean over the row's seeds
    md = lb.render(board, "markdown")
    assert "LVE" not in md and "RTF" in md and "first frame (ms)" in md  # quality left out
    assert "1.50M/2.00M" in md and "25 %" in md and "300.0" in md
    assert "train (min)" in md and "| 1.8 |" in md  # (102 s + 114 s) / 2 over the seeds
    assert "wav2vec2: facebook/wav2vec2-base-960h" in md and "ffffffffffff" in md and "d1d1d1d1d1d1" in md
    assert "hubert: x/hubert (random init)" in md and "not logged" in md  # the old run, from its params
    rows = list(csv.DictReader(io.StringIO(lb.render(board, "csv"))))
    assert float(rows[0]["speed_rtf"]) == pytest.approx(0.3) and rows[0]["encoder"].startswith("wav2vec2")
    both = lb.render(lb.with_columns(board, ["quality", "speed"]), "table", width=250)
    assert "LVE" in both and "RTF" in both
    with pytest.raises(ConfigError, match="--columns sped"):
        lb.with_columns(board, ["sped"])


def test_leaderboard_command_columns(store_uri):
    from typer.testing import CliRunner

    from talkbench.cli import app

    _provenance_store(store_uri)
    out = CliRunner().invoke(app, ["leaderboard", "--tracking-uri", store_uri, "--columns", "speed",
                                   "--format", "markdown"])
    assert out.exit_code == 0, out.output
    assert "RTF" in out.stdout and "LVE" not in out.stdout
