"""tools/suite_order.py: the order in which make test hands files and notebooks to its workers,
and the per-part times it prints."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("suite_order", ROOT / "tools/suite_order.py")
suite_order = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(suite_order)


def test_notebook_06_first_then_unit_tests_then_07_then_the_rest():
    ids = ["notebooks/01_background.ipynb::Cell 0", "tests/test_bleu.py::test_a",
           "tests/test_viz.py::test_d", "notebooks/07_results.ipynb::Cell 0",
           "notebooks/06_training.ipynb::Cell 0", "tests/test_attention.py::test_b",
           "notebooks/06_training.ipynb::Cell 1", "notebooks/08_common_misreadings.ipynb::Cell 0",
           "bench/other.py::test_c"]
    items = [SimpleNamespace(nodeid=i) for i in ids]
    suite_order.pytest_collection_modifyitems(items)
    assert [i.nodeid for i in items] == [
        "notebooks/06_training.ipynb::Cell 0", "notebooks/06_training.ipynb::Cell 1",
        "tests/test_bleu.py::test_a", "tests/test_attention.py::test_b",  # file order kept
        "notebooks/07_results.ipynb::Cell 0",
        "tests/test_viz.py::test_d",  # from LATER_TESTS on: after 07
        "notebooks/01_background.ipynb::Cell 0", "notebooks/08_common_misreadings.ipynb::Cell 0",
        "bench/other.py::test_c"]


def test_the_ordered_notebooks_exist():
    for prefix in suite_order.ORDER:
        assert (ROOT / prefix).exists(), f"{prefix} in tools/suite_order.py no longer exists"


def test_the_twins_cell_has_two_cells_after_it():
    """xdist gives a worker its next file when two tests of its current one are left: with two
    cells after the twin's, the worker that trains it takes nothing else before it is done."""
    cells = [c for c in json.loads((ROOT / "notebooks/06_training.ipynb").read_text())["cells"]
             if c["cell_type"] == "code"]
    twin = [i for i, c in enumerate(cells)
            if 'notebook_run(model={"label_smoothing": 0.0})' in "".join(c["source"])]
    assert len(twin) == 1 and len(cells) - twin[0] - 1 >= 2


def test_make_test_uses_the_order():
    recipe = (ROOT / "Makefile").read_text().split("\ntest:")[1].split("\n\n")[0]
    for flag in ("-p tools.suite_order", "--dist loadscope", "--no-loadscope-reorder"):
        assert flag in recipe
    assert re.search(r"\btests notebooks\b", recipe)


def test_the_summary_adds_up_each_parts_durations():
    def report(nodeid, when, duration):
        return SimpleNamespace(nodeid=nodeid, when=when, duration=duration)

    lines = []
    reporter = SimpleNamespace(
        stats={"passed": [report("tests/test_a.py::t", "setup", 0.5),
                          report("tests/test_a.py::t", "call", 2.0),
                          report("tests/test_b.py::u", "call", 1.0),
                          report("notebooks/06_training.ipynb::Cell 3", "call", 100.0)],
               "warnings": [SimpleNamespace(message="not a report")]},
        section=lambda title: lines.append(f"== {title}"), write_line=lines.append)
    suite_order.pytest_terminal_summary(reporter)
    assert lines[1:] == ["  100.0 s  notebook 06_training (1 tests)",
                         "    3.5 s  tests/ (2 tests)"]
