"""nbval under pytest-xdist (`make notebooks` runs two workers): each notebook's cells must run
in order on one kernel, and notebook 07 evaluates the run that notebook 06 trains, so those two
share a worker. With ``--dist loadgroup`` every item goes where its group goes."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_RUN = {"06_training", "07_results"}  # 07 reuses the run 06 trained


def pytest_collection_modifyitems(items):
    for item in items:
        stem = Path(str(item.fspath)).stem
        group = "06-07 training run" if stem in SHARED_RUN else stem
        item.add_marker(pytest.mark.xdist_group(group))
