"""pytest fixtures of the conformance kit: ``pytest_plugins = ["talkbench.testing.fixtures"]``.

- ``synthtalk_tiny_data``: SynthTalk tiny, generated once per session into a temporary home (never
  the user's cache or tracking store),
- ``conformance``: ``conformance(MyMethod, preset="tiny", checks=None)`` runs :func:`check_method` on
  that data.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def talkbench_home(tmp_path_factory):
    """TALKBENCH_HOME and the MLflow store in a temporary folder for the session (unless already set
    by the project's own conftest)."""
    home = tmp_path_factory.mktemp("talkbench_home")
    old = {k: os.environ.get(k) for k in ("TALKBENCH_HOME", "MLFLOW_TRACKING_URI")}
    os.environ.setdefault("TALKBENCH_HOME", str(home))
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{home}/mlflow.db")
    yield home
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def synthtalk_tiny_data(talkbench_home):
    """The prepared SynthTalk tiny dataset (seed 0), shared by every check of the session."""
    from talkbench.datasets import load_dataset

    return load_dataset("synthtalk", preset="tiny")


@pytest.fixture
def conformance(synthtalk_tiny_data):
    """``conformance(method, preset="tiny", checks=None, overrides=(), atol=..., rtol=...)``: runs
    :func:`talkbench.testing.check_method` on the session's SynthTalk tiny; the names of the checks run."""
    from talkbench.testing import check_method

    def run(method, preset: str = "tiny", checks=None, overrides=(), **tolerances):
        return check_method(method, preset, checks, synthtalk_tiny_data, overrides, **tolerances)

    return run
