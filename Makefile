# nbexplain — set-up, demo and tests. `make demo` and `make test` each do all the set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
# The CPU wheel of this torch version installs quickly; an unpinned torch pulls a multi-GB CUDA build.
TORCH_VERSION ?= 2.13.0
PORT ?= 8888
PYTEST_ARGS ?=
# `make export`: the notebook to run and write as an offline HTML page (into build/export/, git-ignored).
NB ?= examples/00_tour.ipynb
# `make site`: every lesson run (one torch thread each, SITE_JOBS at once) into build/site/ (git-ignored).
SITE_JOBS ?= $(shell nproc 2>/dev/null || echo 1)

.PHONY: demo test setup setup-test js js-test typecheck browser lint bench dev clean help export site

help:
	@echo "make demo   - install everything, build the JS, open JupyterLab on examples/"
	@echo "make test   - install everything (incl. Chromium when root), run lint, JS, Python and browser tests"
	@echo "make dev    - JupyterLab with hot-reloading views (esbuild --watch + ANYWIDGET_HMR=1)"
	@echo "make bench  - run every benchmark in benchmarks/"
	@echo "make export NB=examples/00_tour.ipynb - run a notebook, write build/export/<name>.html (+ _files/), works offline"
	@echo "make site   - run every lesson, write build/site/ (index.html + one offline page per lesson): zip it or host it"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

js: node_modules/.package-lock.json
	npm run build

# Stamps record which extras are installed; they are redone when pyproject.toml changes.
$(VENV)/.lessons: pyproject.toml | $(PY)
	$(PY) -m pip install "torch==$(TORCH_VERSION)"
	$(PY) -m pip install -e ".[lessons,export]"
	touch $@

$(VENV)/.test: pyproject.toml | $(PY)
	$(PY) -m pip install "torch==$(TORCH_VERSION)"
	$(PY) -m pip install -e ".[test]"
	touch $@ $(VENV)/.lessons

setup: js $(VENV)/.lessons
setup-test: js $(VENV)/.test

# Debian's Chromium drives the browser tests (never a downloaded browser build).
browser:
	@if [ -x /usr/bin/chromium ]; then echo "chromium: $$(/usr/bin/chromium --version 2>/dev/null)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	elif [ "$$CI" = true ]; then echo "CI: /usr/bin/chromium is missing and cannot be installed (not root)"; exit 1; \
	else echo "note: /usr/bin/chromium missing (install Debian's chromium); browser tests will be skipped"; fi

demo: setup
	@echo ""
	@echo "Starting JupyterLab on examples/ — open the http://127.0.0.1:$(PORT)/lab?token=... URL printed below."
	@echo "Start with 00_tour.ipynb. Notebook 7 is served by the same server: replace /lab by /tree in the URL."
	cd examples && ../$(BIN)/jupyter lab 00_tour.ipynb --ServerApp.ip=127.0.0.1 --ServerApp.port=$(PORT) \
	  $$( [ "$$(id -u)" = 0 ] && echo --ServerApp.allow_root=True ) \
	  --LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate

dev: setup
	$(PY) -m pip install -q watchfiles
	npm run dev & \
	cd examples && ANYWIDGET_HMR=1 ../$(BIN)/jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.port=$(PORT) \
	  $$( [ "$$(id -u)" = 0 ] && echo --ServerApp.allow_root=True )

js-test: node_modules/.package-lock.json
	npm test

typecheck: node_modules/.package-lock.json
	npm run typecheck

test: setup-test browser js-test typecheck lint
	$(PY) -m pytest tests $(PYTEST_ARGS)

export: setup
	$(PY) -m nbexplain.export "$(NB)" --execute -o "build/export/$(basename $(notdir $(NB))).html"

site: setup
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m nbexplain.site examples/*.ipynb -o build/site --jobs $(SITE_JOBS)

bench: setup-test
	@for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

lint: setup-test
	$(BIN)/ruff check nbexplain tests benchmarks

clean:
	rm -rf build dist nbexplain/static/*.js nbexplain/static/export tests/browser/artifacts .pytest_cache
