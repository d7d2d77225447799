#!/usr/bin/env bash
# Builds the pinned Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler), kubectl, Helm and kwok (fake GPU nodes) from Go modules, for Bakeoff's cluster,
# chart and end-to-end tests.
#
# Idempotent: a binary that already exists for its pinned version is not rebuilt. Binaries go to
# ${BAKEOFF_TOOLS_DIR:-<repo>/.tools}/bin-<component>-<version>/ and are linked from
# ${BAKEOFF_TOOLS_DIR}/bin/, which the test fixtures read. Prints that bin directory last.
#
# GOCACHE and GOMODCACHE stay at Go's defaults so that a second build on the same machine (or a CI
# cache of those folders) is fast.
#
# Usage: bash hack/build-tools.sh [kubernetes|etcd|helm|kwok ...]   (no argument: all of them)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="${BAKEOFF_TOOLS_DIR:-${repo}/.tools}"
mkdir -p "${tools_dir}/bin"
tools_dir="$(cd "${tools_dir}" && pwd)"
tools_mod="${repo}/hack/tools"

# The version a module requires, read from the go.mod that pins it (one source of truth).
required_version() {
  awk -v m="$1" '$1 == m && $2 ~ /^v/ {print $2; exit}' "${tools_mod}/go.mod"
}

k8s_version="$(required_version k8s.io/kubernetes)"
etcd_version="$(required_version go.etcd.io/etcd/server/v3)"
helm_version="$(required_version helm.sh/helm/v3)"
kwok_version="$(required_version sigs.k8s.io/kwok)"
for v in k8s_version etcd_version helm_version kwok_version; do
  if [[ -z "${!v}" ]]; then
    echo "build-tools: cannot read ${v} from hack/tools/go.mod" >&2
    exit 1
  fi
done

log() { echo "build-tools: $*" >&2; }

if ! command -v go >/dev/null 2>&1; then
  echo "build-tools: Go is not on PATH; install Go >= 1.26 (https://go.dev/dl/) and run again" >&2
  exit 1
fi

# Release version stamps: `kubectl version` and the API server report v1.x.y (Helm compares charts'
# kubeVersion against it) and `helm version` its release. -X for a package a binary does not
# link is ignored, so one set of flags serves every binary.
k8s_minor="${k8s_version#v1.}"
k8s_minor="${k8s_minor%%.*}"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X ${pkg}.gitVersion=${k8s_version} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${k8s_minor}"
  ldflags+=" -X ${pkg}.gitTreeState=clean -X ${pkg}.buildDate=1970-01-01T00:00:00Z"
done
ldflags+=" -X helm.sh/helm/v3/internal/version.version=${helm_version}"
ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"

# binary name -> (package, versioned folder)
declare -A package=(
  [etcd]=go.etcd.io/etcd/server/v3
  [kube-apiserver]=k8s.io/kubernetes/cmd/kube-apiserver
  [kube-controller-manager]=k8s.io/kubernetes/cmd/kube-controller-manager
  [kube-scheduler]=k8s.io/kubernetes/cmd/kube-scheduler
  [kubectl]=k8s.io/kubernetes/cmd/kubectl
  [helm]=helm.sh/helm/v3/cmd/helm
  [kwok]=sigs.k8s.io/kwok/cmd/kwok
)
declare -A folder=(
  [etcd]="bin-etcd-${etcd_version}"
  [kube-apiserver]="bin-kubernetes-${k8s_version}"
  [kube-controller-manager]="bin-kubernetes-${k8s_version}"
  [kube-scheduler]="bin-kubernetes-${k8s_version}"
  [kubectl]="bin-kubernetes-${k8s_version}"
  [helm]="bin-helm-${helm_version}"
  [kwok]="bin-kwok-${kwok_version}"
)
# `go build` names a binary after its package's last element, before any /vN suffix.
declare -A built_as=([etcd]=server)

components=("$@")
if [[ ${#components[@]} -eq 0 ]]; then
  components=(etcd kubernetes helm kwok)
fi
binaries=()
for c in "${components[@]}"; do
  case "${c}" in
    kubernetes) binaries+=(kube-apiserver kube-controller-manager kube-scheduler kubectl) ;;
    etcd | helm | kwok) binaries+=("${c}") ;;
    *)
      echo "build-tools: unknown component '${c}'; choose from kubernetes, etcd, helm" >&2
      exit 2
      ;;
  esac
done

started=$SECONDS
missing=()
for b in "${binaries[@]}"; do
  [[ -x "${tools_dir}/${folder[$b]}/${b}" ]] || missing+=("${b}")
done

if [[ ${#missing[@]} -gt 0 ]]; then
  # One `go build` for all missing binaries: their shared packages compile once and both cores
  # stay busy. Output lands in a scratch folder first, so an interrupted build never leaves a
  # truncated binary that a later run would take as done.
  scratch="$(mktemp -d "${tools_dir}/.build.XXXXXX")"
  trap 'rm -rf "${scratch}"' EXIT
  pkgs=()
  for b in "${missing[@]}"; do pkgs+=("${package[$b]}"); done
  log "building ${missing[*]} (kubernetes ${k8s_version}, etcd ${etcd_version}, helm ${helm_version})"
  (cd "${tools_mod}" && go build -trimpath -ldflags="${ldflags}" -o "${scratch}/" "${pkgs[@]}")
  for b in "${missing[@]}"; do
    mkdir -p "${tools_dir}/${folder[$b]}"
    mv -f "${scratch}/${built_as[$b]:-$b}" "${tools_dir}/${folder[$b]}/${b}"
  done
  rm -rf "${scratch}"
  trap - EXIT
  log "built ${missing[*]} in $((SECONDS - started))s"
fi

for b in "${binaries[@]}"; do
  ln -sfn "${tools_dir}/${folder[$b]}/${b}" "${tools_dir}/bin/${b}"
done
log "kubernetes ${k8s_version}, etcd ${etcd_version}, helm ${helm_version}, kwok ${kwok_version} ready in $((SECONDS - started))s"
echo "${tools_dir}/bin"
