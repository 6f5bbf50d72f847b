"""Issue 17 point 4: bad sizes, seeds and data are one `error:` line at config/validation time, before
any MLflow run exists (no traceback, exit 2); BIWI evaluates on its published test split (eval.split)."""

from __future__ import annotations

import shutil

import _mlflow_store
import numpy as np
import pytest
from datasets_fakes import write_clip, write_templates
from typer.testing import CliRunner

from talkbench import tracking
from talkbench.cli import app
from talkbench.config import load_config
from talkbench.datasets import biwi
from talkbench.errors import ConfigError

_migrated_db = _mlflow_store._migrated_db
store_uri = _mlflow_store.store_uri


def bench(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _one_error_line(out, *expected: str) -> str:
    assert out.exit_code == 2, out.output
    assert "Traceback" not in out.output, out.output
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def _no_runs(uri: str, experiment: str) -> None:
    assert tracking.Tracker(uri).search_runs(experiment, finished_only=False).empty


def _tiny_run(root, uri, *extra):
    return bench(
        "run", "--method", "memorytalker", "--preset", "tiny", "--data-root", root,
        "--tracking-uri", uri, "--no-progress", "--no-leaderboard", *extra,
    )  # fmt: skip


# -- seeds ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", ["-1", "1e20", "4294967296", "abc"])
def test_a_bad_seed_is_a_config_error_before_anything_runs(seed, store_uri, synthtalk_tiny):
    line = _one_error_line(_tiny_run(synthtalk_tiny, store_uri, "--seed", seed), "--seed", "'seed'")
    assert "4294967295" in line or "integer" in line
    _no_runs(store_uri, "synthtalk")


def test_seed_bounds_in_config_files_and_the_api():
    with pytest.raises(ConfigError, match=r"--set seed=-3.*'seed'.*greater than or equal to 0"):
        load_config("template", overrides=["seed=-3"])
    assert load_config("template", seed=2**32 - 1).seed == 2**32 - 1
    with pytest.raises(ConfigError, match="less than or equal to 4294967295"):
        load_config("template", seed=2**32)


def test_negative_n_boot_is_refused_at_config_time(store_uri, synthtalk_tiny):
    out = _tiny_run(synthtalk_tiny, store_uri, "--set", "eval.n_boot=-5")
    _one_error_line(out, "eval.n_boot", "greater than or equal to 0")
    _no_runs(store_uri, "synthtalk")


# -- sizes against memory ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "override, key",
    [
        ("memorytalker.memory_slots=1e11", "memorytalker.memory_slots=100000000000"),
        ("memorytalker.memory_slots=1.0e+11", "memorytalker.memory_slots=100000000000"),
        ("memorytalker.feature_dim=1e8", "memorytalker.feature_dim=100000000"),
    ],
)
def test_a_model_too_big_for_memory_is_refused_before_a_run(override, key, store_uri, synthtalk_tiny):
    out = _tiny_run(synthtalk_tiny, store_uri, "--set", override)
    line = _one_error_line(out, key, "parameters", "this machine has", "GB")
    assert "memory" in line
    _no_runs(store_uri, "synthtalk")


def test_integer_fields_take_integral_floats_and_refuse_fractions():
    cfg = load_config("memorytalker", preset="tiny", overrides=["memorytalker.memory_slots=2e1"])
    assert cfg.method_config.memory_slots == 20 and type(cfg.method_config.memory_slots) is int
    with pytest.raises(ConfigError, match=r"'memorytalker.memory_slots' expects int, got '2\.55e1'"):
        load_config("memorytalker", preset="tiny", overrides=["memorytalker.memory_slots=2.55e1"])
    with pytest.raises(ConfigError, match="memorytalker.memory_slots"):
        load_config("memorytalker", preset="tiny", overrides=["memorytalker.memory_slots=1e400"])


def test_the_estimate_counts_the_real_parameters(synthtalk_tiny):
    """The meta-device count equals the parameters of the model actually built."""
    from talkbench import memory_budget
    from talkbench.datasets import load_dataset
    from talkbench.pipeline import build_method

    cfg = load_config("memorytalker", preset="tiny")
    spec = load_dataset("synthtalk", root=synthtalk_tiny).spec
    est = memory_budget.estimate(cfg, spec)
    real = build_method(cfg, spec)
    assert est.parameters == sum(p.numel() for p in real.parameters())
    assert est.training_bytes > est.parameters * 4 > 0


def test_too_many_bootstrap_resamples_are_refused_before_a_run(store_uri, synthtalk_tiny):
    out = _tiny_run(synthtalk_tiny, store_uri, "--set", "eval.n_boot=1000000000000")
    _one_error_line(out, "eval.n_boot 1000000000000", "GiB", "use at most")
    _no_runs(store_uri, "synthtalk")


# -- datasets ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def biwi_root(tmp_path_factory):
    """A tiny BIWI root in CodeTalker numbering: F2 (a training speaker: train, val, Test-A) and F1
    (a Test-B speaker)."""
    root = tmp_path_factory.mktemp("biwi") / "BIWI"
    rng = np.random.default_rng(0)
    templates = {s: rng.standard_normal((biwi.N_VERTICES, 3)).astype(np.float32) * 0.2 for s in ("F2", "F1")}
    write_templates(root, templates)
    for s, sentences in (("F2", (1, 2, 33, 37, 38)), ("F1", (37,))):
        for e in sentences:
            write_clip(root, f"{s}_e{e:02d}", templates[s], 0.2, capture_fps=25, sample_rate=16000, seed=e)
    return root


def _biwi_run(root, uri, *extra):
    return bench(
        "run", "--method", "template", "--dataset", "biwi", "--data-root", root,
        "--tracking-uri", uri, "--no-progress", "--no-leaderboard", *extra,
    )  # fmt: skip


def test_a_dangling_wav_symlink_is_one_error_naming_it(biwi_root, tmp_path, store_uri):
    root = tmp_path / "BIWI"
    shutil.copytree(biwi_root, root)
    (root / "wav" / "F2_e02.wav").unlink()
    (root / "wav" / "F2_e02.wav").symlink_to(tmp_path / "gone.wav")
    _one_error_line(_biwi_run(root, store_uri), str(root / "wav" / "F2_e02.wav"), "symbolic link")
    _no_runs(store_uri, "biwi")


def test_biwi_evaluates_on_test_a_by_default(biwi_root, store_uri):
    out = _biwi_run(biwi_root, store_uri)
    assert out.exit_code == 0, out.output
    runs = tracking.Tracker(store_uri).search_runs("biwi")
    assert len(runs) == 1 and list(runs["params.eval.split"]) == ["None"]  # None: the dataset's default
    assert ": 2 predictions," in out.output  # Test-A: F2_e37, F2_e38 (Test-B has F1_e37 only)


def test_eval_split_picks_another_split(biwi_root, store_uri):
    out = _biwi_run(biwi_root, store_uri, "--set", "eval.split=test_b")
    assert out.exit_code == 0, out.output
    runs = tracking.Tracker(store_uri).search_runs("biwi")
    assert list(runs["params.eval.split"]) == ["test_b"] and ": 1 predictions," in out.output


def test_an_unknown_eval_split_lists_the_available_ones(biwi_root, store_uri):
    out = _biwi_run(biwi_root, store_uri, "--set", "eval.split=test")
    _one_error_line(out, "eval.split", "'test'", "train, val, test_a, test_b")
    _no_runs(store_uri, "biwi")


def test_an_empty_evaluation_split_is_refused_before_a_run(biwi_root, tmp_path, store_uri):
    root = tmp_path / "BIWI"
    shutil.copytree(biwi_root, root)
    for stem in ("F2_e37", "F2_e38"):  # Test-A, the default evaluation split, left empty
        (root / "wav" / f"{stem}.wav").unlink()
    _one_error_line(_biwi_run(root, store_uri), "evaluation split 'test_a' has no clips", "test_b")
    _no_runs(store_uri, "biwi")
