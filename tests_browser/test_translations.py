"""The Chinese edition: its catalogues complete and in step with the English pages, and the
built pages in Chinese and linked to their English twins (the Chinese search: test_book.py).

The catalogue checks need Sphinx (the book extra) but no browser; the page checks run on the
site ``make book`` built (build/book/zh/).
"""

from __future__ import annotations

import re
import sys

import pytest
from checks import CJK
from conftest import ROOT

sys.path.insert(0, str(ROOT / "docs" / "book"))
import build  # noqa: E402  (docs/book/build.py)

CODE = re.compile(r"`[^`]+`")
TARGET = re.compile(r"\]\(([^)\s]+)\)")
MATH = re.compile(r"\$[^$]+\$")
ENGLISH = re.compile(r"(?:\b[A-Za-z]{2,}\s+){3}[A-Za-z]{2,}")  # four English words in a row


def read(path):
    from babel.messages.pofile import read_po

    with path.open("rb") as f:
        return read_po(f)


CATALOGUES = build.catalogues()


def test_every_page_has_a_catalogue():
    """The landing page, the glossary, every notebook and every docs page (the source pages
    are code)."""
    notebooks = (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")
    pages = {"index", "glossary", *(p.stem for p in notebooks),
             *(f"docs/{p.stem}" for p in (ROOT / "docs").glob("*.md"))}
    assert pages == set(CATALOGUES), (
        f"without a catalogue: {sorted(pages - set(CATALOGUES))} (start one with python "
        f"docs/book/build.py --update-catalogs PAGE); no such page: "
        f"{sorted(set(CATALOGUES) - pages)}")


@pytest.mark.parametrize("page", sorted(CATALOGUES))
def test_every_message_is_translated_and_none_fuzzy(page):
    problems = []
    for m in read(CATALOGUES[page]):
        if not m.id:
            continue
        where = f"{page}: {m.id[:60]!r}"
        if not m.string:
            problems.append(f"{where}: untranslated")
        elif m.fuzzy:
            problems.append(f"{where}: fuzzy (the English changed; check the translation, "
                            "then remove the fuzzy flag)")
        else:
            for pattern, what in [(CODE, "code span"), (TARGET, "link target"), (MATH, "math")]:
                outside = (lambda t: CODE.sub("", t)) if pattern is MATH else (lambda t: t)
                lost = (set(pattern.findall(outside(m.id)))
                        - set(pattern.findall(outside(m.string))))
                if lost:
                    problems.append(f"{where}: {what} changed or lost: {sorted(lost)[:3]}")
    assert not problems, "\n".join(problems[:20])


@pytest.fixture(scope="module")
def templates(tmp_path_factory):
    """The English pages' messages, extracted from today's sources."""
    build.stage()
    return build.extract_messages(tmp_path_factory.mktemp("gettext"))


@pytest.mark.parametrize("page", sorted(CATALOGUES))
def test_catalogues_follow_the_english(templates, page):
    english = {m.id for m in read(templates / f"{page}.pot") if m.id}
    catalogue = {m.id for m in read(CATALOGUES[page]) if m.id}
    new, gone = english - catalogue, catalogue - english
    assert not new and not gone, (
        f"{page}: the English page changed ({len(new)} new or changed messages, e.g. "
        f"{sorted(new)[:2]}; {len(gone)} no longer used): run `python docs/book/build.py "
        "--update-catalogs`, translate what it marks, and rebuild")


def test_untranslatable_messages_are_copied():
    assert build.untranslatable("15,172") and build.untranslatable("`--max-tokens`")
    assert build.untranslatable("注意力") and not build.untranslatable("beam 4")


def test_slides_take_the_catalogues_translations():
    import slides  # docs/book/slides.py

    source = ("## Queries and keys | 查询和键\n\nA query is compared\nwith every key.\n\n"
              "- one item that runs\n  over two lines;\n- kept\n\n| what | value |\n|---|---|\n"
              "| the width | `d_k` |\n")
    messages = {"Queries and keys | 查询和键": "查询和键",
                "A query is compared with every key.": "查询与每个键比较。",
                "one item that runs over two lines;": "跨两行的一项；",
                "the width": "宽度"}
    out = slides.translate_markdown(source, messages)
    assert out.startswith("## 查询和键\n\n查询与每个键比较。\n")
    assert "- 跨两行的一项；\n" in out and "- kept" in out
    assert "| 宽度 | `d_k` |" in out and "with every key" not in out


# ---- the built Chinese edition (make book) ----------------------------------------------------

ZH_PAGES = sorted(CATALOGUES)


@pytest.mark.parametrize("name", ZH_PAGES)
def test_chinese_page_is_chinese(watched, site, name):
    """Loads offline without errors, says it is Chinese, and where the page has a catalogue
    its prose is Chinese: hardly a paragraph with a run of English words and no Chinese (names,
    paths and code stay as they are)."""
    from checks import image_problems

    page = watched.page
    page.goto(f"{site}/book/zh/{name}.html", wait_until="load")
    assert page.evaluate("document.documentElement.lang").startswith("zh")
    paragraphs = page.eval_on_selector_all("article p", "ps => ps.map(p => p.innerText)")
    if name in CATALOGUES:
        english = [t for t in paragraphs if ENGLISH.search(t) and not CJK.search(t)]
        assert len(english) <= 0.1 * len(paragraphs), f"{name}: English paragraphs {english[:3]}"
    watched.screenshot(f"book-zh-{name.replace('/', '-')}")
    problems = image_problems(page, "article img") + watched.problems()
    assert not problems, problems


@pytest.mark.parametrize("name", ["index", "docs/training", "02_attention"])
def test_language_links_lead_to_the_same_page(watched, site, name):
    page = watched.page
    page.goto(f"{site}/book/{name}.html")
    page.click("a.language-switch")
    page.wait_for_url(f"**/book/zh/{name}.html")
    assert page.evaluate("document.documentElement.lang").startswith("zh")
    page.click("a.language-switch")
    page.wait_for_url(f"**/book/{name}.html")
    assert not page.url.rstrip("/").split("/book/")[1].startswith("zh/")
    assert not watched.problems(), watched.problems()

