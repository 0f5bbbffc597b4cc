# Two commands do all the set-up (see README.md):
#   make reproduce   create .venv if missing, install, run the main job
#   make test        lint, then the unit tests and the notebooks (under nbval) in one run
#   make book, make slides, make test-browser   the notebooks as a website and as slides (in
#                    English and Chinese), and
#                    their tests in headless Chromium (docs/book/README.md)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install reproduce test unit lint notebooks sync lab clean book slides test-browser \
	check-chromium

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null || { \
	  echo "error: this project needs Python 3.10 or newer; '$(PYTHON)' is $$($(PYTHON) --version 2>&1 || echo missing)." >&2; \
	  echo "Install one and run: make $(MAKECMDGOALS) PYTHON=python3.12 (or the one you have)" >&2; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[notebooks,dev]'
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (transformer)" >/dev/null
	@touch $@

install: $(STAMP)

reproduce: $(STAMP)
	$(PY) -m transformer reproduce

# each stage prints how long it took ("stage lint: 2 s"), so a slow suite says where
TIMED = start=$$(date +%s); trap 'echo "stage $@: $$(( $$(date +%s) - start )) s"' EXIT;

# lint, then the unit tests and every notebook in one pytest run on two workers: one trains
# notebook 06's runs while the other runs the unit tests, then notebook 07
# (tools/suite_order.py says in which order and why); it ends with each part's time.
# TEST_WORKERS=0 runs everything in turn.
TEST_WORKERS ?= 2
NBVAL = --nbval-lax --nbval-sanitize-with notebooks/sanitize.cfg
test: $(STAMP) lint
	@$(TIMED) $(PY) -m pytest -q -p no:cacheprovider -p tools.suite_order $(NBVAL) \
	  -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder --durations=6 tests notebooks

lint: $(STAMP)
	@$(TIMED) $(PY) -m ruff check transformer tests tests_browser notebooks bench docs tools

# two workers (pytest-xdist): about 1.7x as fast on a 2-core machine; UNIT_WORKERS=0 for one
UNIT_WORKERS ?= 2
unit: $(STAMP)
	@$(TIMED) $(PY) -m pytest tests -q -n $(UNIT_WORKERS)

# nbval re-executes every notebook; cells marked "# NBVAL_CHECK_OUTPUT" must also
# reproduce their stored output exactly.  The six slowest cells are listed at the end.
# Two workers, each notebook on one (--dist loadscope); when 06 and 07 need the same training
# run, the second waits for the first to train it (transformer.apps.notebook).
# NB_WORKERS=0 runs the notebooks one after another.
NB_WORKERS ?= 2
notebooks: $(STAMP)
	@ls notebooks/*.ipynb >/dev/null 2>&1 || { echo "no notebooks yet"; exit 0; }
	@$(TIMED) $(PY) -m pytest -q $(NBVAL) -p no:cacheprovider -n $(NB_WORKERS) --dist loadscope \
	  --durations=6 notebooks

# Re-execute the notebooks and write their outputs (after editing a .py)
sync: $(STAMP)
	$(PY) tools/execute_notebooks.py notebooks/[0-9]*.py

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks

# The notebooks as a website (build/book/index.html) and as reveal.js decks (build/slides/),
# from their stored outputs: nothing is executed. See docs/book/README.md.
BOOK_STAMP := $(VENV)/.installed-book
$(BOOK_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[notebooks,dev,book,browser]'
	@touch $@

book: $(BOOK_STAMP)
	@$(TIMED) $(PY) docs/book/build.py

slides: $(BOOK_STAMP)
	@$(TIMED) $(PY) docs/book/slides.py

# The site, the decks and JupyterLab in headless Chromium (not part of make test: it needs
# Debian packages); screenshots go to build/screenshots/.
CHROMIUM ?= /usr/bin/chromium
APT_BROWSER = apt-get install -y --no-install-recommends chromium chromium-driver fonts-noto-cjk
check-chromium:
	@test -x $(CHROMIUM) || { echo "error: make test-browser needs Chromium, not found at $(CHROMIUM)." >&2; \
	  echo "Install it (as root): $(APT_BROWSER)" >&2; \
	  echo "or name another binary: make test-browser CHROMIUM=/path/to/chromium" >&2; exit 1; }

test-browser: check-chromium book slides
	@$(TIMED) CHROMIUM=$(CHROMIUM) $(PY) -m pytest -q -p no:cacheprovider tests_browser

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build/book build/book-src build/slides build/screenshots
