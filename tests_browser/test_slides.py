"""The reveal.js decks of ``make slides`` (build/slides/) in headless Chromium: each loads with
reveal.js and MathJax from its own folder, advances, and shows its figures full width."""

from __future__ import annotations

import pytest
from checks import CJK, chart_problems, image_problems, wait_for_math
from conftest import BUILD, ROOT

NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("edition", ["", "zh/"], ids=["en", "zh"])
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_deck_works_offline(watched, site, name, edition):
    page = watched.page
    page.goto(f"{site}/slides/{edition}{name}.slides.html", wait_until="load")
    page.wait_for_function("() => window.Reveal && Reveal.isReady()", timeout=15_000)
    assert page.evaluate("document.documentElement.lang") == (edition.strip("/") or "en")
    wait_for_math(page)
    assert CJK.search(page.inner_text(".reveal section.present h1")), "title lacks Chinese"
    watched.screenshot(f"slides-{edition.replace('/', '-')}{name}-title")
    total = page.evaluate("Reveal.getTotalSlides()")
    assert total > 3, f"{name}: only {total} slides (is the slide metadata missing?)"
    page.keyboard.press("ArrowRight")
    assert page.evaluate("Reveal.getIndices().h") == 1, "the deck did not advance"
    problems = chart_problems(page) + image_problems(page, ".reveal img")
    figure = page.evaluate("""() => {
        const img = document.querySelector(".reveal .jp-OutputArea-output img");
        if (!img) return null;
        const {h, v} = Reveal.getIndices(img.closest("section"));
        Reveal.slide(h, v);
        return [h, v];
    }""")
    if figure is not None:
        page.wait_for_timeout(300)
        width = page.evaluate("""() => {
            const img = document.querySelector(".reveal section.present .jp-OutputArea-output img");
            const slides = document.querySelector(".reveal .slides");
            return img.getBoundingClientRect().width / slides.getBoundingClientRect().width;
        }""")
        watched.screenshot(f"slides-{edition.replace('/', '-')}{name}-figure")
        assert width > 0.8, f"{name}: the figure on slide {figure} is {width:.0%} of the width"
    problems += watched.problems()
    assert not problems, f"{name}.slides.html:\n" + "\n".join(problems)


def test_long_prose_goes_to_speaker_notes():
    decks = sorted((BUILD / "slides").glob("*.slides.html"))
    with_notes = [d.name for d in decks if '<aside class="notes">' in d.read_text("utf-8")]
    assert with_notes, "no deck has speaker notes"
