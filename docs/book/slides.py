"""Build the notebooks' slide decks: ``make slides`` writes build/slides/NN_name.slides.html.

Each notebook becomes a reveal.js deck through nbconvert's slides exporter, from its stored
outputs (nothing is executed), with the template in slides_template/: reveal.js and MathJax
are copied beside the decks (build/slides/_static/), so a deck works offline from its folder.
The slide structure is the cells' ``slideshow`` metadata, set by mark_slides.py: a slide per
section heading, sub-slides where a section is long, speaker notes for long prose. Code longer
than FOLD_LINES lines is folded behind a summary line. A Markdown cell longer than PROSE_LINES
keeps its first paragraphs on the slide and the rest goes to the speaker notes (press S).

The Chinese decks (build/slides/zh/) take each Markdown paragraph, heading, list item and table
cell from the website's catalogues (docs/book/locales/zh_CN/, see build.py): the same
translation in both, and a paragraph without one stays English.

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


def translations(page: str, language: str) -> dict[str, str]:
    """{English message: translation} of a page's catalogue (translated, not fuzzy ones)."""
    from babel.messages.pofile import read_po

    path = HERE / "locales" / language / "LC_MESSAGES" / f"{page}.po"
    if not path.is_file():
        return {}
    with path.open("rb") as f:
        return {m.id: m.string for m in read_po(f) if m.id and m.string and not m.fuzzy}


def translate_markdown(source: str, messages: dict[str, str]) -> str:
    """``source`` with each block's text replaced by its translation, found as Sphinx finds
    it: the Markdown of a paragraph, heading, list item or table cell, whitespace collapsed."""
    from markdown_it import MarkdownIt

    lines = source.split("\n")
    for token in MarkdownIt("commonmark").enable("table").parse(source):
        text = " ".join(token.content.split()) if token.type == "inline" else ""
        if text not in messages or token.map is None:
            continue
        start, end = token.map
        first = token.content.split("\n")[0]
        if end - start == 1 or first not in lines[start]:  # one line, or a table row's cell
            row = next((i for i in range(start, end) if token.content in lines[i]), None)
            if row is not None:
                lines[row] = lines[row].replace(token.content, messages[text], 1)
            continue
        prefix = lines[start][:lines[start].index(first)]  # "- ", "## ", "> "
        lines[start:end] = [prefix + messages[text]] + [""] * (end - start - 1)
    return "\n".join(lines)


def translated(notebook, page: str, language: str):
    messages = translations(page, language)
    notebook = copy.deepcopy(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            cell.source = translate_markdown(cell.source, messages)
    return notebook


def build(notebooks: Path, out: Path, language: str | None = None) -> list[Path]:
    """The decks of ``notebooks`` in ``out``; in ``language`` ("zh_CN") from its catalogues."""
    out.mkdir(parents=True, exist_ok=True)
    static = out / "_static"
    shutil.copytree(REVEAL, static / "reveal.js", dirs_exist_ok=True)
    shutil.copytree(MATHJAX, static / "mathjax", dirs_exist_ok=True)
    slides, decks = exporter(), []
    slides.language_code = (language or "en").split("_")[0]  # <html lang="..."> of the decks
    for path in sorted(notebooks.glob("[0-9][0-9]_*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        if language:
            notebook = translated(notebook, path.stem, language)
        body, _ = slides.from_notebook_node(split_prose(notebook), resources={
            "metadata": {"name": path.stem}, "static_prefix": "_static",
            "fold_lines": FOLD_LINES})
        body = NOTEBOOK_LINK.sub(r'href="\1.slides.html"', body)  # links between notebooks
        deck = out / f"{path.stem}.slides.html"
        deck.write_text(body, encoding="utf-8")
        decks.append(deck)
    names = [(d.name, html.escape(d.name.removesuffix(".slides.html"))) for d in decks]
    items = "\n".join(f'<li><a href="{href}">{name}</a></li>' for href, name in names)
    lang, other = ("zh-CN", '<a href="../index.html">English</a>') if language else (
        "en", '<a href="zh/index.html">中文</a>')
    (out / "index.html").write_text(
        f'<!DOCTYPE html>\n<html lang="{lang}"><meta charset="utf-8"><title>Slides | 幻灯片'
        f"</title>\n<h1>Slides | 幻灯片</h1>\n<p>{other}</p>\n<ul>\n{items}\n</ul>\n</html>\n",
        encoding="utf-8")
    return decks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebooks", type=Path, default=ROOT / "notebooks")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "slides")
    args = parser.parse_args()
    start = time.time()
    decks = build(args.notebooks, args.out)
    zh = build(args.notebooks, args.out / "zh", language="zh_CN")
    print(f"slides: {len(decks)} decks in {args.out}, {len(zh)} in Chinese in "
          f"{args.out / 'zh'} ({time.time() - start:.0f} s)")
    return 0 if decks and zh else 1


if __name__ == "__main__":
    sys.exit(main())
