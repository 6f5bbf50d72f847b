"""Shared benchmark fixtures."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """One intra-op thread: the figure that holds on a shared 2-core CPU."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
