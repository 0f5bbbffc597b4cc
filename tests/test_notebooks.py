"""The teaching notebooks: each ``notebooks/NN_*.py`` (jupytext percent format) must have an
executed ``.ipynb`` twin with the same cells, and every heading must carry its Chinese term."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import jupytext
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SOURCES = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))
CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
HEADING = re.compile(r"^(#{1,2}) (.*)$")  # "# Title | 标题" and "## Section | 小节"
ids = [p.name for p in SOURCES]


@cache
def _read(path: Path):
    return jupytext.read(path)


def _paired(source: Path):
    paired = source.with_suffix(".ipynb")
    if not paired.exists():
        pytest.skip(f"{paired.name} missing (reported by test_paired_notebook_exists)")
    return _read(source), _read(paired)


def _cells(notebook):
    return [(cell.cell_type, cell.source.strip()) for cell in notebook.cells]


def test_there_are_notebooks():
    assert SOURCES, f"no notebooks found in {NOTEBOOKS}"


@pytest.mark.parametrize("source", SOURCES, ids=ids)
def test_paired_notebook_exists(source):
    paired = source.with_suffix(".ipynb")
    assert paired.exists(), f"{paired.name} is missing: run `make sync`"


@pytest.mark.parametrize("source", SOURCES, ids=ids)
def test_cells_match(source):
    py, ipynb = _paired(source)
    assert _cells(py) == _cells(ipynb), (
        f"{source.name} and its .ipynb differ: run "
        f"`cd notebooks && ../.venv/bin/python -m jupytext --sync --execute {source.name}`")


@pytest.mark.parametrize("source", SOURCES, ids=ids)
def test_paired_and_kernel(source):
    _, ipynb = _paired(source)
    assert ipynb.metadata.get("jupytext", {}).get("formats") == "ipynb,py:percent"
    assert ipynb.metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.mark.parametrize("source", SOURCES, ids=ids)
def test_executed(source):
    _, ipynb = _paired(source)
    code = [cell for cell in ipynb.cells if cell.cell_type == "code"]
    unexecuted = [i for i, cell in enumerate(code) if cell.get("execution_count") is None]
    assert not unexecuted, f"{source.name}: code cells {unexecuted} have no stored outputs"


@pytest.mark.parametrize("source", SOURCES, ids=ids)
def test_headings_carry_chinese_terms(source):
    bad = []
    for cell in _read(source).cells:
        if cell.cell_type != "markdown":
            continue
        for line in cell.source.splitlines():
            match = HEADING.match(line)
            if match and not (" | " in match.group(2)
                              and CJK.search(match.group(2).rsplit(" | ", 1)[1])):
                bad.append(line)
    assert not bad, f"{source.name}: headings without ' | <中文术语>': {bad}"
