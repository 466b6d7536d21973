#!/usr/bin/env bash
# Builds the local control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, kwok), helm, and the real node's kubelet, kube-proxy and CoreDNS
# from pinned versions through the Go module proxy,
# into a cache outside the repository keyed by version. A warm cache makes this a no-op.
# Also the kstatus checker (hack/kstatus, keyed by a hash of its sources), and Kueue with its
# CRD and webhook manifests from the module source (for tests/integration/test_kueue.py).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
CACHE="${INTERNLM_CACHE:-$HOME/.cache/internlm-operator}"
BIN="$CACHE/bin"
WORK="$CACHE/build"
mkdir -p "$BIN" "$WORK"
export GOFLAGS="-buildvcs=false -trimpath"
export CGO_ENABLED=0
# Kubernetes 1.36 misbehaves when built by Go 1.27 (/openapi/v2 comes out malformed).
export GOTOOLCHAIN=local

need_go() {
  command -v go >/dev/null || { echo "error: Go is required to build the cluster binaries (apt-get install golang or see README)" >&2; exit 1; }
  case "$(go env GOVERSION)" in
    go1.27*|go1.28*) echo "error: Kubernetes ${KUBERNETES_VERSION} must be built with Go 1.26.x (found $(go env GOVERSION))" >&2; exit 1;;
  esac
}

log() { printf '[build-binaries] %s\n' "$*" >&2; }

build_kubernetes() {
  local dest="$BIN/kubernetes-$KUBERNETES_VERSION"
  # The real node's kubelet and kube-proxy come from the same module graph, so one build
  # compiles the shared packages once.
  local b ok=1
  for b in kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy; do
    [[ -x "$dest/$b" ]] || ok=0
  done
  [[ $ok == 1 ]] && return
  need_go
  log "building Kubernetes $KUBERNETES_VERSION (cold: ~10-12 min on 2 cores)"
  local mod="$WORK/kubernetes-$KUBERNETES_VERSION"
  rm -rf "$mod" && mkdir -p "$mod"
  local staging_ver="v0${KUBERNETES_VERSION#v1}"
  # k8s.io/kubernetes replaces its staging modules with local paths, which `go install`
  # through the proxy refuses; a wrapper module replaces each with its published release.
  # The go command knows where its proxy is: `go list -m` fetches only the module's go.mod.
  local gomod gomod_path
  gomod_path="$(cd "$mod" && go list -m -f '{{.GoMod}}' "k8s.io/kubernetes@$KUBERNETES_VERSION")"
  gomod="$(cat "$gomod_path")"
  {
    echo "module internlm.io/localcluster"
    echo
    echo "go 1.26.0"
    echo
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    echo
    echo "replace ("
    grep -oE 'k8s\.io/[a-z0-9-]+ => \./staging/src/k8s\.io/[a-z0-9-]+' <<<"$gomod" \
      | awk -v v="$staging_ver" '{print "\t" $1 " => " $1 " " v}'
    echo ")"
  } >"$mod/go.mod"
  cat >"$mod/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
)
GO
  (cd "$mod" && go mod tidy)
  local minor="${KUBERNETES_VERSION#v1.}"; minor="${minor%%.*}"
  local ld="-s -w -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=$KUBERNETES_VERSION -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
  mkdir -p "$dest.tmp"
  (cd "$mod" && go build -ldflags "$ld" -o "$dest.tmp/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl \
      k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy)
  rm -rf "$dest" && mv "$dest.tmp" "$dest"
}

build_etcd() {
  local dest="$BIN/etcd-$ETCD_VERSION/etcd"
  [[ -x "$dest" ]] && return
  need_go
  log "building etcd $ETCD_VERSION (~1-2 min)"
  local mod="$WORK/etcd-$ETCD_VERSION"
  rm -rf "$mod" && mkdir -p "$mod"
  # etcd's own go.mod replaces its sibling modules with local paths; a wrapper calling
  # etcdmain.Main builds it from the published modules instead.
  cat >"$mod/go.mod" <<GOMOD
module internlm.io/localetcd

go 1.23
GOMOD
  cat >"$mod/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  (cd "$mod" && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" && go mod tidy)
  mkdir -p "$(dirname "$dest")"
  (cd "$mod" && go build -ldflags "-s -w" -o "$dest.tmp" . && mv "$dest.tmp" "$dest")
}

go_install() { # name module version
  local dest="$BIN/$1-$3/$1"
  [[ -x "$dest" ]] && return
  need_go
  log "building $1 $3"
  mkdir -p "$(dirname "$dest")"
  GOBIN="$(dirname "$dest")" go install -ldflags "-s -w" "$2@$3"
}

build_helm() {
  local dest="$BIN/helm-$HELM_VERSION/helm"
  # An older cached build lacked the version ldflags (it reported v3.19 and Kubernetes 1.20
  # capabilities offline); rebuild any binary that does not know its own version.
  if [[ -x "$dest" && "$("$dest" version --template '{{.Version}}' 2>/dev/null)" == "$HELM_VERSION" ]]; then return; fi
  need_go
  log "building helm $HELM_VERSION (~2 min)"
  mkdir -p "$(dirname "$dest")"
  local minor="${KUBERNETES_VERSION#v1.}"; minor="${minor%%.*}"
  # The same ldflags helm's own Makefile sets: its version, and the Kubernetes version that
  # offline `helm template`/`lint` assume (ours, so chart kubeVersion checks are meaningful).
  local ld="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  ld+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor"
  ld+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor"
  GOBIN="$(dirname "$dest")" go install -ldflags "$ld" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}

# The kstatus checker (hack/kstatus: Flux's status library over JSON objects), keyed by a hash of
# its main.go, go.mod and go.sum (the cli-utils and k8s.io versions are pinned there).
kstatus_dest() {
  local src="$here/../../hack/kstatus" h
  h="$(cat "$src/main.go" "$src/go.mod" "$src/go.sum" | sha256sum | cut -c1-12)"
  echo "$BIN/kstatus-$h/kstatus"
}

build_kstatus() {
  local dest src="$here/../../hack/kstatus"
  dest="$(kstatus_dest)"
  [[ -x "$dest" ]] && return
  need_go
  log "building kstatus checker (~2 min cold on 2 cores)"
  mkdir -p "$(dirname "$dest")"
  (cd "$src" && go build -ldflags "-s -w" -o "$dest.tmp" . && mv "$dest.tmp" "$dest")
}

# Kueue (cold: ~12 min on 2 busy cores). Its go.mod has no replace directives, so a plain
# `go install` builds it; the CRDs and webhook manifests come from the same module source in
# the Go module cache (`go list -m -f '{{.Dir}}'`) and are cached next to the binary.
build_kueue() {
  local dir="$BIN/kueue-$KUEUE_VERSION"
  [[ -x "$dir/kueue" && -f "$dir/webhook/manifests.yaml" && -d "$dir/crd" ]] && return
  need_go
  log "building Kueue $KUEUE_VERSION (cold: ~12 min on 2 busy cores)"
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
  local v="sigs.k8s.io/kueue/pkg/version"
  GOBIN="$dir.tmp" go install -ldflags "-s -w -X $v.GitVersion=$KUEUE_VERSION" \
    "sigs.k8s.io/kueue/cmd/kueue@$KUEUE_VERSION"
  local src
  src="$(cd "$dir.tmp" && go list -m -f '{{.Dir}}' "sigs.k8s.io/kueue@$KUEUE_VERSION")"
  mkdir -p "$dir.tmp/crd" "$dir.tmp/webhook"
  cp "$src"/config/components/crd/bases/*.yaml "$dir.tmp/crd/"
  cp "$src/config/components/webhook/manifests.yaml" "$dir.tmp/webhook/"
  chmod -R u+w "$dir.tmp"
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
}

what="${1:-all}"
case "$what" in
  all) build_etcd; go_install kwok sigs.k8s.io/kwok/cmd/kwok "$KWOK_VERSION"; build_kubernetes; build_helm
       go_install coredns github.com/coredns/coredns "$COREDNS_VERSION"; build_kstatus; build_kueue;;
  etcd) build_etcd;;
  kwok) go_install kwok sigs.k8s.io/kwok/cmd/kwok "$KWOK_VERSION";;
  kubernetes) build_kubernetes;;
  helm) build_helm;;
  # The real node's cluster DNS (~6 min cold on 2 cores: ~1.7 GB of modules).
  coredns) go_install coredns github.com/coredns/coredns "$COREDNS_VERSION";;
  kstatus) build_kstatus;;
  kueue) build_kueue;;
  # Builds it when needed, then prints the binary's path on stdout (for the tests).
  kstatus-path) build_kstatus; kstatus_dest;;
  *) echo "usage: $0 [all|etcd|kwok|kubernetes|helm|coredns|kstatus|kstatus-path|kueue]" >&2; exit 2;;
esac
