"""What the browser tests share: Debian's Chromium driven by Playwright, a 127.0.0.1 server for
build/, and a page that records JavaScript errors and every request that left 127.0.0.1.

Run them with ``make test-browser`` (it builds the site and the slides first). They need
``chromium`` and ``fonts-noto-cjk`` from Debian; ``CHROMIUM=/path`` picks another binary.
Screenshots go to build/screenshots/ for a person to look at.
"""

from __future__ import annotations

import functools
import os
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build"
SCREENSHOTS = BUILD / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
APT = "apt-get install -y --no-install-recommends chromium chromium-driver fonts-noto-cjk"
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
LOCAL = {"127.0.0.1", "localhost"}
# MathJax 2 probes for web fonts with a blank @font-face (src: about:blank) that Chromium refuses
HARMLESS = ("Failed to load resource", "Access to font at 'about:blank'")


def is_local(url: str) -> bool:
    parsed = urlparse(url)
    return parsed.scheme in ("file", "data", "blob", "about") or parsed.hostname in LOCAL


@pytest.fixture(scope="session")
def browser():
    if not (shutil.which(CHROMIUM) or Path(CHROMIUM).is_file()):
        pytest.exit(f"Chromium not found at {CHROMIUM}: run (as root) `{APT}`", returncode=1)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def site():
    """The base URL of build/ served on 127.0.0.1."""
    for folder in ("book", "slides"):
        if not (BUILD / folder / "index.html").is_file():
            pytest.exit(f"build/{folder}/ is missing: run `make book slides` first", returncode=1)
    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 functools.partial(Quiet, directory=str(BUILD)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


class Watched:
    """A page with what went wrong on it: uncaught errors, console errors, outside requests
    (which are refused, so a page that needs the internet fails here as it would offline)."""

    def __init__(self, context):
        self.context = context
        self.errors: list[str] = []
        self.outside: list[str] = []
        context.route("**/*", self._route)
        self.page = context.new_page()
        self.page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        self.page.on("console", self._console)
        self.page.on("response", self._response)

    def _route(self, route):
        if is_local(route.request.url):
            route.continue_()
        else:
            self.outside.append(route.request.url)
            route.abort()

    def _console(self, message):
        if message.type == "error" and not message.text.startswith(HARMLESS):
            self.errors.append(f"console: {message.text}")

    def _response(self, response):
        if response.status >= 400:
            self.errors.append(f"HTTP {response.status}: {response.url}")

    def screenshot(self, name: str, full_page: bool = False):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)

    def problems(self) -> list[str]:
        return self.errors + [f"requested outside 127.0.0.1: {url}" for url in self.outside]


@pytest.fixture
def watched(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = Watched(context)
    yield page
    context.close()
