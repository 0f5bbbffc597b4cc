# Two commands do all the set-up (see README.md):
#   make reproduce   create .venv if missing, install, run the main job
#   make test        unit tests, lint, notebooks under nbval
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install reproduce test unit lint notebooks sync lab clean

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

test: $(STAMP) lint unit notebooks

lint: $(STAMP)
	@$(TIMED) $(PY) -m ruff check transformer tests notebooks bench

unit: $(STAMP)
	@$(TIMED) $(PY) -m pytest tests -q

# nbval re-executes every notebook; cells marked "# NBVAL_CHECK_OUTPUT" must also
# reproduce their stored output exactly.
notebooks: $(STAMP)
	@ls notebooks/*.ipynb >/dev/null 2>&1 || { echo "no notebooks yet"; exit 0; }
	@$(TIMED) $(PY) -m pytest -q --nbval-lax --nbval-sanitize-with notebooks/sanitize.cfg \
	  -p no:cacheprovider notebooks

# Re-execute the notebooks and write their outputs (after editing a .py)
sync: $(STAMP)
	cd notebooks && for f in [0-9]*.py; do ../$(PY) -m jupytext --sync --execute "$$f" || exit 1; done

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
