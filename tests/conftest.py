"""Shared test settings (builders shared by several files are in helpers.py)."""

import pytest
import torch

from transformer.data import CHECKSUMS
from transformer.data import fetch as fetch_module


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Tests use tiny models, which run fastest on one thread; on a machine whose cores are
    busy, two torch threads waiting on each other made them up to 100 times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def wmt14_mirror(tmp_path, monkeypatch):
    """A mirror folder for miniature WMT14 archives (TRANSFORMER_DATA_MIRROR points at it);
    tests pin their checksums in the registry, restored afterwards."""
    mirror = tmp_path / "mirror"
    monkeypatch.setenv("TRANSFORMER_DATA_MIRROR", str(mirror))
    monkeypatch.setitem(CHECKSUMS, "wmt14", dict(CHECKSUMS["wmt14"]))
    monkeypatch.setattr(fetch_module, "TIMEOUT_S", 5)
    return mirror
