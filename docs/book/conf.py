"""Sphinx configuration of the notebooks' website (``make book``; see docs/book/README.md).

The source folder is build/book-src/, staged by docs/book/build.py from notebooks/*.ipynb
(their stored outputs, never re-executed), README.md, docs/*.md and the package's source.
"""

import logging
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
# Markdown that code cells display (rendered sentences, tables) is parsed as MyST, like the
# notebooks' own Markdown: CommonMark, the default, has no tables
nb_render_markdown_format = "myst"
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
    "article_header_end": ["language-switch.html", "article-header-buttons.html"],
    "show_toc_level": 2,
    "home_page_in_toc": True,
    "use_download_button": False,
    "use_fullscreen_button": False,
}
html_context = {"default_mode": "light"}
templates_path = ["_templates"]

# The Chinese edition: build.py also builds build/book/zh/ with -D language=zh_CN, taking every
# page's prose from the gettext catalogues in locales/zh_CN/ (build.py --update-catalogs writes
# them from the English pages: a changed paragraph becomes a fuzzy message, a new one an
# untranslated message). Its search splits Chinese into words with jieba (Sphinx's zh search).
locale_dirs = [str(HERE / "locales")]  # Sphinx reads them relative to the source folder
gettext_compact = False
gettext_location = False
gettext_uuid = False
gettext_last_translator = "the transformer project"
gettext_language_team = "the transformer project"
logging.getLogger("jieba").setLevel(logging.WARNING)  # it logs its dictionary's loading
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


def chinese_search():
    """Sphinx's Chinese search (jieba's words), its stemmer named as Sphinx 9.0's JavaScript
    expects: the Latin words of Chinese pages are stemmed as English, and Sphinx 9.0 writes
    ``window.Stemmer = ChineseStemmer`` where the class is EnglishStemmer, which breaks the
    search page (sphinx-doc/sphinx#14229)."""
    from sphinx.search.zh import SearchChinese

    class ChineseSearch(SearchChinese):
        language_name = "English"  # names the JavaScript stemmer class only

    return ChineseSearch


def setup(app):
    app.connect("build-finished", copy_mathjax)
    app.add_search_language(chinese_search())
