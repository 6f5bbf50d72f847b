"""`bench eval` and evaluate() end to end on a generated SynthTalk tiny dataset."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from talkbench.cli import app
from talkbench.commands.eval import prediction_files
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
    subject = ds.spec.train_subjects[0]
    np.save(pred / f"{test[0].name}_condition_{subject}.npy", np.zeros((10, 7 * 3), np.float32))
    nan = test[1].vertices.reshape(test[1].n_frames, -1).copy()
    nan[4, 0] = np.nan
    np.save(pred / f"{test[1].name}.npy", nan)
    args = ["eval", "--pred", str(pred), "--dataset", "synthtalk", "--data-root", str(root), "--n-boot", "0"]
    res = runner.invoke(app, args)
    assert res.exit_code == 2
    out = res.output
    assert "SynthTalk_S99_sentence01.npy: unknown clip name 'SynthTalk_S99_sentence01'" in out
    assert f"{test[0].name}_condition_{subject}.npy: shape (10, 21)" in out
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


def test_prediction_names(tmp_path):
    names = [
        "F2_e37_condition_F2.npy",
        "FaceTalk_170809_00138_TA_sentence32_condition_FaceTalk_170728_03272_TA.npy",
        "SynthTalk_S06_sentence04.npy",
    ]
    for n in names:
        (tmp_path / n).write_bytes(b"")
    got = {pf.path.name: (pf.clip, pf.condition) for pf in prediction_files(tmp_path)}
    assert got == {
        names[0]: ("F2_e37", "F2"),
        names[1]: ("FaceTalk_170809_00138_TA_sentence32", "FaceTalk_170728_03272_TA"),
        names[2]: ("SynthTalk_S06_sentence04", None),
    }


# -- hardening (issue 17, items 4 and 5) -------------------------------------------------------------


def _eval(root, pred, *extra):
    args = ["eval", "--pred", str(pred), "--dataset", "synthtalk", "--data-root", str(root), "--n-boot", "0"]
    return runner.invoke(app, [*args, *extra])


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def test_unreadable_files_are_listed_with_one_error_line(tiny, tmp_path):
    import io

    root, ds, test = tiny
    pred = _write(tmp_path / "p", test, lambda c: c.vertices)
    (pred / f"{test[0].name}.npy").write_bytes(b"")  # 0 bytes: np.load raises EOFError ("Aborted.")
    buf = io.BytesIO()
    np.save(buf, test[1].vertices.reshape(test[1].n_frames, -1))
    (pred / f"{test[1].name}.npy").write_bytes(buf.getvalue()[:300])  # truncated
    np.save(pred / f"{test[2].name}.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (pred / f"{test[0].name}_condition_{ds.spec.train_subjects[0]}.npy").mkdir()  # a folder
    res = _eval(root, pred)
    assert res.exit_code == 2, res.output
    assert "Aborted" not in res.output and "Traceback" not in res.output
    for name in (test[0].name, test[1].name, test[2].name):
        assert f"{name}.npy: not a readable .npy array" in res.output
    assert f"{ds.spec.train_subjects[0]}.npy: not a readable .npy array" in res.output
    assert len(_error_lines(res.output)) == 1 and "4 of 4 prediction files are invalid" in res.output


def test_conditions_must_be_training_speakers(tiny, tmp_path):
    root, ds, test = tiny
    pred = _write(
        tmp_path / "p", test, lambda c: c.vertices, conditions=(ds.spec.train_subjects[0], "Nobody")
    )
    res = _eval(root, pred)
    assert res.exit_code == 2
    assert f"{test[0].name}_condition_Nobody.npy: unknown condition 'Nobody'" in res.output
    assert ds.spec.train_subjects[1] in res.output  # the valid names are given
    assert "3 of 6" in res.output


def test_short_predictions_are_refused_unless_allowed(tiny, tmp_path):
    root, ds, test = tiny
    n0 = test[0].n_frames
    pred = _write(tmp_path / "p", test, lambda c: c.vertices[:1] if c.name == test[0].name else c.vertices)
    res = _eval(root, pred)
    assert res.exit_code == 2
    assert f"{test[0].name}.npy: has 1 frames, less than half of its clip's {n0}" in res.output
    assert "--allow-short" in res.output
    res = _eval(root, pred, "--allow-short")
    assert res.exit_code == 0, res.output
    assert f"{test[0].name}.npy: note: has 1 frames, its clip {n0}" in res.output


def test_length_differences_over_one_frame_are_listed(tiny, tmp_path):
    root, ds, test = tiny
    a, b, c = test
    longer = np.concatenate([b.vertices, b.vertices[-3:]])

    def fn(clip):
        return {a.name: a.vertices[:-3], b.name: longer, c.name: c.vertices[:-1]}[clip.name]

    pred = _write(tmp_path / "p", test, fn)
    res = _eval(root, pred)
    assert res.exit_code == 0, res.output
    assert f"{a.name}.npy: note: has {a.n_frames - 3} frames, its clip {a.n_frames}" in res.output
    assert f"{b.name}.npy: note: has {b.n_frames + 3} frames, its clip {b.n_frames}" in res.output
    assert f"{c.name}.npy: note" not in res.output  # one frame off is the audio-length rule, not a fault


@pytest.mark.parametrize(
    "extra, message", [(["--n-boot", "-5"], "--n-boot -5"), (["--seed", "-1"], "--seed -1")]
)
def test_negative_bootstrap_options_are_errors(tiny, tmp_path, extra, message):
    root, _, test = tiny
    pred = _write(tmp_path / "p", test, lambda c: c.vertices)
    res = _eval(root, pred, *extra)
    assert res.exit_code == 2
    assert _error_lines(res.output) and message in _error_lines(res.output)[0]


def test_bootstrap_too_large_for_memory_names_the_limit(tiny, tmp_path):
    root, _, test = tiny
    pred = _write(tmp_path / "p", test, lambda c: c.vertices)
    res = _eval(root, pred, "--n-boot", str(10**15))  # the last --n-boot wins
    assert res.exit_code == 2 and "GiB" in res.output and "use at most" in res.output


def test_evaluate_refuses_a_negative_n_boot(tiny):
    from talkbench.errors import ConfigError

    _, ds, test = tiny
    with pytest.raises(ConfigError, match="n_boot -5"):
        evaluate(((c.name, None, c.vertices) for c in test), ds.spec, {c.name: c for c in test}, n_boot=-5)


def test_unwritable_out_is_one_error_line(tiny, tmp_path):
    root, _, test = tiny
    pred = _write(tmp_path / "p", test, lambda c: c.vertices)
    (tmp_path / "file").write_text("x")
    res = _eval(root, pred, "--out", str(tmp_path / "file" / "table.csv"))
    assert res.exit_code == 2 and "--out" in _error_lines(res.output)[0]


def test_mixed_conditioned_and_plain_predictions_are_one_error(tiny, tmp_path):
    # found by the fuzz: with alignments, the segment columns ran before the condition check (KeyError)
    root, ds, test = tiny
    pred = _write(
        tmp_path / "p", test[:1], lambda c: c.vertices, conditions=(None, ds.spec.train_subjects[0])
    )
    res = _eval(root, pred)
    assert res.exit_code == 2, res.output
    assert "some predictions have no condition" in _error_lines(res.output)[0]


def test_plain_and_conditioned_predictions_of_different_clips_are_scored(tiny, tmp_path):
    # found by the fuzz: pandas turned the missing condition into NaN and the lip-sync lookup failed
    root, ds, test = tiny
    pred = _write(tmp_path / "p", test[:1], lambda c: c.vertices)
    _write(pred, test[1:2], lambda c: c.vertices, conditions=(ds.spec.train_subjects[0],))
    res = _eval(root, pred)
    assert res.exit_code == 0, res.output
    assert "bilabial_recall" in res.output
