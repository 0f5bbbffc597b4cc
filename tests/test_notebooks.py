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


@pytest.mark.parametrize("source", SOURCES, ids=ids)
def test_each_notebook_ends_with_exercises_in_markdown(source):
    """Prose belongs in markdown cells: an Exercises section written as comments inside a code
    cell shows as code, with no heading in the table of contents or the slides."""
    cells = _read(source).cells
    headings = [i for i, cell in enumerate(cells) if cell.cell_type == "markdown"
                and re.search(r"^## Exercises \| ", cell.source, re.M)]
    assert headings, f"{source.name}: no markdown cell with the heading '## Exercises | 练习'"
    in_code = [i for i, cell in enumerate(cells) if cell.cell_type == "code"
               and re.search(r"^# #+ ", cell.source, re.M)]
    assert not in_code, (f"{source.name}: code cells {in_code} hold a Markdown heading as a "
                         "comment; start a markdown cell with '# %% [markdown]'")


def _execute_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "execute_notebooks", NOTEBOOKS.parent / "tools" / "execute_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tidy_keeps_what_a_terminal_shows():
    import nbformat

    execute = _execute_module()
    assert execute.final_text("\r 10%\r 50%\r100%|done\n") == "100%|done\n"
    assert execute.final_text("a\r\nb\n") == "a\nb\n"
    cell = nbformat.v4.new_code_cell("train()")
    cell.outputs = [nbformat.v4.new_output("stream", name="stderr", text=t)
                    for t in ("\r  0%", "\r 50%", "\r100%")]
    cell.outputs.append(nbformat.v4.new_output("stream", name="stdout", text="val 3.2\n"))
    cell.outputs.append(nbformat.v4.new_output("stream", name="stderr", text="\r\n"))
    notebook = nbformat.v4.new_notebook(cells=[cell])
    assert execute.tidy_outputs(notebook) == 3
    assert [(o.name, o.text) for o in notebook.cells[0].outputs] == [
        ("stderr", "100%"), ("stdout", "val 3.2\n")]


@pytest.mark.parametrize("source", SOURCES, ids=ids)
def test_stored_outputs_are_tidy(source):
    """Progress bars are stored as a terminal finally shows them (tools/execute_notebooks.py)."""
    _, ipynb = _paired(source)
    redrawn = [i for i, cell in enumerate(ipynb.cells) if cell.cell_type == "code"
               for o in cell.get("outputs", [])
               if o.output_type == "stream" and re.search(r"\r(?!\n)", o.text)]
    assert not redrawn, (f"{source.name}: cells {sorted(set(redrawn))} store every redraw of a "
                         f"progress bar; run `python tools/execute_notebooks.py --tidy-only "
                         f"notebooks/{ipynb_name(source)}`")


def ipynb_name(source: Path) -> str:
    return source.with_suffix(".ipynb").name
