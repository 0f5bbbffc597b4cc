"""The slide structure of the notebooks lives in their cells' metadata (``make slides`` reads
it): each ``#``/``##`` heading cell starts a slide and each deeper heading a sub-slide, every
slide type is one that reveal.js knows (a cell without one continues its slide), and the .py and
.ipynb of a pair agree.

These tests pass once the metadata has been written (and again after adding a heading) with

    .venv/bin/python docs/book/mark_slides.py

which edits notebooks/NN_*.py and .ipynb in place, without executing anything.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs" / "book"))
from mark_slides import mark_pair  # noqa: E402

NOTEBOOKS = ROOT / "notebooks"
SOURCES = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))
HEADING = re.compile(r"^(#{1,6}) ")
TYPES = {"slide", "subslide", "fragment", "-", "skip", "notes"}
FIX = "run `.venv/bin/python docs/book/mark_slides.py` to write the slide metadata"

pytestmark = pytest.mark.slide_metadata


def slide_type(cell):
    return cell.metadata.get("slideshow", {}).get("slide_type")


@pytest.mark.parametrize("source", SOURCES, ids=[p.name for p in SOURCES])
def test_headings_start_slides(source):
    bad = []
    for number, cell in enumerate(jupytext.read(source).cells):
        match = HEADING.match(cell.source.lstrip()) if cell.cell_type == "markdown" else None
        if slide_type(cell) not in TYPES | {None}:
            bad.append(f"cell {number}: slide_type {slide_type(cell)!r}")
        elif match:
            wanted = "slide" if len(match.group(1)) <= 2 else "subslide"
            if slide_type(cell) != wanted:
                bad.append(f"cell {number} ({cell.source.splitlines()[0]!r}): "
                           f"slide_type {slide_type(cell)!r}, wanted {wanted!r}")
    assert not bad, f"{source.name}: {FIX}\n" + "\n".join(bad)


@pytest.mark.parametrize("source", SOURCES, ids=[p.name for p in SOURCES])
def test_pair_agrees(source):
    paired = source.with_suffix(".ipynb")
    if not paired.exists():
        pytest.skip(f"{paired.name} missing (reported by test_notebooks.py)")
    text = [(c.cell_type, c.source, slide_type(c)) for c in jupytext.read(source).cells]
    executed = [(c.cell_type, c.source, slide_type(c)) for c in jupytext.read(paired).cells]
    assert [t[:2] for t in text] != [t[:2] for t in executed] or text == executed, (
        f"{source.name} and {paired.name} have different slide metadata: {FIX}")


@pytest.mark.parametrize("source", SOURCES, ids=[p.name for p in SOURCES])
def test_slide_breaks_fit_the_stored_outputs(source):
    """The breaks inside sections follow mark_slides.py's rule for the outputs stored now
    (tools/execute_notebooks.py re-marks after executing): no slide overflows the screen."""
    assert mark_pair(source, check=True) == [], f"{source.name}: {FIX}"
