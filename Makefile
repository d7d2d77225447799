# Bakeoff developer entry points. `make demo` and `make test` are the two commands of the README.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: venv demo test lint

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip==26.3
	$(PIP) install --quiet -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# Everything the test tiers need: the Python environment, the control plane and Helm built from Go
# modules (cached by version), the upstream CRDs, headless Chromium, real vLLM on CPU.
test-deps: venv
	bash hack/test-deps.sh

test: test-deps
	$(MAKE) lint
	$(PY) -m pytest
