#!/usr/bin/env bash
# Builds the pinned Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager),
# kubectl and Helm from Go modules, for Bakeoff's cluster and chart tests.
#
# Idempotent: a binary that already exists for its pinned version is not rebuilt. Binaries go to
# ${BAKEOFF_TOOLS_DIR:-<repo>/.tools}/bin-<component>-<version>/ and are linked from
# ${BAKEOFF_TOOLS_DIR}/bin/, which the test fixtures read. Prints that bin directory last.
#
# GOCACHE and GOMODCACHE stay at Go's defaults so that a second build on the same machine (or a CI
# cache of those folders) is fast.
#
# Usage: bash hack/build-tools.sh [kubernetes|etcd|helm ...]   (no argument: all of them)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="${BAKEOFF_TOOLS_DIR:-${repo}/.tools}"
mkdir -p "${tools_dir}/bin"
tools_dir="$(cd "${tools_dir}" && pwd)"
k8s_mod="${repo}/hack/tools/k8s"
helm_mod="${repo}/hack/tools/helm"

# The version a module requires, read from the go.mod that pins it (one source of truth).
required_version() {
  local gomod="$1" module="$2"
  awk -v m="${module}" '$1 == m && $2 ~ /^v/ {print $2; exit} $1 == "require" && $2 == m {print $3; exit}' "${gomod}"
}

k8s_version="$(required_version "${k8s_mod}/go.mod" k8s.io/kubernetes)"
etcd_version="$(required_version "${k8s_mod}/go.mod" go.etcd.io/etcd/server/v3)"
helm_version="$(required_version "${helm_mod}/go.mod" helm.sh/helm/v3)"
for v in k8s_version etcd_version helm_version; do
  if [[ -z "${!v}" ]]; then
    echo "build-tools: cannot read ${v} from hack/tools/*/go.mod" >&2
    exit 1
  fi
done

# Small, reproducible binaries; -p follows the machine's cores (2 on CI).
build_flags=(-trimpath "-p=$(nproc 2>/dev/null || echo 2)")

log() { echo "build-tools: $*" >&2; }

# go build into a temporary name, then rename, so an interrupted build never leaves a
# truncated binary that a later run would take as done.
go_build() {
  local moddir="$1" out="$2" ldflags="$3" pkg="$4"
  local started=$SECONDS
  log "building $(basename "${out}") from ${pkg}"
  (cd "${moddir}" && go build "${build_flags[@]}" -ldflags="${ldflags}" -o "${out}.partial" "${pkg}")
  mv -f "${out}.partial" "${out}"
  log "built $(basename "${out}") in $((SECONDS - started))s"
}

link() {
  ln -sfn "$1" "${tools_dir}/bin/$(basename "$1")"
}

build_kubernetes() {
  local dir="${tools_dir}/bin-kubernetes-${k8s_version}"
  mkdir -p "${dir}"
  local minor="${k8s_version#v1.}"
  minor="${minor%%.*}"
  # The version stamp that release builds carry; Helm compares charts' kubeVersion against it.
  local ld="-s -w"
  local key val
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    for key in gitVersion gitMajor gitMinor gitTreeState buildDate; do
      case "${key}" in
        gitVersion) val="${k8s_version}" ;;
        gitMajor) val="1" ;;
        gitMinor) val="${minor}" ;;
        gitTreeState) val="clean" ;;
        buildDate) val="1970-01-01T00:00:00Z" ;;
      esac
      ld+=" -X ${pkg}.${key}=${val}"
    done
  done
  local cmd
  for cmd in kube-apiserver kube-controller-manager kubectl; do
    if [[ ! -x "${dir}/${cmd}" ]]; then
      go_build "${k8s_mod}" "${dir}/${cmd}" "${ld}" "k8s.io/kubernetes/cmd/${cmd}"
    fi
    link "${dir}/${cmd}"
  done
}

build_etcd() {
  local dir="${tools_dir}/bin-etcd-${etcd_version}"
  mkdir -p "${dir}"
  if [[ ! -x "${dir}/etcd" ]]; then
    go_build "${k8s_mod}" "${dir}/etcd" "-s -w" go.etcd.io/etcd/server/v3
  fi
  link "${dir}/etcd"
}

build_helm() {
  local dir="${tools_dir}/bin-helm-${helm_version}"
  mkdir -p "${dir}"
  if [[ ! -x "${dir}/helm" ]]; then
    local ld="-s -w -X helm.sh/helm/v3/internal/version.version=${helm_version}"
    ld+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
    go_build "${helm_mod}" "${dir}/helm" "${ld}" helm.sh/helm/v3/cmd/helm
  fi
  link "${dir}/helm"
}

if ! command -v go >/dev/null 2>&1; then
  echo "build-tools: Go is not on PATH; install Go >= 1.26 (https://go.dev/dl/) and run again" >&2
  exit 1
fi

components=("$@")
if [[ ${#components[@]} -eq 0 ]]; then
  components=(etcd kubernetes helm)
fi
started=$SECONDS
for c in "${components[@]}"; do
  case "${c}" in
    kubernetes) build_kubernetes ;;
    etcd) build_etcd ;;
    helm) build_helm ;;
    *)
      echo "build-tools: unknown component '${c}'; choose from kubernetes, etcd, helm" >&2
      exit 2
      ;;
  esac
done
log "kubernetes ${k8s_version}, etcd ${etcd_version}, helm ${helm_version} ready in $((SECONDS - started))s"
echo "${tools_dir}/bin"
