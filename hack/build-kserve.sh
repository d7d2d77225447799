#!/usr/bin/env bash
# Builds KServe's controller manager (github.com/kserve/kserve/cmd/manager) from its Go module, for
# Bakeoff's end-to-end tests, which run it out-of-cluster against the test control plane.
#
# It has its own module, hack/kserve/go.mod: KServe's go.mod has replace directives (so
# `go install ...@<version>` is refused) and needs k8s.io/* v0.34, while hack/tools pins v0.37.
#
# Idempotent: an existing binary for the pinned version is not rebuilt. The binary goes to
# ${BAKEOFF_TOOLS_DIR:-<repo>/.tools}/bin-kserve-<version>/kserve-manager and is linked from
# ${BAKEOFF_TOOLS_DIR}/bin/kserve-manager, which the test fixtures read. Prints that bin directory last.
#
# GOCACHE and GOMODCACHE stay at Go's defaults so that a second build on the same machine (or a CI
# cache of those folders) is fast.
#
# Usage: bash hack/build-kserve.sh
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="${BAKEOFF_TOOLS_DIR:-${repo}/.tools}"
mkdir -p "${tools_dir}/bin"
tools_dir="$(cd "${tools_dir}" && pwd)"
kserve_mod="${repo}/hack/kserve"

log() { echo "build-kserve: $*" >&2; }

# The version hack/kserve/go.mod requires (one source of truth).
kserve_version="$(awk '$1 == "github.com/kserve/kserve" && $2 ~ /^v/ {print $2; exit}' "${kserve_mod}/go.mod")"
if [[ -z "${kserve_version}" ]]; then
  echo "build-kserve: cannot read the github.com/kserve/kserve version from hack/kserve/go.mod" >&2
  exit 1
fi

if ! command -v go >/dev/null 2>&1; then
  echo "build-kserve: Go is not on PATH; install Go >= 1.26 (https://go.dev/dl/) and run again" >&2
  exit 1
fi

folder="${tools_dir}/bin-kserve-${kserve_version}"
binary="${folder}/kserve-manager"
started=$SECONDS

if [[ ! -x "${binary}" ]]; then
  # Output lands in a scratch folder first, so an interrupted build never leaves a truncated
  # binary that a later run would take as done.
  scratch="$(mktemp -d "${tools_dir}/.build-kserve.XXXXXX")"
  trap 'rm -rf "${scratch}"' EXIT
  log "building kserve-manager (kserve ${kserve_version})"
  (cd "${kserve_mod}" && go build -trimpath -ldflags="-s -w" -o "${scratch}/" github.com/kserve/kserve/cmd/manager)
  mkdir -p "${folder}"
  mv -f "${scratch}/manager" "${binary}"
  rm -rf "${scratch}"
  trap - EXIT
  log "built kserve-manager in $((SECONDS - started))s"
fi

ln -sfn "${binary}" "${tools_dir}/bin/kserve-manager"
log "kserve ${kserve_version} ready in $((SECONDS - started))s"
echo "${tools_dir}/bin"
