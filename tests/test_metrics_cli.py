"""`bench eval` and evaluate() end to end on a generated SynthTalk tiny dataset."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from talkbench.cli import app
from talkbench.commands.eval import parse_prediction_name
from talkbench.metrics import evaluate, load_alignments

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny(synthtalk_tiny):
    from talkbench.datasets import load_dataset

    ds = load_dataset("synthtalk", root=synthtalk_tiny)
    return synthtalk_tiny, ds, list(ds.split("test"))


def _write(folder, clips, fn, conditions=(None,), flat=True):
    folder.mkdir(parents=True, exist_ok=True)
    for c in clips:
        for cond in conditions:
            v = fn(c).astype(np.float32)
            name = c.name + (f"_condition_{cond}" if cond else "")
            np.save(folder / f"{name}.npy", v.reshape(v.shape[0], -1) if flat else v)
    return folder


def test_ground_truth_scores_perfect_on_synthtalk(tiny):
    root, ds, test = tiny
    aligns = load_alignments(root / "alignments")
    ev = evaluate(((c.name, None, c.vertices) for c in test), ds.spec, {c.name: c for c in test}, aligns)
    a = ev.aggregates
    assert a["lve"] == 0.0 and a["mve"] == 0.0 and a["fdd"] == 0.0
    assert a["bilabial_recall"] == 1.0 and a["vowel_open_rate"] == 1.0 and a["lip_corr"] == pytest.approx(1.0)
    assert ev.per_sequence["n_bilabial"].sum() > 0
    assert ev.region_digest == ds.spec.region_digest()


def test_bench_eval_ground_truth_folder(tiny, tmp_path):
    root, ds, test = tiny
    pred = _write(tmp_path / "gt", test, lambda c: c.vertices)
    out = tmp_path / "per_seq.csv"
    res = runner.invoke(
        app,
        [
            "eval",
            "--pred",
            str(pred),
            "--dataset",
            "synthtalk",
            "--data-root",
            str(root),
            "--out",
            str(out),
            "--n-boot",
            "50",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "lve" in res.output and "bilabial_recall" in res.output and ds.spec.region_digest() in res.output
    df = pd.read_csv(out)
    assert sorted(df["clip"]) == sorted(c.name for c in test)
    assert (df["lve"] == 0).all() and df["n_closed"].sum() == df["n_bilabial"].sum() > 0


def test_bench_eval_conditioned_folder(tiny, tmp_path):
    root, ds, test = tiny
    subjects = ds.spec.train_subjects[:2]
    rng = np.random.default_rng(0)
    pred = _write(
        tmp_path / "cond",
        test,
        lambda c: c.vertices + rng.normal(scale=1e-3, size=c.vertices.shape),
        conditions=subjects,
        flat=False,
    )
    out = tmp_path / "cond.csv"
    res = runner.invoke(
        app,
        [
            "eval",
            "--pred",
            str(pred),
            "--dataset",
            "synthtalk",
            "--data-root",
            str(root),
            "--out",
            str(out),
            "--n-boot",
            "20",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "2 conditions" in res.output and "cond std" in res.output
    df = pd.read_csv(out)
    assert sorted(df["condition"].unique()) == sorted(subjects) and len(df) == 2 * len(test)


def test_bench_eval_reports_bad_files_one_by_one(tiny, tmp_path):
    root, ds, test = tiny
    pred = _write(tmp_path / "bad", test, lambda c: c.vertices)
    np.save(pred / "SynthTalk_S99_sentence01.npy", np.zeros((10, ds.spec.n_vertices * 3), np.float32))
    np.save(pred / f"{test[0].name}_condition_X.npy", np.zeros((10, 7 * 3), np.float32))
    nan = test[1].vertices.reshape(test[1].n_frames, -1).copy()
    nan[4, 0] = np.nan
    np.save(pred / f"{test[1].name}.npy", nan)
    args = ["eval", "--pred", str(pred), "--dataset", "synthtalk", "--data-root", str(root), "--n-boot", "0"]
    res = runner.invoke(app, args)
    assert res.exit_code == 2
    out = res.output
    assert "SynthTalk_S99_sentence01.npy: unknown clip name 'SynthTalk_S99_sentence01'" in out
    assert f"{test[0].name}_condition_X.npy: shape (10, 21)" in out
    assert f"{test[1].name}.npy: contains NaN or inf in 1 of" in out
    assert "3 of" in out and "--skip-invalid" in out
    # scoring the rest on request: the NaN clip is not averaged in, it is left out and said so
    res = runner.invoke(app, [*args, "--skip-invalid"])
    assert res.exit_code == 0, res.output
    assert "have no prediction" in res.output


def test_bench_eval_bad_options(tiny, tmp_path):
    root, _, _ = tiny
    res = runner.invoke(
        app, ["eval", "--pred", str(tmp_path / "none"), "--dataset", "synthtalk", "--data-root", str(root)]
    )
    assert res.exit_code == 2 and "no such directory" in res.output
    (tmp_path / "empty").mkdir()
    res = runner.invoke(
        app, ["eval", "--pred", str(tmp_path / "empty"), "--dataset", "synthtalk", "--data-root", str(root)]
    )
    assert res.exit_code == 2 and "no .npy files" in res.output


def test_prediction_names():
    from pathlib import Path

    pf = parse_prediction_name(Path("F2_e37_condition_F2.npy"))
    assert (pf.clip, pf.condition) == ("F2_e37", "F2")
    pf = parse_prediction_name(
        Path("FaceTalk_170809_00138_TA_sentence32_condition_FaceTalk_170728_03272_TA.npy")
    )
    assert (pf.clip, pf.condition) == ("FaceTalk_170809_00138_TA_sentence32", "FaceTalk_170728_03272_TA")
    assert parse_prediction_name(Path("SynthTalk_S06_sentence04.npy")).condition is None
