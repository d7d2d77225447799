#!/usr/bin/env bash
# Builds Prometheus 3.x (prometheus and promtool) from its Go module, for Bakeoff's playground and
# the closed-loop tests, which scrape simulated replicas and query them like a cluster's Prometheus.
#
# Prometheus 3.x is published on the module proxy as github.com/prometheus/prometheus v0.3XX.Y
# (v0.310.0 is Prometheus 3.10.0). Its go.mod has a replace directive (so `go install ...@v0.310.0`
# is refused): hack/prometheus/go.mod requires it, copies that replace line and lists both commands
# in its `tool` block.
#
# Build tags: `netgo` as upstream's release build; `remove_all_sd`, upstream's switch that leaves out
# every service discovery but file, static and HTTP (no AWS, Azure, GCE, Kubernetes, ... discovery
# in the server; Bakeoff writes file_sd target lists). promtool keeps its own imports. The web UI is
# not included: its assets are built with npm and are not part of the Go module; the HTTP API is.
#
# Cost (2 cores shared with other work, empty GOCACHE): about 6 min 20 s, 7.5 CPU-minutes, 1.3 GB
# peak RSS; binaries 45 MB (prometheus) and 57 MB (promtool), stripped.
#
# Idempotent: an existing build of the pinned version is not rebuilt. Binaries go to
# ${BAKEOFF_TOOLS_DIR:-<repo>/.tools}/bin-prometheus-<release>/{prometheus,promtool} and are linked
# from ${BAKEOFF_TOOLS_DIR}/bin/, which the test fixtures read. Prints that bin directory last.
#
# GOCACHE and GOMODCACHE stay at Go's defaults so that a second build on the same machine (or a CI
# cache of those folders) is fast.
#
# Usage: bash hack/build-prometheus.sh
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="${BAKEOFF_TOOLS_DIR:-${repo}/.tools}"
mkdir -p "${tools_dir}/bin"
tools_dir="$(cd "${tools_dir}" && pwd)"
prometheus_mod="${repo}/hack/prometheus"
module=github.com/prometheus/prometheus

log() { echo "build-prometheus: $*" >&2; }

# The module version hack/prometheus/go.mod requires (one source of truth), e.g. v0.310.0.
module_version="$(awk -v m="${module}" '$1 == m && $2 ~ /^v/ {print $2; exit}' "${prometheus_mod}/go.mod")"
if [[ -z "${module_version}" ]]; then
  echo "build-prometheus: cannot read the ${module} version from hack/prometheus/go.mod" >&2
  exit 1
fi
# v0.3XX.Y is Prometheus 3.XX.Y (the scheme upstream publishes 3.x releases under).
if [[ ! "${module_version}" =~ ^v0\.3([0-9]{2})\.([0-9]+)$ ]]; then
  echo "build-prometheus: ${module} ${module_version} is not a Prometheus 3.x module version (v0.3XX.Y)" >&2
  exit 1
fi
release="3.$((10#${BASH_REMATCH[1]})).${BASH_REMATCH[2]}"

if ! command -v go >/dev/null 2>&1; then
  echo "build-prometheus: Go is not on PATH; install Go >= 1.26 (https://go.dev/dl/) and run again" >&2
  exit 1
fi

folder="${tools_dir}/bin-prometheus-v${release}"
binaries=(prometheus promtool)
started=$SECONDS

missing=()
for b in "${binaries[@]}"; do
  [[ -x "${folder}/${b}" ]] || missing+=("${b}")
done

if [[ ${#missing[@]} -gt 0 ]]; then
  # Stamped as upstream's release build stamps them (`prometheus --version`, the build_info metric);
  # a fixed date keeps the build reproducible.
  stamp="github.com/prometheus/common/version"
  ldflags="-s -w -X ${stamp}.Version=${release} -X ${stamp}.Revision=${module_version}"
  ldflags+=" -X ${stamp}.Branch=HEAD -X ${stamp}.BuildUser=bakeoff -X ${stamp}.BuildDate=19700101-00:00:00"
  # Output lands in a scratch folder first, so an interrupted build never leaves a truncated
  # binary that a later run would take as done.
  scratch="$(mktemp -d "${tools_dir}/.build-prometheus.XXXXXX")"
  trap 'rm -rf "${scratch}"' EXIT
  pkgs=()
  for b in "${missing[@]}"; do pkgs+=("${module}/cmd/${b}"); done
  log "building ${missing[*]} (prometheus ${release}, module ${module_version})"
  (cd "${prometheus_mod}" && go build -trimpath -tags=netgo,remove_all_sd -ldflags="${ldflags}" -o "${scratch}/" "${pkgs[@]}")
  mkdir -p "${folder}"
  for b in "${missing[@]}"; do
    mv -f "${scratch}/${b}" "${folder}/${b}"
  done
  rm -rf "${scratch}"
  trap - EXIT
  log "built ${missing[*]} in $((SECONDS - started))s"
fi

for b in "${binaries[@]}"; do
  ln -sfn "${folder}/${b}" "${tools_dir}/bin/${b}"
done
log "prometheus ${release} ready in $((SECONDS - started))s"
echo "${tools_dir}/bin"
