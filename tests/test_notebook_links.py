"""Cross-references between the notebooks are Markdown links, ``[text](07_results.ipynb#slug)``,
and each must point at a notebook and a heading that exist.

Anchors are GitHub's (and MyST's, with ``myst_heading_anchors``) heading slugs: lowercased,
spaces to ``-``, punctuation other than ``-`` and ``_`` dropped, letters of any script kept:
``## Quality by sentence length | 按句长看质量`` -> ``quality-by-sentence-length--按句长看质量``.
"""

from __future__ import annotations

import re
from pathlib import Path

import jupytext
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SOURCES = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))
LINK = re.compile(r"\]\(((?:\.\./notebooks/|\./)?([0-9]{2}_[A-Za-z_]+)\.(?:ipynb|py))(#[^)\s]*)?\)")
HEADING = re.compile(r"^(#{1,4}) +(.*?) *$")


def slug(heading: str) -> str:
    """The anchor GitHub and MyST give a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def headings(path: Path) -> set[str]:
    anchors = set()
    for cell in jupytext.read(path).cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                match = HEADING.match(line)
                if match:
                    anchors.add(slug(match.group(2)))
    return anchors


def links(path: Path):
    """(line number, target notebook stem, anchor or None) for each notebook link in a file."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        for match in LINK.finditer(line):
            anchor = match.group(3)
            yield number, match.group(2), anchor[1:] if anchor else None


def test_slug_matches_github():
    cases = {"Quality by sentence length | 按句长看质量":
                 "quality-by-sentence-length--按句长看质量",
             '"It was too tired / too wide", trained | 训练后':
                 "it-was-too-tired--too-wide-trained--训练后",
             "Why divide by √d_k | 为什么除以 √d_k": "why-divide-by-d_k--为什么除以-d_k"}
    assert {heading: slug(heading) for heading in cases} == cases


def test_link_pattern_finds_links():
    text = "see [07](07_results.ipynb#summary--小结) and [04](04_positional_encoding.ipynb)"
    found = list(LINK.finditer(text))
    assert [(m.group(2), m.group(3)) for m in found] == [("07_results", "#summary--小结"),
                                                        ("04_positional_encoding", None)]


@pytest.mark.parametrize("source", SOURCES + [NOTEBOOKS / "README.md"],
                         ids=[p.name for p in SOURCES] + ["README.md"])
def test_cross_references_resolve(source):
    bad = []
    for number, stem, anchor in links(source):
        target = NOTEBOOKS / f"{stem}.py"
        if not target.exists():
            bad.append(f"line {number}: no notebook {stem}")
        elif anchor is not None and anchor not in headings(target):
            bad.append(f"line {number}: {stem} has no heading with anchor #{anchor} "
                       f"(anchors there: {sorted(headings(target))})")
    assert not bad, f"{source.name}: dead cross-references:\n" + "\n".join(bad)
