"""Set the slide structure of the notebooks in their cells' metadata, without executing them.

    python docs/book/mark_slides.py [--check] [NOTEBOOK.py ...]   (default: notebooks/NN_*.py)

Writes ``slideshow: {slide_type: ...}`` into every cell of each ``NN_name.py`` (jupytext keeps
it on the cell marker: ``# %% [markdown] slideshow={"slide_type": "slide"}``) and of its
paired ``NN_name.ipynb``, whose outputs, ids and other metadata are kept as they are. The rule:

- a cell opening with a ``#`` or ``##`` heading starts a slide, with ``###`` or deeper a
  sub-slide;
- inside a section, a cell that would take the slide past SLIDE_LINES (lines of text, code,
  and about FIGURE_LINES for a figure) starts a sub-slide below it, and so does a figure that
  follows other content: figures get the screen to themselves;
- every other cell continues the current slide (``-``).

Each file is marked from its own cells, so the two files agree whenever their cells do; the
.py is written last so that jupytext treats it as the newer of the pair (a later
``jupytext --sync`` or ``--to ipynb --update`` keeps the .ipynb's outputs and this metadata).
``--check`` changes nothing and exits 1 if a file would change.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parents[2]
HEADING = re.compile(r"^(#{1,6}) ")
SLIDE_LINES = 24
FIGURE_LINES = 14
FOLD_LINES = 8  # docs/book/slides.py folds longer code behind one line


def heading_level(cell) -> int:
    """1 for ``# Title``, 2 for ``## Section``...; 0 when the cell does not open with one."""
    if cell.cell_type != "markdown":
        return 0
    match = HEADING.match(cell.source.lstrip())
    return len(match.group(1)) if match else 0


def has_figure(cell) -> bool:
    return any(key in output.get("data", {}) for output in cell.get("outputs", [])
               for key in ("image/png", "image/svg+xml", "text/html"))


def height(cell) -> int:
    """Roughly how many lines of a slide a cell takes."""
    lines = len(cell.source.splitlines())
    if cell.cell_type != "code":
        return lines
    size = 1 if lines > FOLD_LINES else lines
    for output in cell.get("outputs", []):
        data = output.get("data", {})
        if any(key in data for key in ("image/png", "image/svg+xml", "text/html")):
            size += FIGURE_LINES
        else:
            size += min(len(str(output.get("text", data.get("text/plain", ""))).splitlines()),
                        SLIDE_LINES // 2)
    return size


def slide_types(cells) -> list[str]:
    types, used = [], 0
    for index, cell in enumerate(cells):
        level, size = heading_level(cell), height(cell)
        if index == 0 or level in (1, 2):
            kind = "slide"
        elif level >= 3:
            kind = "subslide"
        elif used and (used + size > SLIDE_LINES or has_figure(cell) and used > FIGURE_LINES // 2):
            kind = "subslide"
        else:
            kind = "-"
        used = size if kind != "-" else used + size
        types.append(kind)
    return types


def mark(notebook) -> bool:
    """Set each cell's slide type; True when something changed."""
    changed = False
    for cell, kind in zip(notebook.cells, slide_types(notebook.cells)):
        if cell.metadata.get("slideshow") != {"slide_type": kind}:
            cell.metadata["slideshow"] = {"slide_type": kind}
            changed = True
    return changed


def mark_pair(source: Path, check: bool = False) -> list[Path]:
    """Mark NN_name.py and its NN_name.ipynb; the files that changed (or would)."""
    paired = source.with_suffix(".ipynb")
    outputs = {}  # the .py has no outputs: borrow them from the .ipynb's identical cells
    changed = []
    if paired.exists():
        executed = nbformat.read(paired, as_version=4)
        outputs = {(c.cell_type, c.source): c.get("outputs", []) for c in executed.cells}
        if mark(executed):
            changed.append(paired)
            if not check:
                nbformat.write(executed, paired)
    text = jupytext.read(source)
    for cell in text.cells:
        if cell.cell_type == "code":
            cell.outputs = outputs.get((cell.cell_type, cell.source), [])
    if mark(text):
        changed.append(source)
        if not check:
            for cell in text.cells:
                if cell.cell_type == "code":
                    cell.outputs = []
            jupytext.write(text, source, fmt="py:percent")
    return changed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="*", type=Path,
                        default=sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")))
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if needed")
    args = parser.parse_args(argv)
    changed = [path for source in args.sources for path in mark_pair(source, args.check)]
    for path in changed:
        print(f"{'would mark' if args.check else 'marked'} {path}")
    if not changed:
        print("slide metadata up to date")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
