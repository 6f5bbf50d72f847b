"""Multiface as FaceDiffuser prepares it: conversion of a fake release in the real file formats, the
protocol's spec, `bench data check` (sound and broken), and `bench run` scoring it."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf
from datasets_fakes import MULTIFACE_FOLDERS, make_multiface_release
from typer.testing import CliRunner

from talkbench.cli import app
from talkbench.datasets import load_dataset
from talkbench.datasets.check import check_dataset
from talkbench.datasets.prepare_multiface import (
    BOX_MAX,
    BOX_MIN,
    N_RAW_VERTICES,
    SENTENCES,
    prepare_multiface,
)
from talkbench.errors import DataError

runner = CliRunner()


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return make_multiface_release(tmp_path_factory.mktemp("mf") / "raw", frames=30)


@pytest.fixture(scope="module")
def prepared(release, tmp_path_factory):
    out = tmp_path_factory.mktemp("mf") / "prepared"
    res = runner.invoke(app, ["data", "prepare", "multiface", "--raw", str(release), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "wrote 7 sequences" in res.output and "skipped 1" in res.output
    return out


def test_conversion_keeps_the_retopology_and_normalises(release, prepared):
    keep = np.array((release / "vertex_map.txt").read_text().split(","), dtype=np.int64)
    seq = release / MULTIFACE_FOLDERS[1] / "tracked_mesh" / f"SEN_{SENTENCES[40]}"
    first = np.fromfile(seq / "021000.bin", np.float32).reshape(N_RAW_VERTICES, 3)[keep]
    got = np.load(prepared / "vertices_npy" / "2_41.npy")
    assert got.shape == (30, 6172 * 3) and got.dtype == np.float32
    expected = (first - BOX_MIN) / (BOX_MAX - BOX_MIN) * 2 - 1  # FaceDiffuser's [-1, 1] box
    np.testing.assert_allclose(got[0].reshape(-1, 3), expected, atol=1e-5)
    # frames in numeric order; audio copied as is (48 kHz, resampled on load)
    third = np.fromfile(seq / "021002.bin", np.float32).reshape(N_RAW_VERTICES, 3)[keep]
    np.testing.assert_allclose(
        got[2].reshape(-1, 3), (third - BOX_MIN) / (BOX_MAX - BOX_MIN) * 2 - 1, atol=1e-5
    )
    assert sf.info(str(prepared / "wav" / "2_41.wav")).samplerate == 48000
    assert np.load(prepared / "faces.npy").tolist() == [[0, 1, 2], [1, 2, 3], [1, 3, 4]]


def test_spec_follows_facediffusers_protocol(prepared):
    ds = load_dataset("multiface", root=prepared)
    spec = ds.spec
    assert (spec.n_vertices, spec.fps, spec.eval_split) == (6172, 30, "test")
    assert spec.train_subjects == ("2", "3", "6", "7", "9", "10", "11", "12", "13")
    assert [len(ds.split(s)) for s in ("train", "val", "test", "test_unseen")] == [2, 2, 2, 1]
    assert ds.split("test_unseen").refs[0].name == "1_46"
    # the metric script's thresholds: mouth > 0.1, forehead > 0.4
    np.testing.assert_array_equal(spec.regions["lips"], np.arange(40))
    np.testing.assert_array_equal(spec.regions["upper_face"], np.arange(100, 130))
    clip = ds.split("test")[0]
    assert clip.vertices.shape == (30, 6172, 3) and len(clip.audio) == 16000
    (prepared / "regions" / "lve.txt").write_text("3, 1, 2")
    (prepared / "regions" / "fdd.txt").write_text("7, 8")
    files = load_dataset("multiface", root=prepared, region_set="files").spec
    assert files.regions["lips"].tolist() == [1, 2, 3] and files.region_digest() != spec.region_digest()


def test_check_passes_and_names_each_broken_file(prepared, tmp_path):
    result = check_dataset(prepared)
    assert result.ok and result.kind == "multiface", result.problems
    assert result.summary["split test"].startswith("2 clips")
    bad = tmp_path / "bad"
    shutil.copytree(prepared, bad)
    (bad / "regions" / "forehead_mask.txt").unlink()  # missing
    np.save(bad / "vertices_npy" / "2_01.npy", np.zeros((30, 300), np.float32))  # wrong shape
    nan = np.load(bad / "vertices_npy" / "3_01.npy")
    nan[4, 7] = np.nan
    np.save(bad / "vertices_npy" / "3_01.npy", nan)  # NaN
    motion = np.load(bad / "vertices_npy" / "2_46.npy")
    np.save(bad / "vertices_npy" / "2_46.npy", np.repeat(motion, 2, axis=0))  # captured at 60 fps
    np.save(bad / "vertices_npy" / "3_46.npy", np.load(bad / "vertices_npy" / "3_46.npy")[::3])  # at 10 fps
    result = check_dataset(bad)
    expected = [
        "regions/forehead_mask.txt: missing vertex mask",
        "2_01.npy: shape (30, 300)",
        "3_01.npy: vertices contain NaN or inf (1 frames, first at frame 4 at 30 fps)",
        "2_46.wav: audio lasts 1.00 s but its motion 2_46.npy lasts 2.00 s",
        "3_46.npy: 10 frames last 0.33 s at 30 fps but its audio lasts 1.00 s",
    ]
    for fragment in expected:
        assert sum(fragment in p for p in result.problems) == 1, (fragment, result.problems)
    assert len(result.problems) == len(expected), result.problems


def test_prepare_errors_name_the_input(release, tmp_path):
    with pytest.raises(DataError, match="not a Multiface release"):
        prepare_multiface(tmp_path / "nothing", tmp_path / "o")
    raw = tmp_path / "raw"
    shutil.copytree(release, raw)
    (raw / "vertex_map.txt").unlink()
    with pytest.raises(DataError, match=r"021000\.bin: a frame in Multiface's own 7306-vertex topology"):
        prepare_multiface(raw, tmp_path / "o")


def test_bench_run_scores_mean_motion(prepared, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    res = runner.invoke(app, [
        "run", "--method", "mean-motion", "--dataset", "multiface", "--data-root", str(prepared),
        "--set", "eval.n_boot=20", "--set", "eval.render_clips=0", "--tracking-uri", uri, "--no-progress",
    ])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "Leaderboard: multiface" in res.stdout
    from talkbench import tracking

    runs = tracking.Tracker(uri).search_runs("multiface")
    assert (
        len(runs) == 1
        and np.isfinite(runs["metrics.test/lve"].iloc[0])
        and runs["metrics.test/lve"].iloc[0] > 0
    )
