"""Build the notebooks' website: ``make book`` writes build/book/ (open build/book/index.html).

Stages a Sphinx source folder, build/book-src/, from what the repository already has, then runs
Sphinx with MyST-NB (configuration: docs/book/conf.py). Nothing is executed: the pages show
the outputs stored in notebooks/*.ipynb.

- index.md: the landing page: README.md's introduction, the list of notebooks from
  notebooks/README.md, the documentation pages, and the paper's map (section -> notebook ->
  module) from docs/architecture.md;
- NN_name.ipynb: the notebooks, one page each;
- docs/: the pages of docs/*.md (and docs/images/), in ``DOCS_ORDER``, their links made to
  work in the site (``site_links``);
- glossary.md: the glossary of notebooks/README.md;
- source/: every module of the package as a page, so code references can link to it
  (codelinks.py).

The Chinese edition, build/book/zh/, is the same source built with ``language = zh_CN``: Sphinx
replaces each paragraph, heading, list item and table cell by its translation from the gettext
catalogues in docs/book/locales/zh_CN/LC_MESSAGES/ (one ``.po`` file per page; code, outputs and
figures stay as they are). ``--update-catalogs`` extracts the English messages (Sphinx's gettext
builder) and merges them into the catalogues with sphinx-intl: a new paragraph arrives
untranslated, a changed one fuzzy, so the Chinese cannot drift silently
(tests_browser/test_translations.py fails on either). Only pages that have a catalogue are
updated; ``--update-catalogs PAGE ...`` starts catalogues for more (``docs/training``,
``02_attention``).

    python docs/book/build.py                         # both editions
    python docs/book/build.py --update-catalogs       # after changing English prose
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SRC = ROOT / "build" / "book-src"
OUT = ROOT / "build" / "book"
POT = ROOT / "build" / "gettext"
LOCALES = HERE / "locales"
LANGUAGES = {"zh_CN": "zh"}  # catalogue language -> folder of its edition under build/book/
NOTEBOOK = re.compile(r"`([0-9]{2}_\w+)`")
NOTEBOOK_FILE = re.compile(r"notebooks/([0-9]{2}_\w+)\.(?:ipynb|py)")
LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")  # [text](target) and ![alt](image)
DOCS_ORDER = ("training", "performance", "data", "architecture", "contracts", "testing")

sys.path.insert(0, str(HERE))
from codelinks import definition_label, definitions, module_label  # noqa: E402


def section(text: str, heading: str) -> list[str]:
    """The lines of a Markdown section, from its heading (excluded) to the next of its level."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    level = heading.split(" ")[0] + " "
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith(level)),
               len(lines))
    return lines[start + 1:end]


def table(lines: list[str], header: str) -> list[str]:
    """The Markdown table whose header row starts with ``header``."""
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


def link_notebooks(row: str) -> str:
    return NOTEBOOK.sub(lambda m: f"[{m.group(1)}]({m.group(1)}.ipynb)", row)


def paper_map() -> list[str]:
    """docs/architecture.md's table paper | module | notebook, as paper | notebook | module
    with links."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    rows = table(text.splitlines(), "| paper | module | notebook |")
    out = []
    for row in rows:
        paper, module, notebook = [cell.strip() for cell in row.strip("|").split("|")]
        out.append(link_notebooks(f"| {paper} | {notebook} | {module} |"))
    return out


def docs_pages() -> list[Path]:
    """docs/*.md, those of ``DOCS_ORDER`` first and in that order, any others after."""
    rank = {name: i for i, name in enumerate(DOCS_ORDER)}
    return sorted((ROOT / "docs").glob("*.md"), key=lambda p: (rank.get(p.stem, len(rank)), p.stem))


def title(page: Path) -> str:
    """The English half of a page's ``# English | 中文`` heading."""
    lines = page.read_text(encoding="utf-8").splitlines()
    return next(line[2:] for line in lines if line.startswith("# ")).split(" | ")[0].strip()


def site_link(match: re.Match, page: str) -> str:
    """One link of the repository page ``page``, made to work where build/book-src/ stages it
    (at the same relative path: README.md as index.md, docs/*.md under docs/): docs pages and
    images stay; a notebook goes to its page; a module of the package becomes a code reference
    (codelinks.py links it to its source page); any other file becomes a download."""
    image, text, target = match.groups()
    if re.match(r"[a-z]+:", target) or target.startswith("#"):
        return match[0]
    path, _, anchor = target.partition("#")
    file = (ROOT / page).parent.joinpath(path).resolve()
    if not file.is_relative_to(ROOT):
        return match[0]
    relpath, here = file.relative_to(ROOT).as_posix(), (SRC / page).parent
    if re.fullmatch(r"docs/[^/]+\.md|docs/images/.+", relpath):
        return match[0]
    if notebook := NOTEBOOK_FILE.fullmatch(relpath):
        url = os.path.relpath(SRC / f"{notebook[1]}.ipynb", here) + (f"#{anchor}" if anchor else "")
        return f"[{text}]({url})"
    if relpath.startswith("transformer/") and relpath.endswith(".py"):
        return f"`{relpath}`" if text.strip("`") == relpath else f"{text} (`{relpath}`)"
    url = os.path.relpath(file, here)
    return f"![{text}]({url})" if image else f"{{download}}`{text.replace('`', '')} <{url}>`"


def site_links(text: str, page: str) -> str:
    """``text``, the Markdown of repository page ``page``, with its links outside code blocks
    rewritten by ``site_link``."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        out.append(line if fenced else LINK.sub(lambda m: site_link(m, page), line))
    return "\n".join(out) + "\n"


def index_page() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    notebooks_readme = (ROOT / "notebooks" / "README.md").read_text(encoding="utf-8")
    intro = section(readme, "# Attention Is All You Need")
    intro = intro[:next(i for i, line in enumerate(intro) if line.startswith("## "))]
    listing = table(notebooks_readme.splitlines(), "| # | notebook | topic |")
    stems = [p.stem for p in sorted(SRC.glob("[0-9][0-9]_*.ipynb"))]
    docs = docs_pages()
    return "\n".join([
        "# Attention Is All You Need, annotated and runnable | 注意力就是你所需要的一切", "",
        site_links("\n".join(intro), "README.md"),
        "## The notebooks | 笔记本", "",
        *[link_notebooks(row) for row in listing], "",
        "Also: the [glossary](glossary.md) of the paper's terms in English and Chinese, and the",
        "[package's source](source/index.md). Slides of each notebook: `make slides`.", "",
        "## Documentation | 文档", "",
        *[f"- [{title(p)}](docs/{p.name})" for p in docs], "",
        "## The paper's map | 论文地图", "",
        "Where each part of the paper is taught, and where the package implements it.", "",
        *paper_map(), "",
        "```{toctree}", ":hidden:", ":maxdepth: 1", "", *stems, *[f"docs/{p.stem}" for p in docs],
        "glossary", "source/index", "```", "",
    ])


def glossary_page() -> str:
    text = (ROOT / "notebooks" / "README.md").read_text(encoding="utf-8")
    stems = {p.stem[:2]: p.stem for p in SRC.glob("[0-9][0-9]_*.ipynb")}

    def link_where(line: str) -> str:  # the "where" column: 02, 03 -> links to those notebooks
        if not line.startswith("|") or "---" in line:
            return line
        *cells, where, end = line.split("|")
        where = re.sub(r"\b[0-9]{2}\b",
                       lambda m: f"[{m[0]}]({stems[m[0]]}.ipynb)" if m[0] in stems else m[0],
                       where)
        return "|".join([*cells, where, end])

    body = section(text, "## Glossary")
    return "\n".join(["# Glossary | 术语表", "",
                      "The paper's terms, with the notebook that introduces each.", "",
                      *[link_where(line) for line in body], ""])


def fence(code: str) -> str:
    longest = max((len(m) for m in re.findall(r"`+", code)), default=0)
    return "`" * max(3, longest + 1)


def source_page(relpath: str) -> str:
    """A module's source as code blocks split at its top-level definitions, each with a target."""
    lines = (ROOT / relpath).read_text(encoding="utf-8").splitlines()
    starts = sorted((line, name) for name, line in definitions(relpath).items())
    chunks = [(1, None)] + starts
    out = [f"({module_label(relpath)})=", f"# {relpath}", ""]
    for (start, name), (end, _) in zip(chunks, chunks[1:] + [(len(lines) + 1, None)]):
        code = "\n".join(lines[start - 1:end - 1]).strip("\n")
        if not code:
            continue
        if name is not None:
            out += [f"({definition_label(relpath, name)})=", ""]
        marks = fence(code)
        out += [f"{marks}{{code-block}} python", f":lineno-start: {start}", "", code, marks, ""]
    return "\n".join(out)


def stage() -> None:
    if SRC.exists():
        shutil.rmtree(SRC)
    SRC.mkdir(parents=True)
    for notebook in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        shutil.copy2(notebook, SRC / notebook.name)
    (SRC / "index.md").write_text(index_page(), encoding="utf-8")
    (SRC / "docs").mkdir()
    for page in docs_pages():
        text = site_links(page.read_text(encoding="utf-8"), f"docs/{page.name}")
        (SRC / "docs" / page.name).write_text(text, encoding="utf-8")
    if (ROOT / "docs" / "images").is_dir():
        shutil.copytree(ROOT / "docs" / "images", SRC / "docs" / "images")
    (SRC / "glossary.md").write_text(glossary_page(), encoding="utf-8")
    pages = []
    for path in sorted((ROOT / "transformer").rglob("*.py")):
        relpath = path.relative_to(ROOT).as_posix()
        page = SRC / "source" / relpath.removesuffix(".py")
        page.parent.mkdir(parents=True, exist_ok=True)
        page.with_suffix(".md").write_text(source_page(relpath), encoding="utf-8")
        pages.append(page.relative_to(SRC / "source").as_posix())
    (SRC / "source" / "index.md").write_text("\n".join([
        "# The package's source | 源代码", "",
        "Every module of `transformer/`, as the pages link to it.", "",
        "```{toctree}", ":maxdepth: 1", "", *pages, "```", ""]), encoding="utf-8")


def catalogues(language: str = "zh_CN") -> dict[str, Path]:
    """The pages that have a catalogue in ``language``: {"docs/training": its .po file}."""
    folder = LOCALES / language / "LC_MESSAGES"
    return {p.relative_to(folder).with_suffix("").as_posix(): p
            for p in sorted(folder.rglob("*.po"))}


def extract_messages(out: Path = POT) -> Path:
    """The English pages' messages as .pot templates in ``out`` (stage() first)."""
    from sphinx.cmd.build import build_main

    if out.exists():
        shutil.rmtree(out)
    status = build_main(["-b", "gettext", "-q", "-c", str(HERE), str(SRC), str(out)])
    if status:
        raise SystemExit(f"error: the gettext build failed (status {status})")
    return out


def update_catalogues(new_pages: list[str]) -> list[str]:
    """Merge the English messages into the existing catalogues and into new ones for
    ``new_pages``; return the pages updated."""
    from sphinx_intl.basic import update

    pot = extract_messages()
    pages = sorted(set(catalogues()) | set(new_pages))
    missing = [page for page in pages if not (pot / f"{page}.pot").is_file()]
    if missing:
        raise SystemExit(f"error: no such page: {', '.join(missing)} (pages are named like "
                         "docs/training or 02_attention)")
    for template in pot.rglob("*.pot"):  # only the pages asked for
        if template.relative_to(pot).with_suffix("").as_posix() not in pages:
            template.unlink()
    for language in LANGUAGES:
        update(str(LOCALES), str(pot), [language], line_width=0)
        for path in catalogues(language).values():
            fill_untranslatable(path)
    return pages


def untranslatable(message: str) -> bool:
    """Nothing to translate: no English word outside inline code (a number, a symbol, a code
    span, a Chinese term)."""
    return not re.search(r"[A-Za-z]", re.sub(r"`[^`]*`", "", message))


def fill_untranslatable(path: Path) -> None:
    """Copy each message with nothing to translate into its translation, so the catalogue
    asks a translator only for prose. Messages are written one line each, unwrapped: a path
    or link is never cut across lines."""
    from babel.messages.pofile import read_po, write_po

    with path.open("rb") as f:
        catalog = read_po(f)
    for message in catalog:
        if message.id and not message.string and untranslatable(message.id):
            message.string = message.id
    with path.open("wb") as f:
        write_po(f, catalog, width=0)


def main(argv: list[str] | None = None) -> int:
    from sphinx.cmd.build import build_main  # here, so that tests can stage without Sphinx

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--update-catalogs", nargs="*", metavar="PAGE", default=None,
                   help="update the translation catalogues (and start ones for PAGE ...)")
    args = p.parse_args(argv)
    start = time.time()
    stage()
    if args.update_catalogs is not None:
        pages = update_catalogues(args.update_catalogs)
        print(f"catalogues: {len(pages)} pages in {LOCALES.relative_to(ROOT)}/ "
              f"({time.time() - start:.0f} s)")
        return 0
    status = build_main(["-b", "html", "-q", "-j", "2", "-c", str(HERE), str(SRC), str(OUT)])
    for language, folder in LANGUAGES.items():
        status = status or build_main(["-b", "html", "-q", "-j", "2", "-c", str(HERE),
                                       "-D", f"language={language}", str(SRC), str(OUT / folder)])
    print(f"book: {OUT.relative_to(ROOT)}/index.html, Chinese edition "
          f"{OUT.relative_to(ROOT)}/zh/index.html ({time.time() - start:.0f} s)")
    return status


if __name__ == "__main__":
    sys.exit(main())
