"""pytest fixtures of the conformance kit: ``pytest_plugins = ["talkbench.testing.fixtures"]``.

- ``synthtalk_tiny_data``: SynthTalk tiny, generated once per session into a temporary home (never
  the user's cache or tracking store),
- ``conformance``: ``conformance(MyMethod, preset="tiny", checks=None)`` runs :func:`check_method` on
  that data.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def talkbench_home(tmp_path_factory):
    """TALKBENCH_HOME and the MLflow store in a temporary folder for the session, whatever the
    environment says (restored afterwards)."""
    home = tmp_path_factory.mktemp("talkbench_home")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TALKBENCH_HOME", str(home))
        env.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home}/mlflow.db")
        yield home


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
