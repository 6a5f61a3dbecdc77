# microadjust: the two set-up commands are `make demo` and `make test` (see README.md).
# Every target installs what it needs, so each works on a fresh machine.

PY      ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
PORT    ?= 8000

.PHONY: demo test install install-test build test-py test-js test-e2e bench clean

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[test]'
	touch $@

node_modules/.installed: package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

install: $(VENV)/.installed node_modules/.installed

build: node_modules/.installed
	npm run --silent build

# 1. Install everything and run the demo site on the embedded in-process store.
demo: install build
	$(VENV)/bin/microadjust serve --demo --port $(PORT)

# Installs system packages the tests need (Debian's chromium, redis-server) when missing.
install-test: install
	bash scripts/install-system-deps

# 2. Install what the tests need and run every test: pytest, JS unit tests, Playwright.
test: install-test build
	bash scripts/run-tests

test-py: install
	$(VPY) -m pytest -q

test-js: build
	npm run --silent test:js

test-e2e: install-test build
	npm run --silent test:e2e

# Benchmark side by side with the peers (docs/PERFORMANCE.md); BENCH_ARGS=--quick for a short run.
bench: install
	bench/run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) node_modules client_js/dist server/microadjust/static test-results
