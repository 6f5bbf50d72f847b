"""Shared fixtures. Every test runs with its own cache and tracking store, never the user's."""

from __future__ import annotations

import os

# one intra-op thread per test process: `pytest -n 2` on 2 cores, and tiny models, where a second
# thread costs more in synchronisation than it gains (20x slower attention on a loaded machine)
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
from _report_runs import report, store  # noqa: E402, F401 (fixtures: built once, read by several modules)

pytest_plugins = ["talkbench.testing.fixtures"]  # the conformance kit's: conformance, synthtalk_tiny_data


@pytest.fixture(autouse=True, scope="session")
def _isolated_homes(talkbench_home):
    """Every test session in the kit's temporary home (talkbench.testing.fixtures)."""
    yield talkbench_home


@pytest.fixture(scope="session")
def synthtalk_tiny(tmp_path_factory):
    """Path to a SynthTalk ``tiny`` dataset (seed 0, default coupling), generated once per test session."""
    from talkbench.datasets.synthtalk import generate

    return generate(tmp_path_factory.mktemp("synthtalk") / "tiny", preset="tiny", seed=0)
