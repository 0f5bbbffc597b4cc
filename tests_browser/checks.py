"""Checks on what a loaded page shows, shared by the site's, the slides' and JupyterLab's tests."""

from __future__ import annotations

import re

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
CHARTS = 'div[id^="altair-viz"], div.vega-embed'

# a figure is an <img> the browser decoded, with a size
BROKEN_IMAGES = """(selector) => [...document.querySelectorAll(selector)]
    .filter((img) => !(img.complete && img.naturalWidth > 0))
    .map((img) => img.src.slice(0, 80))"""

# an altair chart has drawn when vega put an <svg> or <canvas> in its container
UNDRAWN_CHARTS = """(selector) => [...document.querySelectorAll(selector)]
    .filter((chart) => !chart.parentElement.closest('div[id^="altair-viz"], div.vega-embed'))
    .filter((chart) => !chart.querySelector("svg, canvas"))
    .map((chart) => chart.id || chart.className)"""


def wait_for_math(page, timeout=20_000):
    """MathJax 2 typesets every span.math / div.math; wait until none is left as TeX."""
    page.wait_for_function("""() => {
        const math = document.querySelectorAll("span.math, div.math");
        if (!math.length) return true;
        return document.querySelectorAll(".MathJax_CHTML, .MathJax, mjx-container").length > 0
            && !document.querySelector("#MathJax_Message[style*='visible']");
    }""", timeout=timeout)


def chart_problems(page, timeout=15_000) -> list[str]:
    """Names of altair charts that drew nothing, after waiting a while for them."""
    if not page.query_selector_all(CHARTS):
        return []
    try:
        page.wait_for_function(f"() => !({UNDRAWN_CHARTS})({CHARTS!r}).length", timeout=timeout)
    except Exception:  # noqa: BLE001 (the undrawn charts are named below)
        pass
    undrawn = page.evaluate(UNDRAWN_CHARTS, CHARTS)
    cdn = page.evaluate("""() => [...document.querySelectorAll("script")]
        .some((s) => /cdn\\.jsdelivr|unpkg|cdnjs/.test(s.textContent + (s.src || "")))""")
    why = " (its output loads vega from a CDN: re-execute the notebook)" if cdn else ""
    return [f"altair chart {name} drew no svg/canvas{why}" for name in undrawn]


def image_problems(page, selector="img") -> list[str]:
    return [f"image not decoded: {src}" for src in page.evaluate(BROKEN_IMAGES, selector)]


def search(page, url: str, query: str) -> list[str]:
    """Open ``url``, search the site for ``query`` (Ctrl+K, Enter) and return the results'
    links."""
    page.goto(url)
    page.keyboard.press("Control+k")
    page.fill("input[name='q']:visible", query)
    page.keyboard.press("Enter")
    page.wait_for_selector("#search-results ul.search li", timeout=15_000)
    return page.eval_on_selector_all("#search-results ul.search li a",
                                     "links => links.map(a => a.getAttribute('href'))")
