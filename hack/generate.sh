#!/usr/bin/env bash
# Regenerates every generated file of Bakeoff from the Python models: the CRDs in
# charts/bakeoff/crds, docs/api.md, and the chart's values.yaml and values.schema.json.
# tests/chart/test_generated.py fails when any of them is stale.
#
# Usage: bash hack/generate.sh        (PYTHON defaults to the repository's .venv)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-${repo}/.venv/bin/python}"
cd "${repo}"
"${python}" -m bakeoff_operator.crdgen --write
"${python}" -m bakeoff_operator.chartgen --write
