"""3DMEAD as ProbTalk3D prepares it: FLAME parameters become 5,023-vertex meshes, the sentence split by
emotion, `bench data check` (sound and broken), and `bench run` scoring it."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from datasets_fakes import make_3dmead_release
from typer.testing import CliRunner

from talkbench import tracking
from talkbench.cli import app
from talkbench.datasets import load_dataset
from talkbench.datasets.check import check_dataset
from talkbench.datasets.flame import flame_vertices, load_flame
from talkbench.datasets.prepare_mead import prepare_3dmead
from talkbench.errors import ConfigError, DataError

runner = CliRunner()


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("mead")
    params = make_3dmead_release(root / "raw", root / "flame.npz", frames=25)
    return root / "raw", root / "flame.npz", params


@pytest.fixture(scope="module")
def prepared(release, tmp_path_factory):
    raw, flame, _ = release
    out = tmp_path_factory.mktemp("mead") / "prepared"
    res = runner.invoke(
        app, ["data", "prepare", "3dmead", "--raw", str(raw), "--out", str(out), "--flame", str(flame)]
    )
    assert res.exit_code == 0, res.output
    assert "wrote 10 sequences" in res.output
    return out


def test_meshes_follow_probtalk3ds_protocol(release, prepared):
    _, flame, params = release
    model = load_flame(flame)
    p = params["W009_028_2_2"][0].astype(np.float64)
    pose = np.zeros((25, 15))
    pose[:, 6:9] = p[:, 400:]  # jaw joint
    # zero shape, the first 50 expression coefficients (the fake model has 10), jaw from the file
    expected = flame_vertices(model, None, p[:, 300:350], pose)
    got = np.load(prepared / "vertices_npy" / "W009_028_2_2.npy").reshape(25, 5023, 3)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    ds = load_dataset("3dmead", root=prepared)
    np.testing.assert_allclose(ds.templates["M003"], model.v_template, atol=1e-7)  # the zero-shape head
    assert (ds.spec.faces == model.faces).all()


def test_spec_splits_neutral_and_emotional_takes_apart(prepared):
    ds = load_dataset("3dmead", root=prepared, subject_set="probtalk3d")
    spec = ds.spec
    assert (spec.n_vertices, spec.fps, spec.eval_split, len(spec.train_subjects)) == (5023, 25, "test", 32)
    names = {s: sorted(r.name for r in ds.split(s).refs) for s in ("train", "val", "test")}
    # neutral 1-32 / 33-36 / 37-40, emotional 1-24 / 25-27 / 28-30
    assert names["train"] == ["M003_001_0_0", "M003_005_3_1", "W009_001_0_0", "W009_005_3_1"]
    assert names["val"] == ["M003_033_0_0", "W009_033_0_0"]
    assert names["test"] == ["M003_028_2_2", "M003_037_0_0", "W009_028_2_2", "W009_037_0_0"]
    assert len(load_dataset("3dmead", root=prepared).spec.train_subjects) == 47
    assert spec.regions["lips"].size == 419 and spec.speaker_index("W009") >= 0


def test_check_passes_and_names_each_broken_file(prepared, tmp_path):
    result = check_dataset(prepared)
    assert result.ok and result.kind == "3dmead", result.problems
    assert "group 0: 37-40" in result.summary["split test"]
    bad = tmp_path / "bad"
    shutil.copytree(prepared, bad)
    (bad / "regions" / "fdd.txt").unlink()  # missing
    np.save(bad / "vertices_npy" / "M003_001_0_0.npy", np.zeros((25, 100), np.float32))  # wrong shape
    nan = np.load(bad / "vertices_npy" / "W009_001_0_0.npy")
    nan[3, 0] = np.inf
    np.save(bad / "vertices_npy" / "W009_001_0_0.npy", nan)  # NaN/inf
    m = np.load(bad / "vertices_npy" / "M003_037_0_0.npy")
    np.save(bad / "vertices_npy" / "M003_037_0_0.npy", np.repeat(m, 2, axis=0))  # at 50 fps
    result = check_dataset(bad)
    expected = [
        "regions/fdd.txt: missing region file",
        "M003_001_0_0.npy: shape (25, 100)",
        "W009_001_0_0.npy: vertices contain NaN or inf (1 frames, first at frame 3 at 25 fps)",
        "M003_037_0_0.wav: audio lasts 1.00 s but its motion M003_037_0_0.npy lasts 2.00 s",
    ]
    for fragment in expected:
        assert sum(fragment in p for p in result.problems) == 1, (fragment, result.problems)
    assert len(result.problems) == len(expected), result.problems


def test_prepare_errors_name_the_input(release, tmp_path):
    raw, flame, _ = release
    with pytest.raises(ConfigError, match="--flame FLAME.npz"):
        prepare_3dmead(raw, tmp_path / "o")
    with pytest.raises(DataError, match="not a prepared 3DMEAD folder"):
        prepare_3dmead(tmp_path, tmp_path / "o", flame=flame)
    bad = tmp_path / "raw"
    shutil.copytree(raw, bad)
    np.save(bad / "param" / "M003_001_0_0.npy", np.zeros((1, 5, 400), np.float32))
    with pytest.raises(DataError, match=r"M003_001_0_0\.npy: shape \(5, 400\); expected \(1, T, 403\)"):
        prepare_3dmead(bad, tmp_path / "o", flame=flame)
    np.save(bad / "param" / "M003_1.npy", np.zeros((1, 5, 403), np.float32))
    with pytest.raises(DataError, match="cannot parse the clip name 'M003_1'"):
        prepare_3dmead(bad, tmp_path / "o2", flame=flame)
    assert not (tmp_path / "o2").exists()  # names are checked before anything is written


def test_bench_run_scores_mean_motion(prepared, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    res = runner.invoke(app, [
        "run", "--method", "mean-motion", "--dataset", "3dmead", "--data-root", str(prepared),
        "--set", "eval.n_boot=20", "--set", "eval.render_clips=0", "--tracking-uri", uri, "--no-progress",
    ])  # fmt: skip
    assert res.exit_code == 0, res.output
    (lve,) = tracking.Tracker(uri).search_runs("3dmead")["metrics.test/lve"]
    assert np.isfinite(lve) and lve > 0
