"""The website of ``make book`` (build/book/) in headless Chromium: every page loads without
a JavaScript error or a request leaving 127.0.0.1, figures and charts draw, math is typeset,
and navigation, search, folding and the links to the source work."""

from __future__ import annotations

import re
import subprocess
from urllib.parse import unquote

import pytest
from checks import CJK, chart_problems, image_problems, search, wait_for_math
from conftest import ROOT

NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PAGES = ["index", "glossary", *NOTEBOOKS, "source/index", "source/transformer/model/attention"]
DOCS = sorted(p.stem for p in (ROOT / "docs").glob("*.md"))
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
QUOTES = str.maketrans("‘’“”", "''\"\"")  # Sphinx's smart quotes, back to plain ones


@pytest.mark.parametrize("name", PAGES)
def test_page_shows_everything_offline(watched, site, name):
    page = watched.page
    page.goto(f"{site}/book/{name}.html", wait_until="load")
    wait_for_math(page)
    problems = chart_problems(page) + image_problems(page, "article img")
    watched.screenshot(f"book-{name.replace('/', '-')}", full_page=name in NOTEBOOKS)
    heading = page.inner_text("article h1")
    if not name.startswith("source"):
        assert CJK.search(heading), f"{name}: the title {heading!r} lacks its Chinese term"
    problems += watched.problems()
    assert not problems, f"{name}.html:\n" + "\n".join(problems)


def test_chinese_font_installed():
    """Without a CJK font the Chinese terms are drawn as empty boxes in the screenshots."""
    fonts = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True)
    assert fonts.stdout.strip(), "no Chinese font: apt-get install -y fonts-noto-cjk"


def test_navigation(watched, site):
    page = watched.page
    page.goto(f"{site}/book/index.html")
    page.click("article table a[href='02_attention.html']")  # the paper's map
    page.wait_for_url("**/02_attention.html")
    page.click("nav.bd-docs-nav a[href='05_full_model.html']")  # the sidebar
    page.wait_for_url("**/05_full_model.html")
    page.click("a.right-next")
    page.wait_for_url("**/06_training.html")
    page.click("a.left-prev")
    page.wait_for_url("**/05_full_model.html")
    toc = page.query_selector_all("nav.page-toc a")  # this page's table of contents
    assert len(toc) >= 3
    toc[1].click()
    page.wait_for_url("**/05_full_model.html#*")
    assert not watched.problems(), watched.problems()


@pytest.mark.parametrize("edition, query, found", [("", "beam search", "07_results"),
                                                   ("zh/", "注意力", "02_attention")],
                         ids=["en", "zh"])
def test_search(watched, site, edition, query, found):
    """The Chinese edition's search splits Chinese into words (jieba), so a term finds pages."""
    results = search(watched.page, f"{site}/book/{edition}index.html", query)
    watched.screenshot(f"book-{edition.replace('/', '-')}search")
    assert any(href.startswith(f"{found}.html") for href in results), results
    assert not watched.problems(), watched.problems()


def test_code_cells_fold(watched, site):
    page = watched.page
    page.goto(f"{site}/book/02_attention.html")
    inputs = page.locator("div.cell_input")
    assert inputs.first.is_visible()
    page.locator("button.fold-code").first.click()
    assert not inputs.first.is_visible() and inputs.nth(1).is_visible()
    page.click("button.fold-all")
    assert not any(inputs.nth(i).is_visible() for i in range(inputs.count()))
    assert not watched.problems(), watched.problems()


def test_code_references_link_to_source(watched, site):
    page = watched.page
    page.goto(f"{site}/book/06_training.html")
    page.click("a.source-link:has-text('transformer/apps/recipes.py')")
    assert page.url.endswith("/source/transformer/apps/recipes.html#src-transformer-apps-recipes")
    assert page.inner_text("article h1").startswith("transformer/apps/recipes.py")
    page.goto(f"{site}/book/06_training.html")
    page.click("a.source-link:has-text('transformer.engine.train.train')")
    anchor = page.url.split("#")[1]
    target = page.locator(f"[id='{anchor}'] + div, [id='{anchor}']").first
    assert re.search(r"def train\(", page.inner_text(f"[id='{anchor}']")), anchor
    assert target.is_visible()
    assert not watched.problems(), watched.problems()


@pytest.mark.parametrize("edition", ["", "zh"], ids=["en", "zh"])
def test_cross_links_resolve(edition):
    """Every link between pages that names a heading (``07_results.html#slug``) finds it, in
    both editions (the Chinese headings keep the English pages' anchors)."""
    book = ROOT / "build" / "book" / edition
    dead = []
    for page in sorted(book.glob("*.html")):
        for target, anchor in re.findall(r'href="([0-9]{2}_\w+\.html)#([^"]+)"',
                                         page.read_text("utf-8")):
            if f'id="{anchor}"' not in (book / target).read_text("utf-8"):
                dead.append(f"{page.name} -> {target}#{anchor}")
    assert not dead, "links to headings that do not exist (is the .ipynb up to date?):\n" + \
        "\n".join(sorted(set(dead)))


def test_cross_link_followed(watched, site):
    page = watched.page
    page.goto(f"{site}/book/04_positional_encoding.html")
    link = page.locator("article a[href^='07_results.html#']").first
    if not link.count():
        pytest.skip("04_positional_encoding links to no heading of 07_results")
    anchor = link.get_attribute("href").split("#", 1)[1]
    link.click()
    page.wait_for_url("**/07_results.html#*")
    assert page.locator(f"[id='{anchor}']").count() == 1, f"07_results has no #{anchor}"


def headings(name: str, marks: str) -> list[str]:
    """The English half of docs/<name>.md's headings of one level ("#", "##")."""
    text = FENCE.sub("", (ROOT / "docs" / f"{name}.md").read_text(encoding="utf-8"))
    return [line[len(marks) + 1:].split(" | ")[0].strip() for line in text.splitlines()
            if line.startswith(marks + " ")]


@pytest.mark.parametrize("name", DOCS)
def test_docs_page_shows_its_sections(watched, site, name):
    """Each page of docs/ is in the site, with its title (and its Chinese term) and sections."""
    page = watched.page
    page.goto(f"{site}/book/docs/{name}.html", wait_until="load")
    watched.screenshot(f"book-docs-{name}")
    title = page.inner_text("article h1").translate(QUOTES)
    assert title.startswith(headings(name, "#")[0]) and CJK.search(title), title
    shown = " ".join(page.locator("article h2").all_inner_texts()).translate(QUOTES)
    missing = [h for h in headings(name, "##") if h not in shown]
    assert not missing, f"docs/{name}.html lacks the sections {missing}"
    problems = image_problems(page, "article img") + watched.problems()
    assert not problems, f"docs/{name}.html:\n" + "\n".join(problems)


def test_docs_are_listed_on_the_landing_page(watched, site):
    page = watched.page
    page.goto(f"{site}/book/index.html")
    for name in DOCS:
        assert page.locator(f"article a[href='docs/{name}.html']").count(), name
        assert page.locator(f"nav.bd-docs-nav a[href='docs/{name}.html']").count(), name
    page.click("article a[href='docs/training.html']")
    page.wait_for_url("**/docs/training.html")
    assert not watched.problems(), watched.problems()


def test_docs_links_resolve():
    """Every link in the docs pages' text leads to a file of the site, and to a heading there
    when it names one: other docs pages, notebooks, source pages, downloads."""
    book = ROOT / "build" / "book"
    dead = []
    for page in sorted((book / "docs").glob("*.html")):
        html = page.read_text("utf-8")
        for href in re.findall(r'<a class="reference[^"]*" href="([^"]+)"', html):
            if re.match(r"[a-z]+:", href):
                continue
            path, _, anchor = unquote(href).partition("#")
            target = (page.parent / path).resolve() if path else page
            if not target.is_file():
                dead.append(f"{page.name} -> {href}")
            elif anchor and target.suffix == ".html" and \
                    f'id="{anchor}"' not in target.read_text("utf-8"):
                dead.append(f"{page.name} -> {href} (no such heading)")
    assert not dead, "dead links in the docs pages:\n" + "\n".join(sorted(set(dead)))
