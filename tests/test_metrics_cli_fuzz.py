"""A fuzz of `bench eval --pred` (issue 17): random names, shapes, dtypes, values and truncated
files never give a traceback (exit 0 or 2 only); a length more than one frame off its clip is
listed, and one shorter than half its clip is an error unless --allow-short."""

from __future__ import annotations

import io
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from talkbench.cli import app

runner = CliRunner()
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def tiny(synthtalk_tiny):
    from talkbench.datasets import load_dataset

    ds = load_dataset("synthtalk", root=synthtalk_tiny)
    test = list(ds.split("test"))
    return synthtalk_tiny, ds.spec, {c.name: c for c in test}


class File(tuple):
    """(file name, file bytes, frames or None when the file is not a well-formed float array)."""

    def __repr__(self) -> str:  # hypothesis prints failing examples: not 40 kB of bytes
        name, data, n = self
        return f"File({name!r}, {len(data)} bytes {data[:64]!r}..., frames={n})"


@st.composite
def prediction(draw, spec, clips):
    """A File: a name as a prediction might have and content that is or is not a usable array."""
    names = sorted(clips)
    kind = draw(st.sampled_from(["good", "good", "good", "array", "array", "empty", "random", "truncated"]))
    good = kind == "good"  # a scorable file but for its length: reaches evaluate() and the printing
    clip = draw(
        st.sampled_from(names) if good else st.sampled_from(names) | st.text("abcS_0123-.", min_size=1)
    )
    condition = (
        None
        if good
        else draw(
            st.none() | st.sampled_from(spec.train_subjects) | st.text("abcXYZ_019", min_size=1, max_size=8)
        )
    )
    name = clip + (f"_condition_{condition}" if condition else "") + ".npy"
    if kind == "empty":
        return File((name, b"", None))
    if kind == "random":
        return File((name, draw(st.binary(max_size=400)), None))
    gt = clips[clip].vertices if clip in clips else np.zeros((20, spec.n_vertices, 3), np.float32)
    want = len(gt)
    n = draw(st.sampled_from([want, want - 1, want + 1, want - 3, want + 3, 1, want // 2 - 1, want // 2 + 1]))
    n = draw(st.just(n) | st.integers(0 if not good else 1, 2 * want))
    frames = np.resize(gt, (n, *gt.shape[1:])) + draw(st.sampled_from([0.0, 1e-3, 1e3]))
    shapes = [(n, spec.n_vertices * 3), (n, spec.n_vertices, 3)]
    dtypes = ["<f4", ">f4", "<f8", "<f2"]
    if not good:
        shapes += [(n,), (n, spec.n_vertices), (n, 7, 3)]
        dtypes += ["<i4", "|u1", "|b1", "<c8"]
    arr = np.resize(frames, draw(st.sampled_from(shapes))).astype(draw(st.sampled_from(dtypes)))
    if not good and n and draw(st.booleans()) and arr.dtype.kind == "f":
        arr.reshape(-1)[draw(st.integers(0, arr.size - 1))] = draw(st.sampled_from([np.nan, np.inf]))
    buf = io.BytesIO()
    np.save(buf, arr)
    data = buf.getvalue()
    if kind == "truncated":
        return File((name, data[: draw(st.integers(0, len(data) - 1))], None))
    well_formed = arr.dtype.kind == "f" and arr.shape[1:] in ((spec.n_vertices * 3,), (spec.n_vertices, 3))
    well_formed = well_formed and n > 0 and bool(np.isfinite(arr).all()) and clip in clips
    well_formed = well_formed and condition in (None, *spec.train_subjects)
    return File((name, data, n if well_formed else None))


def _folder(files) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="fuzz-pred-"))
    for name, data, _ in files:
        (folder / name).write_bytes(data)
    return folder


@FUZZ
@given(data=st.data(), allow_short=st.booleans(), skip_invalid=st.booleans())
def test_bench_eval_never_gives_a_traceback(tiny, data, allow_short, skip_invalid):
    root, spec, clips = tiny
    files = data.draw(st.lists(prediction(spec, clips), min_size=1, max_size=4, unique_by=lambda f: f[0]))
    folder = _folder(files)
    try:
        args = ["eval", "--pred", str(folder), "--dataset", "synthtalk", "--data-root", str(root)]
        args += ["--n-boot", "5"] + ["--allow-short"] * allow_short + ["--skip-invalid"] * skip_invalid
        res = runner.invoke(app, args)
    finally:
        shutil.rmtree(folder)
    assert res.exit_code in (0, 2), (res.exit_code, res.output, res.exception)
    event(f"exit {res.exit_code}")
    assert "Traceback" not in res.output and "Aborted" not in res.output
    if res.exit_code == 2:
        assert len([line for line in res.output.splitlines() if line.startswith("error:")]) == 1
    for name, _, n in files:
        clip = name.split("_condition_")[0].removesuffix(".npy")
        if n is None or clip not in clips:
            continue
        want = clips[clip].n_frames
        if abs(n - want) > 1:  # listed, whatever else happens to the other files
            assert f"{name}: " in res.output and f"has {n} frames" in res.output, res.output
        if n < want / 2 and not allow_short:
            assert (res.exit_code == 2 or skip_invalid) and "less than half" in res.output
