# catstream: streaming product categorisation for affiliate e-commerce.
#
# `make demo` and `make test` do all the set-up on a fresh machine (python3.11 on PATH,
# PyPI reachable): they create .venv, install pinned wheels, and start the local stack.
# `make` alone lists the targets.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

PYTHON_BOOT ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
# The stamp is newer than pyproject.toml once `pip install -e .[dev]` has succeeded with it.
STAMP := $(VENV)/.installed
# torch is pinned to the CPU build; any other spec would pull gigabytes of CUDA wheels.
TORCH := torch==2.13.0
# pip warns once per package about the machine's local index mirrors that lack it; noise.
# (pipefail keeps pip's exit status.)
PIP_QUIET := { grep -v 'is ignored: it is neither a file nor a directory' || true; }
# Extra pytest arguments: `make test PYTEST_ARGS='-k stack -x'`.
PYTEST_ARGS ?=
# `make test` runs the suite in this many pytest-xdist processes, each with a local stack
# of its own. The integration tests mostly wait on the pipeline (the 2-core CI machine sat
# 70% idle with one), so 2 halve the wall time: 46 -> 18 min on the same loaded machine.
# Test files stay whole on one process (--dist loadfile): module fixtures start once.
TEST_WORKERS ?= 2

.PHONY: help install tools test lint format typecheck unit demo bench stack-up stack-down stack-status clean

help: ## list the targets
	@echo "catstream: make TARGET"
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) \
		| awk 'BEGIN {FS = ":.*## "} {printf "  %-13s %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv with python3.11 and install catstream[dev] (idempotent)

# torch goes in first, on its own, so nothing else can resolve a different (CUDA) build of it.
$(STAMP): pyproject.toml
	@command -v $(PYTHON_BOOT) >/dev/null || { \
		echo "error: $(PYTHON_BOOT) not found; install Python 3.11 or run make PYTHON_BOOT=/path/to/python3.11"; \
		exit 1; }
	test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	@echo "installing $(TORCH) (CPU) ..."
	$(PY) -m pip install --quiet $(TORCH) 2>&1 | $(PIP_QUIET)
	@echo "installing catstream[dev] and its pinned dependencies ..."
	$(PY) -m pip install --quiet -e '.[dev]' 2>&1 | $(PIP_QUIET)
	touch $(STAMP)

# The hostile-input suite publishes some of its messages with Debian's kcat, the way other
# teams' services would; the test fails without it, so `make test` installs it when missing.
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
# The review app's browser test drives Debian's chromium through chromium-driver (Selenium);
# it fails without them, so `make test` installs them too.
tools: ## install the Debian tools the tests use (kcat, chromium, chromium-driver), if missing
	@command -v kcat >/dev/null || { \
		echo "installing kcat (apt-get) ..."; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq kcat >/dev/null; }
	@{ [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; } || { \
		echo "installing chromium and chromium-driver (apt-get) ..."; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) apt-get install -y -qq chromium chromium-driver >/dev/null; }

# Each phase prints its wall time; pytest lists the slowest tests (the suite must stay < 25 min).
# `make test TEST_WORKERS=1` runs it in one process (and one stack).
test: install tools ## ruff, mypy, then the whole suite (starts its own local stack)
	time $(MAKE) --no-print-directory lint
	time $(MAKE) --no-print-directory typecheck
	time $(BIN)/pytest --durations=15 -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: install ## ruff check and ruff format --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The Triton model files are all named model.py inside numbered version directories, which
# cannot be packages: `mypy .` excludes them (pyproject.toml) and each is checked on its own.
typecheck: install ## mypy (strict) on the tree and on each Triton model.py
	$(BIN)/mypy .
	for model in triton_models/repository/*/[0-9]*/model.py; do \
		[ -e "$$model" ] || continue; \
		$(BIN)/mypy "$$model"; \
	done

format: install ## ruff format and ruff check --fix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

unit: install ## only the unit tests (no services)
	$(BIN)/pytest -m 'not integration and not bench and not soak' tests/unit $(PYTEST_ARGS)

demo: install ## bring up the local stack and run the whole flow (catstream demo)
	$(BIN)/catstream demo

bench: install ## benchmarks (pytest -m bench); reports in bench-results/
	$(BIN)/pytest -m bench -s $(PYTEST_ARGS)

stack-up: install ## start the local stack (Kafka, Elasticsearch, Triton, Milvus)
	$(BIN)/catstream stack up

stack-down: install ## stop the local stack
	$(BIN)/catstream stack down

stack-status: install ## show each service of the local stack
	$(BIN)/catstream stack status

clean: ## stop the local stack, remove caches and build outputs (keeps .venv)
	if [ -x $(BIN)/catstream ]; then $(BIN)/catstream stack down || true; fi
	rm -rf .mypy_cache .ruff_cache .pytest_cache .hypothesis build dist *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -print0 | xargs -0 rm -rf
