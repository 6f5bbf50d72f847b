"""`check_dataset`: a summary for a sound directory, EVERY problem for a broken one."""

from __future__ import annotations

import numpy as np
import soundfile as sf
from datasets_fakes import make_synthlike, make_vocaset_like

from talkbench.datasets.check import check_dataset


def test_sound_directory_gets_a_summary(tmp_path):
    root = make_synthlike(tmp_path / "ok")
    result = check_dataset(root)
    assert result.ok, result.problems
    assert result.kind == "synthtalk"
    s = result.summary
    assert s["clips"] == 20 and s["vertices"] == 30 and s["subjects"].startswith("5 ")
    assert s["fps"].startswith("30 (captured at 60")
    assert s["split train"].startswith("12 clips") and s["split val"].startswith("3 clips")
    assert "lips (10)" in s["regions"] and "upper_face (10)" in s["regions"]
    assert "total" in s["durations"] and "16000 Hz x20" == s["audio rates"]
    text = result.format()
    assert "clips: 20" in text and "problem" not in text
    assert result.summary["clips"] == 20


def test_every_problem_is_listed(tmp_path):
    root = make_synthlike(tmp_path / "bad")
    arr = np.load(root / "vertices_npy" / "Fake_S01_sentence01.npy")
    arr[1, 0] = np.nan  # an odd frame: dropped by [::2] when loading, still reported by check
    np.save(root / "vertices_npy" / "Fake_S01_sentence01.npy", arr)
    np.save(root / "vertices_npy" / "Fake_S02_sentence02.npy", np.zeros((10, 12), np.float32))
    (root / "wav" / "Fake_S03_sentence03.wav").write_bytes(b"junk")
    sf.write(root / "wav" / "Fake_S04_sentence04.wav", np.zeros(0), 16000)
    sf.write(root / "wav" / "Fake_S05_sentence02.wav", np.zeros(100), 16000)
    np.save(root / "regions" / "jaw.npy", np.array([5, 99], np.int64))
    sf.write(root / "wav" / "Fake_S09_sentence01.wav", np.zeros(8000), 16000)
    np.save(root / "vertices_npy" / "Fake_S09_sentence01.npy", np.zeros((30, 90), np.float32))
    result = check_dataset(root)
    assert not result.ok
    expected = [
        "Fake_S01_sentence01.npy: vertices contain NaN or inf (1 frames, first at frame 1 at 60 fps)",
        "Fake_S02_sentence02.npy: shape (10, 12)",
        "Fake_S03_sentence03.wav: unreadable audio",
        "Fake_S04_sentence04.wav: empty audio",
        "Fake_S05_sentence02.wav: audio lasts 0.01 s",
        "jaw.npy: vertex ids span 5..99; expected 0..29",
        "Fake_S09_sentence01.npy: no template for subject 'Fake_S09'",
    ]
    text = result.format()
    for fragment in expected:
        assert sum(fragment in p for p in result.problems) == 1, (fragment, result.problems)
        assert fragment in text
    assert len(result.problems) == len(expected)
    assert f"{len(expected)} problem(s)" in text


def test_missing_layout_and_templates(tmp_path):
    result = check_dataset(tmp_path / "none")
    assert result.problems == [f"{tmp_path / 'none'}: no such directory"]
    (tmp_path / "d" / "wav").mkdir(parents=True)
    result = check_dataset(tmp_path / "d")
    assert len(result.problems) == 2
    assert "vertices_npy: missing directory" in result.problems[0]
    assert "templates.pkl: missing" in result.problems[1]


def test_vocaset_detected_with_notes(tmp_path):
    root = make_vocaset_like(tmp_path / "v", sentences=(21,))
    result = check_dataset(root)
    assert result.kind == "vocaset" and result.ok, result.problems
    assert result.summary["audio rates"] == "22000 Hz x12"
    assert any("resampled" in n for n in result.notes)
    assert result.summary["split train"].startswith("8 clips")
