"""The prepared-layout loader: names, [::stride], length alignment, lazy loading, and every bad input."""

from __future__ import annotations

import json
import logging
import os
import pickle

import numpy as np
import pytest
import soundfile as sf
from datasets_fakes import make_synthlike, write_clip, write_templates

from talkbench.datasets import load_dataset
from talkbench.datasets.prepared import aligned_frames, audio_too_short, parse_name
from talkbench.errors import ConfigError, DataError


@pytest.fixture()
def fake(tmp_path):
    return make_synthlike(tmp_path / "fake")


def test_name_parsing():
    assert parse_name("FaceTalk_170725_00137_TA_sentence01") == ("FaceTalk_170725_00137_TA", 1)
    assert parse_name("F2_e37") == ("F2", 37)
    assert parse_name("SynthTalk_S03_sentence40") == ("SynthTalk_S03", 40)
    for bad in ("nounderscore01", "Subject_sentenceX"):
        with pytest.raises(DataError, match="cannot parse the clip name"):
            parse_name(bad)


def test_alignment_rule():
    # T = min(T_motion, floor(audio_s * fps)); audio more than max(0.5 s, 10%) short is an error
    assert aligned_frames(90, 2.99, 30) == 89
    assert aligned_frames(90, 3.5, 30) == 90
    assert not audio_too_short(90, 2.6, 30)  # 0.4 s short of 3 s
    assert audio_too_short(90, 2.4, 30)
    assert not audio_too_short(600, 18.5, 30)  # 20 s motion: 10% = 2 s allowed
    assert audio_too_short(600, 17.9, 30)


def test_split_views_and_clip_contents(fake):
    ds = load_dataset("synthtalk", root=fake)
    spec = ds.spec
    assert (spec.fps, spec.capture_fps, spec.stride, spec.n_vertices) == (30, 60, 2, 30)
    assert spec.train_subjects == ("Fake_S01", "Fake_S02", "Fake_S03")
    train, val = ds.split("train"), ds.split("val")
    assert len(train) == 12 and train.subjects == ["Fake_S01", "Fake_S02", "Fake_S03"]
    assert len(val) == 3 and {r.sentence for r in val.refs} == {2, 3, 4}  # sentences 2-4 only
    assert ds.split("train") is train  # probed once
    clip = train[4]
    ref = train.refs[4]
    assert (clip.name, clip.subject, clip.sentence) == (ref.name, ref.subject, ref.sentence)
    raw = np.load(fake / "vertices_npy" / f"{clip.name}.npy")
    np.testing.assert_array_equal(clip.vertices, raw.reshape(len(raw), 30, 3)[::2][: clip.n_frames])
    assert clip.n_frames == ref.n_frames
    assert len(clip.audio) == round(clip.n_frames / 30 * 16000)
    wav, _ = sf.read(fake / "wav" / f"{clip.name}.wav", dtype="float32")
    np.testing.assert_array_equal(clip.audio, wav[: len(clip.audio)])
    assert clip.template is ds.templates[clip.subject]
    assert clip.vertices.dtype == np.float32 and clip.audio.dtype == np.float32


def test_vertices_are_memory_mapped_and_audio_cached(fake):
    ds = load_dataset("synthtalk", root=fake)
    view = ds.split("train")
    a, b = view[0], view[0]
    base = a.vertices
    while getattr(base, "base", None) is not None and not isinstance(base, np.memmap):
        base = base.base
    assert isinstance(base, np.memmap)
    assert not a.vertices.flags.writeable and not a.audio.flags.writeable
    assert a.audio is b.audio  # decoded once


def test_audio_longer_than_motion_is_trimmed_and_shorter_padded(tmp_path):
    tpl = {"Sub_A": np.zeros((4, 3), np.float32), "Sub_B": np.ones((4, 3), np.float32)}
    root = tmp_path / "d"
    write_templates(root, tpl)
    write_clip(root, "Sub_A_sentence01", tpl["Sub_A"], 1.0, audio_seconds=1.7)  # audio longer
    write_clip(root, "Sub_A_sentence02", tpl["Sub_A"], 2.0, audio_seconds=1.75)  # 0.25 s short: allowed
    write_clip(root, "Sub_B_sentence01", tpl["Sub_B"], 1.0)
    from talkbench.datasets.prepared import PreparedDataset
    from talkbench.datasets.spec import DatasetSpec, Split

    spec = DatasetSpec("x", 30, 4, {"all": Split(("Sub_A", "Sub_B"))}, ("Sub_A",), capture_fps=60)
    view = PreparedDataset(root, spec, tpl).split("all")
    by = {r.name: r for r in view.refs}
    assert by["Sub_A_sentence01"].n_frames == 30  # motion-bound
    assert by["Sub_A_sentence02"].n_frames == 52  # floor(1.75 * 30): audio-bound
    clip = view.by_name("Sub_A_sentence02")
    assert clip.n_frames == 52 and len(clip.audio) == round(52 / 30 * 16000)
    assert len(view.by_name("Sub_A_sentence01").audio) == 16000


def test_pairs_without_vertex_file_are_dropped(fake):
    sf.write(fake / "wav" / "Fake_S01_sentence09.wav", np.zeros(8000), 16000)
    ds = load_dataset("synthtalk", root=fake)
    assert "Fake_S01_sentence09" not in [r.name for r in ds.split("train").refs]
    assert [p.name for p in ds.wav_only] == ["Fake_S01_sentence09.wav"]


def test_digest_tracks_file_list_templates_and_regions(fake):
    d0 = load_dataset("synthtalk", root=fake).spec.digest
    assert d0 == load_dataset("synthtalk", root=fake).spec.digest and len(d0) == 16
    np.save(fake / "regions" / "lips.npy", np.arange(0, 9, dtype=np.int64))
    d1 = load_dataset("synthtalk", root=fake).spec.digest
    os.remove(fake / "wav" / "Fake_S02_sentence03.wav")
    d2 = load_dataset("synthtalk", root=fake).spec.digest
    tpl = {k: v + 1 for k, v in load_dataset("synthtalk", root=fake).templates.items()}
    write_templates(fake, tpl)
    d3 = load_dataset("synthtalk", root=fake).spec.digest
    # a truncated vertex file (a partial download) and changed generator metadata change it too
    npy = sorted((fake / "vertices_npy").glob("*.npy"))[0]
    np.save(npy, np.load(npy)[:-2])
    d4 = load_dataset("synthtalk", root=fake).spec.digest
    meta = json.loads((fake / "synthtalk.json").read_text())
    meta["generator_version"] = "other"
    (fake / "synthtalk.json").write_text(json.dumps(meta))
    d5 = load_dataset("synthtalk", root=fake).spec.digest
    assert len({d0, d1, d2, d3, d4, d5}) == 6


def test_spec_from_synthtalk_json(fake):
    spec = load_dataset("synthtalk", root=fake).spec
    assert spec.speaker_index("Fake_S02") == 1 and spec.speaker_index("Fake_S05") == -1
    np.testing.assert_array_equal(spec.regions["lips"], np.arange(10))
    assert spec.faces.shape == (2, 3)
    assert [m.tolist() for m in spec.mouth_pair] == [[3], [7]]
    assert spec.table_scales == {"lve": 1e-5, "fdd": 1e-7, "mve": 1e-3}
    assert spec.meta["generator_version"] == "fake"


# ------------------------------------------------------------------------------------- bad inputs
def test_missing_template_for_a_subject(fake):
    tpl = load_dataset("synthtalk", root=fake).templates
    del tpl["Fake_S02"]
    write_templates(fake, tpl)
    ds = load_dataset("synthtalk", root=fake)
    with pytest.raises(DataError, match=r"Fake_S02_sentence01.npy: no template for subject 'Fake_S02'"):
        ds.split("train")
    assert len(ds.split("val")) == 3  # other splits still load


def test_vertex_count_not_matching_template(fake):
    np.save(fake / "vertices_npy" / "Fake_S03_sentence02.npy", np.zeros((30, 29 * 3), np.float32))
    ds = load_dataset("synthtalk", root=fake)
    with pytest.raises(DataError, match=r"Fake_S03_sentence02.npy: shape \(30, 87\).*template's 30 vertices"):
        ds.split("train")


def test_nan_in_vertices(fake):
    arr = np.load(fake / "vertices_npy" / "Fake_S01_sentence03.npy")
    arr[6, 5] = np.nan
    np.save(fake / "vertices_npy" / "Fake_S01_sentence03.npy", arr)
    view = load_dataset("synthtalk", root=fake).split("train")
    i = [r.name for r in view.refs].index("Fake_S01_sentence03")
    view[i - 1]  # neighbours load
    with pytest.raises(
        DataError, match=r"Fake_S01_sentence03.npy: vertices contain NaN or inf .*frame 3 at 30"
    ):
        view[i]


def test_inf_in_vertices(fake):
    arr = np.load(fake / "vertices_npy" / "Fake_S01_sentence01.npy")
    arr[0, 0] = np.inf
    np.save(fake / "vertices_npy" / "Fake_S01_sentence01.npy", arr)
    with pytest.raises(DataError, match="Fake_S01_sentence01.npy: vertices contain NaN or inf"):
        load_dataset("synthtalk", root=fake).split("train")[0]


def test_unreadable_wav(fake):
    (fake / "wav" / "Fake_S02_sentence02.wav").write_bytes(b"this is not audio")
    with pytest.raises(DataError, match=r"Fake_S02_sentence02.wav: unreadable audio"):
        load_dataset("synthtalk", root=fake).split("train")


def test_empty_wav(fake):
    sf.write(fake / "wav" / "Fake_S04_sentence03.wav", np.zeros(0), 16000)
    ds = load_dataset("synthtalk", root=fake)
    with pytest.raises(DataError, match=r"Fake_S04_sentence03.wav: empty audio"):
        ds.split("val")


def test_wrong_sample_rate_is_resampled_with_a_note(fake, caplog):
    t = np.arange(int(0.6 * 44100)) / 44100
    sf.write(fake / "wav" / "Fake_S05_sentence02.wav", 0.5 * np.sin(2 * np.pi * 300 * t), 44100)
    view = load_dataset("synthtalk", root=fake).split("test")
    with caplog.at_level(logging.WARNING, logger="talkbench.datasets"):
        clip = view.by_name("Fake_S05_sentence02")
    assert "Fake_S05_sentence02.wav: audio at 44100 Hz is resampled to 16000 Hz" in caplog.text
    assert len(clip.audio) == round(clip.n_frames / 30 * 16000)
    spectrum = np.abs(np.fft.rfft(clip.audio))
    assert np.fft.rfftfreq(len(clip.audio), 1 / 16000)[spectrum.argmax()] == pytest.approx(300, abs=3)


def test_audio_much_shorter_than_motion(fake):
    sf.write(fake / "wav" / "Fake_S01_sentence02.wav", np.zeros(800), 16000)  # 0.05 s vs 0.6 s of motion
    with pytest.raises(
        DataError, match=r"Fake_S01_sentence02.wav: audio lasts 0.05 s but its motion .* 0.60 s"
    ):
        load_dataset("synthtalk", root=fake).split("train")


def test_malicious_templates_pickle_refused(fake):
    marker = fake / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (fake / "templates.pkl").write_bytes(pickle.dumps({"Fake_S01": Evil()}))
    with pytest.raises(DataError, match="templates.pkl: refused to load pickle"):
        load_dataset("synthtalk", root=fake)
    assert not marker.exists()


def test_root_that_is_not_a_dataset(tmp_path):
    with pytest.raises(DataError, match=r"nowhere: no such directory"):
        load_dataset("vocaset", root=tmp_path / "nowhere")
    (tmp_path / "wav").mkdir()
    with pytest.raises(DataError, match=r"not a prepared biwi dataset: missing vertices_npy, templates.pkl"):
        load_dataset("biwi", root=tmp_path)


def test_unknown_names_and_options(fake):
    with pytest.raises(ConfigError, match="unknown dataset 'vocaset2'. Did you mean: vocaset"):
        load_dataset("vocaset2", root=fake)
    with pytest.raises(ConfigError, match="unknown option 'presett'.*Did you mean: preset"):
        load_dataset("synthtalk", root=fake, presett="tiny")
    with pytest.raises(ConfigError, match="needs a data root"):
        load_dataset("vocaset")
    with pytest.raises(ConfigError, match="unknown split 'testing'"):
        load_dataset("synthtalk", root=fake).split("testing")
