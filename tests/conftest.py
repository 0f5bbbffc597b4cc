"""Shared test settings (builders shared by several files are in helpers.py)."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Tests use tiny models, which run fastest on one thread; on a machine whose cores are
    busy, two torch threads waiting on each other made them up to 100 times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

