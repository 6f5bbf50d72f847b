"""Audio reading/resampling, the restricted unpickler, region files and PLY faces."""

from __future__ import annotations

import logging
import os
import pickle
import struct

import numpy as np
import pytest
import soundfile as sf
from _shared import DATA

from talkbench.audio.signal import read_audio, resample
from talkbench.datasets.io import load_index_file, load_pickle, load_templates, read_ply_faces
from talkbench.errors import DataError

SPEECH = str(DATA / "speech/faceformer_demo.wav")


def _peak_hz(audio: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.fft.rfftfreq(len(audio), 1 / rate)[np.argmax(spec)])


def test_real_speech_is_resampled_to_16k_with_a_note(caplog):
    info = sf.info(SPEECH)
    assert info.samplerate == 44100
    with caplog.at_level(logging.WARNING, logger="talkbench.audio"):
        audio = read_audio(SPEECH)
    assert "resampled" in caplog.text and "44100" in caplog.text
    assert audio.dtype == np.float32 and audio.ndim == 1
    expected = info.frames * 16000 / 44100
    assert abs(len(audio) - expected) <= 1
    assert len(audio) / 16000 > 10.0  # the real clip is about 11.5 s
    # same waveform: the resampled signal matches a direct 16 kHz decimation of the original energy
    raw, _ = sf.read(SPEECH, dtype="float32")
    assert np.sqrt(np.mean(audio**2)) == pytest.approx(np.sqrt(np.mean(raw**2)), rel=0.05)


def test_resampling_keeps_frequency_and_mixes_stereo_down(tmp_path):
    rate = 22000
    t = np.arange(rate) / rate
    left, right = np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 1000 * t)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, left], axis=1) * 0.5, rate, subtype="PCM_16")
    audio = read_audio(path)
    assert len(audio) == 16000
    assert _peak_hz(audio, 16000) == pytest.approx(440, abs=2)
    assert np.abs(audio).max() == pytest.approx(0.5, abs=0.02)
    # a 1 kHz tone survives, a 10 kHz tone (above the new Nyquist) is filtered out rather than aliased
    assert np.std(resample(right, rate)) > 0.6
    high = np.sin(2 * np.pi * 10000 * t)
    assert np.std(resample(high, rate)) < 0.05


def test_16k_audio_is_read_without_resampling(tmp_path, caplog):
    x = (np.random.default_rng(0).standard_normal(1600) * 0.1).astype(np.float32)
    sf.write(tmp_path / "a.wav", x, 16000, subtype="FLOAT")
    with caplog.at_level(logging.WARNING, logger="talkbench.audio"):
        y = read_audio(tmp_path / "a.wav")
    assert caplog.text == ""
    np.testing.assert_array_equal(x, y)


def test_unreadable_and_empty_wav_name_the_file(tmp_path):
    bad = tmp_path / "garbage.wav"
    bad.write_bytes(b"RIFF\x00\x00not really a wav file at all")
    with pytest.raises(DataError, match="garbage.wav: unreadable audio"):
        read_audio(bad)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    with pytest.raises(DataError, match="empty.wav: empty audio"):
        read_audio(empty)


class _Evil:
    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_malicious_pickle_is_refused_without_executing(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "templates.pkl"
    for protocol in (0, 2, 4):
        path.write_bytes(pickle.dumps({"FaceTalk_x": _Evil(str(marker))}, protocol=protocol))
        with pytest.raises(
            DataError, match=r"templates.pkl: refused to load pickle: it references (posix|os)"
        ):
            load_templates(path)
        assert not marker.exists()
    # eval through builtins is refused too
    path.write_bytes(
        b"cbuiltins\neval\n(V__import__('os').system('touch " + str(marker).encode() + b"')\ntR."
    )
    with pytest.raises(DataError, match="builtins.eval"):
        load_pickle(path)
    assert not marker.exists()


def test_object_arrays_and_foreign_objects_are_refused(tmp_path):
    path = tmp_path / "t.pkl"
    path.write_bytes(pickle.dumps({"a": np.array([1, "x"], dtype=object)}, protocol=2))
    with pytest.raises(DataError, match="object"):
        load_pickle(path)
    import collections

    path.write_bytes(pickle.dumps(collections.OrderedDict(a=1)))
    with pytest.raises(DataError, match="collections.OrderedDict"):
        load_pickle(path)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_templates_round_trip_all_protocols(tmp_path, protocol):
    rng = np.random.default_rng(0)
    templates = {"S1": rng.standard_normal((7, 3)), "S2": rng.standard_normal(21).astype(np.float32)}
    path = tmp_path / "templates.pkl"
    path.write_bytes(pickle.dumps(templates, protocol=protocol))
    out = load_templates(path)
    assert set(out) == {"S1", "S2"}
    assert out["S1"].dtype == np.float32 and out["S1"].shape == (7, 3)
    np.testing.assert_allclose(out["S1"], templates["S1"], rtol=1e-6)
    np.testing.assert_array_equal(out["S2"], templates["S2"].reshape(7, 3))


def _python2_pickle(arr: np.ndarray) -> bytes:
    """A dict {'S': float32 array} as Python 2's cPickle (protocol 2) writes it: data as a byte STRING."""
    data = arr.tobytes()
    shape = b"".join(b"K" + bytes([d]) for d in arr.shape)
    return (
        b"\x80\x02}q\x00U\x01Sq\x01cnumpy.core.multiarray\n_reconstruct\nq\x02cnumpy\nndarray\nq\x03"
        b"K\x00\x85q\x04U\x01b\x87q\x05Rq\x06(K\x01" + shape + b"\x86cnumpy\ndtype\nU\x02f4K\x00K\x01\x87R"
        b"(K\x03U\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89T"
        + struct.pack("<I", len(data))
        + data
        + b"tbs."
    )


def test_python2_pickle_decoded_with_latin1(tmp_path):
    # bytes >= 0x80 in the array data only survive if the loader uses encoding='latin1'
    arr = np.array([[0.5, -1.0, 3.25e-3], [1e9, -2e-7, 7.0]], np.float32)
    assert max(arr.tobytes()) >= 0x80
    path = tmp_path / "py2.pkl"
    path.write_bytes(_python2_pickle(arr))
    np.testing.assert_array_equal(load_pickle(path)["S"], arr)
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(path.read_bytes())  # the default ASCII decoding fails on the same file


def test_templates_shape_errors(tmp_path):
    path = tmp_path / "templates.pkl"
    path.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(DataError, match="templates.pkl: expected a non-empty dict"):
        load_templates(path)
    path.write_bytes(pickle.dumps({"a": np.zeros((4, 3)), "b": np.zeros((5, 3))}))
    with pytest.raises(DataError, match="'b' has 5 vertices, others have 4"):
        load_templates(path)
    path.write_bytes(pickle.dumps({"a": np.full((4, 3), np.nan)}))
    with pytest.raises(DataError, match="NaN"):
        load_templates(path)
    with pytest.raises(DataError, match="missing"):
        load_templates(tmp_path / "nope.pkl")


def test_index_files_txt_and_npy(tmp_path):
    (tmp_path / "lve.txt").write_text("2, 6, 21,\n23")
    np.testing.assert_array_equal(load_index_file(tmp_path / "lve.txt", 30), [2, 6, 21, 23])
    np.save(tmp_path / "r.npy", np.array([1, 5], np.int32))
    assert load_index_file(tmp_path / "r.npy").dtype == np.int64
    with pytest.raises(DataError, match=r"lve.txt: vertex ids span 2..23; expected 0..9"):
        load_index_file(tmp_path / "lve.txt", 10)
    (tmp_path / "bad.txt").write_text("1, x")
    with pytest.raises(DataError, match="bad.txt: unreadable"):
        load_index_file(tmp_path / "bad.txt")


def test_real_biwi_region_files_parse():
    lve = load_index_file(str(DATA / "regions/BIWI_lve.txt"), 23370)
    fdd = load_index_file(str(DATA / "regions/BIWI_fdd.txt"), 23370)
    assert (len(lve), lve.min(), lve.max()) == (4996, 2, 23339)
    assert (len(fdd), fdd.min(), fdd.max()) == (7784, 7, 23368)
    assert not set(lve.tolist()) & set(fdd.tolist())


def test_ply_faces_ascii_and_binary(tmp_path):
    verts = np.zeros((5, 3), np.float32)
    faces = [[0, 1, 2], [1, 2, 3, 4]]  # a triangle and a quad
    head = (
        "ply\nformat {fmt} 1.0\nelement vertex 5\nproperty float x\nproperty float y\nproperty float z\n"
        "element face 2\nproperty list uchar int vertex_indices\nend_header\n"
    )
    ascii_body = "".join("0 0 0\n" for _ in range(5)) + "3 0 1 2\n4 1 2 3 4\n"
    (tmp_path / "a.ply").write_text(head.format(fmt="ascii") + ascii_body)
    binary = verts.tobytes() + b"".join(
        struct.pack("<B", len(f)) + struct.pack(f"<{len(f)}i", *f) for f in faces
    )
    (tmp_path / "b.ply").write_bytes(head.format(fmt="binary_little_endian").encode() + binary)
    expected = [[0, 1, 2], [1, 2, 3], [1, 3, 4]]
    np.testing.assert_array_equal(read_ply_faces(tmp_path / "a.ply"), expected)
    np.testing.assert_array_equal(read_ply_faces(tmp_path / "b.ply"), expected)
    (tmp_path / "c.ply").write_text("solid not a ply")
    with pytest.raises(DataError, match="c.ply: not a PLY"):
        read_ply_faces(tmp_path / "c.ply")
