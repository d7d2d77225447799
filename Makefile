# Bakeoff developer entry points. `make demo` and `make test` are the two commands of the README.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: venv demo test test-deps lint generate bench playground

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip==26.3
	$(PIP) install --quiet -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

# The main job: a local bake-off of the quickstart variants on Bakeoff's simulator (no cluster, no GPU).
demo: venv
	$(VENV)/bin/bakeoff run examples/quickstart.yaml

# The whole Kubernetes loop on this machine, no GPU (README "The playground"); Ctrl-C stops it.
# Builds what it needs first (cached). PLAYGROUND_ARGS="--apply examples/quickstart.yaml" applies a file once up.
playground: venv
	bash hack/build-tools.sh >/dev/null
	bash hack/build-kserve.sh >/dev/null
	bash hack/fetch-crds.sh >/dev/null
	bash hack/build-prometheus.sh >/dev/null
	$(PY) -m tests.support.playground $(PLAYGROUND_ARGS)

# Regenerate CRDs, chart values/schema and the API reference from the Python models.
generate: venv
	bash hack/generate.sh

# Benchmarks print figures (speed and fidelity targets are checked here, not in the tests).
bench: venv
	$(PY) benchmarks/predict_table.py
	$(PY) benchmarks/sim_capacity.py
	$(PY) benchmarks/sim_fidelity.py
	$(PY) benchmarks/loadtest_accuracy.py
	$(PY) benchmarks/loadtest_capacity.py

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
