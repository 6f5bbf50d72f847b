"""`bench data make | prepare | check` through the real Typer app."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from datasets_fakes import make_release, make_synthlike
from typer.testing import CliRunner

from talkbench.cli import app, main
from talkbench.errors import ConfigError

runner = CliRunner()


def test_check_ok_and_failing(tmp_path):
    root = make_synthlike(tmp_path / "d")
    res = runner.invoke(app, ["data", "check", str(root)])
    assert res.exit_code == 0, res.output
    assert "clips: 20" in res.output and "vertices: 30" in res.output
    np.save(root / "vertices_npy" / "Fake_S01_sentence01.npy", np.zeros((4, 3), np.float32))
    (root / "wav" / "Fake_S02_sentence01.wav").write_bytes(b"junk")
    res = runner.invoke(app, ["data", "check", str(root)])
    assert res.exit_code == 1
    assert "2 problem(s)" in res.output
    assert "Fake_S01_sentence01.npy" in res.output and "Fake_S02_sentence01.wav" in res.output


def test_prepare_vocaset(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    make_release(raw)
    (tmp_path / "regions").mkdir()
    np.save(tmp_path / "regions" / "lips.npy", np.arange(50))
    np.save(tmp_path / "regions" / "upper_face.npy", np.arange(60, 99))
    res = runner.invoke(
        app,
        [
            "data",
            "prepare",
            "vocaset",
            "--raw",
            str(raw),
            "--out",
            str(out),
            "--regions",
            str(tmp_path / "regions"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "wrote 5 sequences" in res.output and "skipped 1" in res.output
    assert sorted(p.name for p in (out / "regions").iterdir()) == ["lips.npy", "upper_face.npy"]
    res = runner.invoke(app, ["data", "check", str(out)])
    assert "(vocaset)" in res.output and "clips: 5" in res.output
    # the fake release has no validation speaker: the protocol's val split is empty, and check says so
    assert res.exit_code == 1 and "1 problem(s)" in res.output and "split 'val' has no clips" in res.output


def test_unknown_dataset_is_a_config_error(tmp_path):
    res = runner.invoke(app, ["data", "prepare", "biwi", "--raw", str(tmp_path), "--out", str(tmp_path)])
    assert isinstance(res.exception, ConfigError) and "CodeTalker's preprocessing" in str(res.exception)
    res = runner.invoke(app, ["data", "make", "vocaset", "--preset", "tiny"])
    assert isinstance(res.exception, ConfigError)


def test_bad_input_prints_one_line_error(tmp_path, monkeypatch, capsys):
    # through the console entry point: a TalkbenchError becomes one line on stderr and exit code 2
    argv = [
        "bench",
        "data",
        "prepare",
        "vocaset",
        "--raw",
        str(tmp_path / "nope"),
        "--out",
        str(tmp_path / "o"),
    ]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "not a VOCASET release" in lines[0]


def test_make_synthtalk_tiny(tmp_path):
    pytest.importorskip("talkbench.datasets.synthtalk")
    out = tmp_path / "st"
    res = runner.invoke(
        app, ["data", "make", "synthtalk", "--preset", "tiny", "--seed", "3", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert (out / "synthtalk.json").is_file() and str(out) in res.output
    res = runner.invoke(app, ["data", "check", str(out)])
    assert res.exit_code == 0 and "(synthtalk)" in res.output, res.output


def test_make_synthtalk_without_out_uses_the_cache(tmp_path, monkeypatch):
    pytest.importorskip("talkbench.datasets.synthtalk")
    monkeypatch.setenv("TALKBENCH_HOME", str(tmp_path))
    res = runner.invoke(app, ["data", "make", "synthtalk", "--preset", "tiny"])
    assert res.exit_code == 0, res.output
    made = [p.parent for p in tmp_path.rglob("synthtalk.json")]
    assert len(made) == 1 and str(made[0]) in res.output
