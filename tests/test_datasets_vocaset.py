"""VOCASET: the published split and spec, and `prepare_vocaset` on a tiny fake release in the real formats."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import soundfile as sf
from datasets_fakes import make_release, make_vocaset_like

from talkbench.datasets import load_dataset, vocaset
from talkbench.datasets.prepare_vocaset import prepare_vocaset
from talkbench.errors import DataError

ALL = vocaset.TRAIN_SUBJECTS + vocaset.VAL_SUBJECTS + vocaset.TEST_SUBJECTS  # the release's subjects


@pytest.fixture(scope="module")
def voca(tmp_path_factory):
    return make_vocaset_like(tmp_path_factory.mktemp("voca") / "vocaset")


def test_spec_follows_the_published_protocol(voca):
    spec = load_dataset("vocaset", root=voca).spec
    assert (spec.fps, spec.capture_fps, spec.stride, spec.n_vertices) == (30, 60, 2, 5023)
    assert spec.train_subjects[0] == "FaceTalk_170728_03272_TA" and len(spec.train_subjects) == 8
    assert spec.speaker_index("FaceTalk_170912_03278_TA") == 7
    assert spec.speaker_index("FaceTalk_170809_00138_TA") == -1  # test speakers are unseen
    assert spec.splits["train"].sentences == (1, 40)
    assert spec.splits["val"].subjects == ("FaceTalk_170811_03275_TA", "FaceTalk_170908_03277_TA")
    assert spec.splits["val"].sentences == spec.splits["test"].sentences == (21, 40)
    assert spec.splits["test"].subjects == ("FaceTalk_170809_00138_TA", "FaceTalk_170731_00024_TA")
    assert not set(spec.train_subjects) & (
        set(spec.splits["val"].subjects) | set(spec.splits["test"].subjects)
    )
    assert spec.table_scales == {"lve": 1e-5, "fdd": 1e-7, "mve": 1e-3}
    assert [p.tolist() for p in spec.mouth_pair] == [[3546], [3504]]
    assert spec.audio_alignment == "interpolate" and spec.unit == "m"
    # MemoryTalker's lips_coordinates.npy has duplicates: the region is the unique set
    assert spec.regions["lips"].tolist() == [10, 11, 3504, 3546]
    # ... while the methods' lip loss gets the file as released: file order, duplicates kept
    assert spec.lip_loss_indices.tolist() == [3546, 3504, 3504, 10, 11]
    assert spec.frame_rule == "features"  # the released int(S'/50*30) frame count
    assert len(spec.regions["upper_face"]) == 100


def test_split_membership_and_loading(voca):
    ds = load_dataset("vocaset", root=voca)
    train, test = ds.split("train"), ds.split("test")
    assert len(train) == 16  # 8 subjects x sentences 1 and 21
    assert len(test) == 2 and {r.sentence for r in test.refs} == {21}  # sentence 1 excluded for held-out
    clip = test[0]
    raw = np.load(voca / "vertices_npy" / f"{clip.name}.npy")
    assert raw.shape[0] == 18 and clip.n_frames == 9  # 0.3 s at 60 fps -> 30 fps with [::2]
    np.testing.assert_array_equal(clip.vertices, raw.reshape(18, 5023, 3)[::2])
    assert len(clip.audio) == 4800  # 22 kHz audio resampled to 16 kHz


def test_faces_from_flame_ply(voca, tmp_path):
    (voca / "templates").mkdir(exist_ok=True)
    head = (
        "ply\nformat ascii 1.0\nelement vertex 0\nelement face 2\n"
        "property list uchar int vertex_indices\nend_header\n"
    )
    (voca / "templates" / "FLAME_sample.ply").write_text(head + "3 0 1 2\n3 5022 1 0\n")
    try:
        spec = load_dataset("vocaset", root=voca).spec
        assert spec.faces.tolist() == [[0, 1, 2], [5022, 1, 0]]
    finally:
        (voca / "templates" / "FLAME_sample.ply").unlink()


def test_other_datasets_templates_are_named(tmp_path):
    root = tmp_path / "v"
    for d in ("wav", "vertices_npy"):
        (root / d).mkdir(parents=True)
    (root / "templates.pkl").write_bytes(pickle.dumps({"F1": np.zeros((23370, 3), np.float32)}))
    with pytest.raises(DataError, match=r"templates.pkl: templates have 23370 vertices; VOCASET .* 5023"):
        load_dataset("vocaset", root=root)


def test_missing_region_files_are_named(voca, tmp_path):
    import shutil

    root = tmp_path / "v"
    shutil.copytree(voca, root)
    shutil.rmtree(root / "range")
    with pytest.raises(DataError, match=r"no 'lips' region file; expected one of regions/lips.npy"):
        load_dataset("vocaset", root=root)


# ------------------------------------------------------------------------------ prepare_vocaset
def test_prepare_vocaset_converts_a_fake_release(tmp_path, monkeypatch):
    raw, out = tmp_path / "raw", tmp_path / "prepared"
    rel = make_release(raw)
    (raw / "regions").mkdir()
    np.save(raw / "regions" / "lips.npy", np.arange(50, dtype=np.int64))
    np.save(raw / "regions" / "upper_face.npy", np.arange(100, 200, dtype=np.int64))

    real_load = np.load
    modes = {}

    def spy_load(path, *args, **kwargs):
        modes[str(path).rsplit("/", 1)[-1]] = kwargs.get("mmap_mode")
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(np, "load", spy_load)
    report = prepare_vocaset(raw, out)
    monkeypatch.undo()
    assert modes["data_verts.npy"] == "r"  # never read whole
    assert report.written == 5 and report.skipped_no_audio == [f"{ALL[0]}_sentence03"]
    for (s, q), n in rel["lengths"].items():
        stem = f"{s}_{q}"
        arr = np.load(out / "vertices_npy" / f"{stem}.npy")
        frames = rel["index"][s][q]
        expected = rel["verts"][[frames[k] for k in sorted(frames)]].reshape(n, -1)
        assert arr.dtype == np.float32 and arr.shape == (n, 5023 * 3)
        np.testing.assert_array_equal(arr, expected)  # rows in local-frame order
        wav, rate = sf.read(out / "wav" / f"{stem}.wav", dtype="int16")
        assert rate == 22000
        np.testing.assert_array_equal(wav, rel["audio"][s][q]["audio"])
    assert (out / "templates.pkl").read_bytes() == (raw / "templates.pkl").read_bytes()
    assert not list(out.rglob("*.tmp*"))
    ds = load_dataset("vocaset", root=out)
    assert len(ds.split("train")) == 3 and len(ds.split("test")) == 2
    clip = ds.split("test")[1]
    assert clip.n_frames == rel["lengths"][(ALL[-1], clip.name[-10:])] // 2


def test_prepare_vocaset_errors(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "data_verts.npy").write_bytes(b"")
    with pytest.raises(
        DataError, match=r"not a VOCASET release: missing raw_audio_fixed.pkl, subj_seq_to_idx.pkl"
    ):
        prepare_vocaset(raw, tmp_path / "out")
    make_release(raw, n_vertices=7)
    templates = pickle.loads((raw / "templates.pkl").read_bytes())
    (raw / "templates.pkl").write_bytes(pickle.dumps({k: v[:6] for k, v in templates.items()}))
    with pytest.raises(DataError, match=r"templates.pkl: templates have 6 vertices, .*data_verts.npy has 7"):
        prepare_vocaset(raw, tmp_path / "out")
