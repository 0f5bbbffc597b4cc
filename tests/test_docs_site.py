"""The website stages the pages of docs/ (docs/book/build.py): each one is copied, listed on
the landing page and in its table of contents, with its links made to work in the site; the
landing page's map of the paper comes from docs/architecture.md.

Only the staging runs here (no Sphinx); tests_browser/test_book.py opens the built pages.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted(p.name for p in (ROOT / "docs").glob("*.md"))
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
LINK = re.compile(r"\]\(([^)\s]+)\)")
DOWNLOAD = re.compile(r"\{download\}`[^`<]*<([^>]+)>`")


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    """docs/book/build.py with its staging folder in a temporary directory, staged once."""
    spec = importlib.util.spec_from_file_location("book_build", ROOT / "docs" / "book" / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    build.SRC = tmp_path_factory.mktemp("book") / "book-src"
    build.stage()
    return build


def test_every_docs_page_is_staged_and_listed(book):
    assert "architecture.md" in DOCS and "training.md" in DOCS
    assert sorted(p.name for p in (book.SRC / "docs").glob("*.md")) == DOCS
    index = (book.SRC / "index.md").read_text(encoding="utf-8")
    toctree = index.split("```{toctree}")[1]
    listed = re.findall(r"^docs/(\w+)$", toctree, re.M)
    assert sorted(f"{name}.md" for name in listed) == DOCS
    known = [name for name in book.DOCS_ORDER if f"{name}.md" in DOCS]
    assert listed[:len(known)] == known  # the order of DOCS_ORDER, any others after
    for name in DOCS:
        assert f"](docs/{name})" in index, f"the landing page does not list docs/{name}"


def test_the_paper_map_comes_from_the_architecture_page(book):
    rows = book.paper_map()
    assert len(rows) > 10 and rows[0].startswith("| paper | notebook | module |")
    index = (book.SRC / "index.md").read_text(encoding="utf-8")
    assert "[02_attention](02_attention.ipynb)" in index
    assert "`transformer/model/attention.py`" in index


@pytest.mark.parametrize("name", ["index.md", *(f"docs/{name}" for name in DOCS)])
def test_staged_links_resolve_in_the_site(book, name):
    """A link leaving docs/ would break in the site: each must point at a staged file, or be a
    download of a repository file (which Sphinx copies into the site)."""
    page = book.SRC / name
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.is_relative_to(book.SRC) and path.exists(), f"{name}: link to {target}"
    for target in DOWNLOAD.findall(text):
        path = (page.parent / target).resolve()
        assert path.is_relative_to(ROOT) and path.is_file(), f"{name}: download of {target}"


def test_site_links_rewrites_what_leaves_the_site(book):
    readme = os.path.relpath(ROOT / "data" / "README.md", book.SRC / "docs")
    links = {
        "[training](training.md#tokens-per-step--每步的词元数)":
            "[training](training.md#tokens-per-step--每步的词元数)",
        "[notebook 06](../notebooks/06_training.ipynb#the-schedule)":
            "[notebook 06](../06_training.ipynb#the-schedule)",
        "[`transformer/engine/runtime.py`](../transformer/engine/runtime.py)":
            "`transformer/engine/runtime.py`",
        "[the data recipes](../data/README.md)":
            f"{{download}}`the data recipes <{readme}>`",
        "[web](https://arxiv.org/abs/1706.03762)": "[web](https://arxiv.org/abs/1706.03762)",
        "```\n[not a link](../data/README.md)\n```": "```\n[not a link](../data/README.md)\n```",
    }
    for markdown, expected in links.items():
        assert book.site_links(markdown, "docs/training.md") == expected + "\n", markdown
