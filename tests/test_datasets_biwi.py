"""BIWI: 25 fps, 23,370 vertices, Test-A/Test-B, the CodeTalker region files, both conventions named."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from _shared import DATA
from datasets_fakes import write_clip, write_templates

from talkbench.datasets import biwi, load_dataset
from talkbench.datasets.io import load_index_file
from talkbench.errors import ConfigError


@pytest.fixture(scope="module")
def biwi_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("biwi") / "BIWI"
    rng = np.random.default_rng(0)
    templates = {s: rng.standard_normal((23370, 3)).astype(np.float32) * 0.2 for s in ("F2", "M3", "F1")}
    write_templates(root, templates)
    for s in templates:
        for e in (1, 32, 33, 37, 40):
            write_clip(root, f"{s}_e{e:02d}", templates[s], 0.2, capture_fps=25, sample_rate=44100, seed=e)
    return root


def test_spec_and_splits(biwi_root, caplog):
    with caplog.at_level(logging.WARNING, logger="talkbench.datasets"):
        ds = load_dataset("biwi", root=biwi_root)
    assert "'codetalker' preprocessing convention" in caplog.text and "not comparable" in caplog.text
    spec = ds.spec
    assert (spec.fps, spec.stride, spec.n_vertices, spec.period) == (25, 1, 23370, 25)
    assert spec.audio_alignment == "pairs"
    assert spec.table_scales == {"lve": 1e-4, "fdd": 1e-5}
    assert spec.meta["preprocessing"] == "codetalker"
    assert spec.train_subjects == ("F2", "F3", "F4", "M3", "M4", "M5")
    assert set(spec.splits) == {"train", "val", "test_a", "test_b"}
    names = {s: sorted(r.name for r in ds.split(s).refs) for s in spec.splits}
    assert names["train"] == ["F2_e01", "F2_e32", "M3_e01", "M3_e32"]
    assert names["val"] == ["F2_e33", "M3_e33"]
    assert names["test_a"] == ["F2_e37", "F2_e40", "M3_e37", "M3_e40"]  # same speakers as training
    assert names["test_b"] == ["F1_e37", "F1_e40"]  # unseen speakers
    assert spec.speaker_index("F1") == -1 and spec.speaker_index("M3") == 3
    clip = ds.split("test_b")[0]
    assert clip.n_frames == 5 and len(clip.audio) == 5 * 640  # 2 audio frames of 50 Hz per motion frame


def test_regions_are_the_codetalker_files(biwi_root):
    spec = load_dataset("biwi", root=biwi_root).spec
    lve = load_index_file(str(DATA / "regions/BIWI_lve.txt"))
    fdd = load_index_file(str(DATA / "regions/BIWI_fdd.txt"))
    np.testing.assert_array_equal(spec.regions["lips"], np.unique(lve))
    np.testing.assert_array_equal(spec.regions["upper_face"], np.unique(fdd))
    assert len(spec.regions["lips"]) == 4996 and len(spec.regions["upper_face"]) == 7784
    assert (biwi.PACKAGED_REGIONS / "README.md").read_text().count("CodeTalker") >= 2  # attribution kept


def test_local_region_files_win(biwi_root, tmp_path):
    import shutil

    root = tmp_path / "b"
    shutil.copytree(biwi_root, root)
    (root / "regions").mkdir()
    (root / "regions" / "lve.txt").write_text("1, 2, 3")
    (root / "regions" / "fdd.txt").write_text("7, 8")
    spec = load_dataset("biwi", root=root).spec
    assert spec.regions["lips"].tolist() == [1, 2, 3] and spec.meta["region_source"] == str(root / "regions")


def test_facexhubert_convention(biwi_root, tmp_path):
    root = tmp_path / "fx"
    tpl = {"F2": np.zeros((23370, 3), np.float32), "F1": np.ones((23370, 3), np.float32)}
    write_templates(root, tpl)
    for s, k in (("F2", 41), ("F2", 73), ("F2", 77), ("F1", 80)):
        write_clip(root, f"{s}_{k}", tpl[s], 0.2, capture_fps=25)
    ds = load_dataset("biwi", root=root, preprocessing="facexhubert")
    assert ds.spec.meta["preprocessing"] == "facexhubert"
    assert [r.name for r in ds.split("train").refs] == ["F2_41"]
    assert [r.name for r in ds.split("val").refs] == ["F2_73"]
    assert [r.name for r in ds.split("test_a").refs] == ["F2_77"]
    assert [r.name for r in ds.split("test_b").refs] == ["F1_80"]
    assert ds.spec.unit != load_dataset("biwi", root=biwi_root).spec.unit  # never mixed up in tables
    with pytest.raises(ConfigError, match="unknown BIWI preprocessing 'voca'"):
        load_dataset("biwi", root=root, preprocessing="voca")
    with pytest.raises(ConfigError, match="needs a data root"):
        load_dataset("biwi")
