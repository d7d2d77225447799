#!/usr/bin/env bash
# Copies the upstream CustomResourceDefinitions that Bakeoff's chart and operator rely on (KServe,
# KEDA, prometheus-operator) out of their published Go modules, so tests install the real schemas
# rather than look-alikes. These versions are the tested chart prerequisites (see hack/README.md).
#
# Output: ${BAKEOFF_TOOLS_DIR:-<repo>/.tools}/crds-<versions>/{kserve,keda,prometheus-operator}/*.yaml,
# linked from ${BAKEOFF_TOOLS_DIR}/crds. Only CRDs sit directly in those three folders. Beside them,
# kserve-config/ holds the KServe configuration the end-to-end tests start its controller with, at
# the paths it has under KServe's config/ (configmap/inferenceservice.yaml,
# storagecontainers/default.yaml, webhook/manifests.yaml). Idempotent; prints the crds directory last.
set -euo pipefail

KSERVE_VERSION="v0.20.0"
KEDA_VERSION="v2.21.0"
PROMETHEUS_OPERATOR_VERSION="v0.89.0"

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="${BAKEOFF_TOOLS_DIR:-${repo}/.tools}"
mkdir -p "${tools_dir}"
tools_dir="$(cd "${tools_dir}" && pwd)"

# Bump when the selection of files below changes, so existing caches are refreshed.
LAYOUT="r2"

name="crds-kserve-${KSERVE_VERSION}-keda-${KEDA_VERSION}-prometheus-operator-${PROMETHEUS_OPERATOR_VERSION}-${LAYOUT}"
dest="${tools_dir}/${name}"

log() { echo "fetch-crds: $*" >&2; }

if ! command -v go >/dev/null 2>&1; then
  echo "fetch-crds: Go is not on PATH; install Go >= 1.26 and run again (it reads the Go module proxy)" >&2
  exit 1
fi

# The folder of a module version in the module cache (downloading it through GOPROXY if needed).
module_dir() {
  local spec="$1" json dir
  # Outside any module, so no go.mod or go.work of the repository is consulted.
  json="$(cd / && GOFLAGS=-mod=mod go mod download -json "${spec}")" || {
    echo "fetch-crds: cannot download ${spec} from the Go module proxy:" >&2
    echo "${json}" >&2
    exit 1
  }
  dir="$(printf '%s\n' "${json}" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  if [[ -z "${dir}" || ! -d "${dir}" ]]; then
    echo "fetch-crds: no folder for ${spec}: ${json}" >&2
    exit 1
  fi
  printf '%s\n' "${dir}"
}

copy() {
  local src="$1" subdir="$2"
  if [[ ! -f "${src}" ]]; then
    echo "fetch-crds: expected CRD file is missing: ${src}" >&2
    exit 1
  fi
  mkdir -p "${tmp}/${subdir}"
  cp "${src}" "${tmp}/${subdir}/"
}

if [[ ! -f "${dest}/VERSIONS" ]]; then
  tmp="$(mktemp -d "${tools_dir}/.${name}.XXXXXX")"
  trap 'rm -rf "${tmp}"' EXIT

  kserve="$(module_dir "github.com/kserve/kserve@${KSERVE_VERSION}")"
  # TrainedModel and InferenceGraph: KServe's controller manager runs their controllers too;
  # ClusterStorageContainer: what it resolves a storageUri with.
  for f in inferenceservices servingruntimes clusterservingruntimes trainedmodels inferencegraphs \
    clusterstoragecontainer/serving.kserve.io_clusterstoragecontainers; do
    case "${f}" in
      */*) copy "${kserve}/config/crd/full/${f}.yaml" kserve ;;
      *) copy "${kserve}/config/crd/full/serving.kserve.io_${f}.yaml" kserve ;;
    esac
  done
  for f in configmap/inferenceservice storagecontainers/default webhook/manifests; do
    copy "${kserve}/config/${f}.yaml" "kserve-config/${f%/*}"
  done

  keda="$(module_dir "github.com/kedacore/keda/v2@${KEDA_VERSION}")"
  for f in scaledobjects triggerauthentications clustertriggerauthentications; do
    copy "${keda}/config/crd/bases/keda.sh_${f}.yaml" keda
  done

  promop="$(module_dir "github.com/prometheus-operator/prometheus-operator@${PROMETHEUS_OPERATOR_VERSION}")"
  for f in podmonitors servicemonitors prometheusrules; do
    copy "${promop}/example/prometheus-operator-crd/monitoring.coreos.com_${f}.yaml" prometheus-operator
  done

  cat >"${tmp}/VERSIONS" <<EOF
kserve ${KSERVE_VERSION} github.com/kserve/kserve config/crd/full
kserve-config ${KSERVE_VERSION} github.com/kserve/kserve config/{configmap,storagecontainers,webhook}
keda ${KEDA_VERSION} github.com/kedacore/keda/v2 config/crd/bases
prometheus-operator ${PROMETHEUS_OPERATOR_VERSION} github.com/prometheus-operator/prometheus-operator example/prometheus-operator-crd
EOF
  # Module cache files are read-only and mktemp folders private; the copies are neither.
  chmod -R u+w,go+rX "${tmp}"
  rm -rf "${dest}"
  mv "${tmp}" "${dest}"
  trap - EXIT
  log "copied CRDs into ${dest}"
fi

ln -sfn "${name}" "${tools_dir}/crds"
echo "${tools_dir}/crds"
