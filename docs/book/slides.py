"""Build the notebooks' slide decks: ``make slides`` writes build/slides/NN_name.slides.html.

Each notebook becomes a reveal.js deck through nbconvert's slides exporter, from its stored
outputs (nothing is executed), with the template in slides_template/: reveal.js and MathJax
are copied beside the decks (build/slides/_static/), so a deck works offline from its folder.
The slide structure is the cells' ``slideshow`` metadata, set by mark_slides.py: a slide per
section heading, sub-slides where a section is long, speaker notes for long prose. Code longer
than FOLD_LINES lines is folded behind a summary line. A Markdown cell longer than PROSE_LINES
keeps its first paragraphs on the slide and the rest goes to the speaker notes (press S).

    python docs/book/slides.py [--notebooks DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import copy
import html
import re
import shutil
import sys
import time
from pathlib import Path

import jupyter_server_mathjax
import nbformat
import sphinx_revealjs
from nbconvert import SlidesExporter

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
FOLD_LINES = 8
PROSE_LINES = 12
HEADING = re.compile(r"#{1,6} ")
NOTEBOOK_LINK = re.compile(r'href="([0-9]{2}_\w+)\.ipynb(#[^"]*)?"')
REVEAL = Path(sphinx_revealjs.__file__).parent / "_static" / "revealjs"  # reveal.js 5, MIT
MATHJAX = Path(jupyter_server_mathjax.__file__).parent / "static"  # MathJax 2.7, Apache-2.0


def exporter() -> SlidesExporter:
    slides = SlidesExporter(template_file="index.html.j2",
                            extra_template_basedirs=[str(HERE)],
                            template_name="slides_template")
    slides.reveal_url_prefix = "_static/reveal.js"
    slides.reveal_theme = "white"
    slides.reveal_transition = "none"
    slides.exclude_input_prompt = True
    slides.exclude_output_prompt = True
    return slides


def lead_ins(blocks: list[str]) -> list[str]:
    """Join a one-line lead-in (``**What you will learn**``, ``...:``) to the block after it."""
    joined = []
    for block in blocks:
        if joined and re.fullmatch(r"\*\*[^\n]*\*\*|[^\n]*:", joined[-1].strip()):
            joined[-1] += "\n\n" + block
        else:
            joined.append(block)
    return joined


def split_prose(notebook):
    """A copy of the notebook where each Markdown cell longer than PROSE_LINES keeps the
    paragraphs that fit on its slide and hands the rest to a speaker-notes cell after it."""
    notebook = copy.deepcopy(notebook)
    cells = []
    for cell in notebook.cells:
        cells.append(cell)
        if cell.cell_type != "markdown" or len(cell.source.splitlines()) <= PROSE_LINES:
            continue
        blocks, kept = lead_ins(re.split(r"\n\s*\n", cell.source)), 0
        for count, block in enumerate(blocks, 1):
            first_text = count == 2 and HEADING.match(blocks[0])
            if count > 1 and not first_text and kept + len(block.splitlines()) > PROSE_LINES:
                break
            kept += len(block.splitlines()) + 1
        else:
            continue
        cell.source = "\n\n".join(blocks[:count - 1])
        notes = nbformat.v4.new_markdown_cell("\n\n".join(blocks[count - 1:]))
        notes.metadata["slideshow"] = {"slide_type": "notes"}
        cells.append(notes)
    notebook.cells = cells
    return notebook


def build(notebooks: Path, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    static = out / "_static"
    shutil.copytree(REVEAL, static / "reveal.js", dirs_exist_ok=True)
    shutil.copytree(MATHJAX, static / "mathjax", dirs_exist_ok=True)
    slides, decks = exporter(), []
    for path in sorted(notebooks.glob("[0-9][0-9]_*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        body, _ = slides.from_notebook_node(split_prose(notebook), resources={
            "metadata": {"name": path.stem}, "static_prefix": "_static",
            "fold_lines": FOLD_LINES})
        body = NOTEBOOK_LINK.sub(r'href="\1.slides.html"', body)  # links between notebooks
        deck = out / f"{path.stem}.slides.html"
        deck.write_text(body, encoding="utf-8")
        decks.append(deck)
    names = [(d.name, html.escape(d.name.removesuffix(".slides.html"))) for d in decks]
    items = "\n".join(f'<li><a href="{href}">{name}</a></li>' for href, name in names)
    (out / "index.html").write_text(
        f'<!DOCTYPE html>\n<html lang="en"><meta charset="utf-8"><title>Slides | 幻灯片</title>\n'
        f"<h1>Slides | 幻灯片</h1>\n<ul>\n{items}\n</ul>\n</html>\n", encoding="utf-8")
    return decks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebooks", type=Path, default=ROOT / "notebooks")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "slides")
    args = parser.parse_args()
    start = time.time()
    decks = build(args.notebooks, args.out)
    print(f"slides: {len(decks)} decks in {args.out} ({time.time() - start:.0f} s)")
    return 0 if decks else 1


if __name__ == "__main__":
    sys.exit(main())
