"""Dataset options from the command line reach the dataset's loader (issue 12: BIWI preprocessing)."""

from __future__ import annotations

import _mlflow_store
import numpy as np
import pytest
from datasets_fakes import write_clip, write_templates
from typer.testing import CliRunner

from talkbench.cli import app
from talkbench.datasets import DATASETS, biwi

_migrated_db = _mlflow_store._migrated_db
store_uri = _mlflow_store.store_uri


@pytest.fixture(scope="module")
def biwi_facexhubert(tmp_path_factory):
    """A tiny BIWI root numbered the FaceXHuBERT way (emotional takes e41..e80): under the default
    'codetalker' convention (e01..e40) none of its clips falls in a split."""
    root = tmp_path_factory.mktemp("biwi") / "BIWI"
    rng = np.random.default_rng(0)
    templates = {s: rng.standard_normal((biwi.N_VERTICES, 3)).astype(np.float32) * 0.2 for s in ("F2", "F1")}
    write_templates(root, templates)
    for s in templates:
        for e in (41, 73, 77):
            write_clip(root, f"{s}_e{e:02d}", templates[s], 0.2, capture_fps=25, sample_rate=16000, seed=e)
    return root


@pytest.fixture
def loader_calls(monkeypatch):
    """Records each call of the BIWI loader (the real one does the work)."""
    calls = []

    def spy(root=None, preprocessing="codetalker", audio_cache_mb=512):
        ds = biwi.load_biwi(root=root, preprocessing=preprocessing, audio_cache_mb=audio_cache_mb)
        calls.append(({"preprocessing": preprocessing}, ds))
        return ds

    monkeypatch.setitem(DATASETS._items, "biwi", spy)
    return calls


def _run(root, uri, *extra):
    args = ["run", "--method", "template", "--dataset", "biwi", "--data-root", str(root)]
    args += ["--tracking-uri", uri, "--no-progress", "--no-leaderboard", *extra]
    return CliRunner().invoke(app, args)


def test_bench_run_passes_biwi_preprocessing_to_the_loader(biwi_facexhubert, store_uri, loader_calls):
    _run(biwi_facexhubert, store_uri, "--set", "dataset.options.preprocessing=facexhubert")
    assert loader_calls, "the BIWI loader was never called"
    options, ds = loader_calls[0]
    assert options == {"preprocessing": "facexhubert"}
    assert ds.spec.meta["preprocessing"] == "facexhubert"
    assert ds.split_stems("train") == ["F2_e41"] and ds.split_stems("test_a") == ["F2_e77"]


def test_a_bad_biwi_preprocessing_is_the_loaders_error(biwi_facexhubert, store_uri, loader_calls):
    out = _run(biwi_facexhubert, store_uri, "--set", "dataset.options.preprocessing=voca")
    assert out.exit_code == 2, out.output
    assert "unknown BIWI preprocessing 'voca'" in out.stderr and "facexhubert" in out.stderr
    assert loader_calls == []  # refused by the loader before it returned a dataset
    out = _run(biwi_facexhubert, store_uri, "--set", "dataset.options.preprocesing=facexhubert")
    assert out.exit_code == 2 and "Did you mean: dataset.options.preprocessing?" in out.stderr, out.output
