"""Sphinx configuration of the notebooks' website (``make book``; see docs/book/README.md).

The source folder is build/book-src/, staged by docs/book/build.py from notebooks/*.ipynb
(their stored outputs, never re-executed), README.md, docs/*.md and the package's source.
"""

import shutil
import sys
from pathlib import Path

import jupyter_server_mathjax

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

project = "Attention Is All You Need — annotated and runnable"
author = "the transformer project"
language = "en"

extensions = ["myst_nb", "codelinks"]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]

# the stored outputs are shown as they are: nothing is executed
nb_execution_mode = "off"
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath"]
# GitHub-style heading anchors, so [text](07_results.ipynb#some-heading--中文) resolves
myst_heading_anchors = 4
myst_update_mathjax = False  # its settings are for MathJax 3; this site ships MathJax 2

html_theme = "sphinx_book_theme"
html_title = "Attention Is All You Need · 注意力就是全部"
html_static_path = ["_static"]
html_css_files = ["book.css"]
html_js_files = ["fold.js"]
html_theme_options = {
    "show_toc_level": 2,
    "home_page_in_toc": True,
    "use_download_button": False,
    "use_fullscreen_button": False,
}
html_context = {"default_mode": "light"}
html_copy_source = False

# MathJax from the site itself: the copy that jupyter-server-mathjax ships (MathJax 2.7)
MATHJAX = Path(jupyter_server_mathjax.__file__).parent / "static"
mathjax_path = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"
# the web font that copy ships (STIX-Web), and no image fonts
mathjax2_config = {"HTML-CSS": {"availableFonts": [], "preferredFont": None,
                                "webFont": "STIX-Web", "imageFont": None},
                   "messageStyle": "none"}


def copy_mathjax(app, exception):
    if exception is None and app.builder.format == "html":
        shutil.copytree(MATHJAX, Path(app.outdir) / "_static" / "mathjax", dirs_exist_ok=True)


def setup(app):
    app.connect("build-finished", copy_mathjax)
