#!/usr/bin/env bash
# Regenerates every generated file of Bakeoff from the Python models: the CRDs in
# charts/bakeoff/crds, docs/api.md, the chart's values.yaml and values.schema.json, and the files the
# chart ships from bakeoff_operator.observability: the Prometheus rules (files/bakeoff-rules.yaml) and
# the Grafana dashboards (files/dashboards/*.json).
# tests/chart/test_chart_generated.py fails when any of them is stale.
#
# Usage: bash hack/generate.sh        (PYTHON defaults to the repository's .venv)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-${repo}/.venv/bin/python}"
cd "${repo}"
"${python}" -m bakeoff_operator.crdgen --write
"${python}" -m bakeoff_operator.chartgen --write
