#!/usr/bin/env bash
# kube-apiserver.sh builds a real kube-apiserver (k8s.io/kubernetes v1.37.2)
# into $TOOLS_BIN (default bin/test) for the Kubernetes tests: the topology
# source against a real API server, and kube-apiserver on top of vetcd.
# Idempotent: returns at once when the binary is already there.
#
# The helper module test/tools/kubernetes pins k8s.io/kubernetes and
# replaces each of its staging modules with the proxy's v0.37.2 (kubernetes'
# own go.mod points them at local directories). Needs only the Go module
# proxy. Cold: ~4.5 min, ~2.8 GB memory, ~2.7 GB build cache, ~171 MB binary.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOOLS_BIN="${TOOLS_BIN:-$root/bin/test}"
case "$TOOLS_BIN" in /*) ;; *) TOOLS_BIN="$root/$TOOLS_BIN" ;; esac

if [ -x "$TOOLS_BIN/kube-apiserver" ]; then
	exit 0
fi
mkdir -p "$TOOLS_BIN"
version=v1.37.2
pkg=k8s.io/component-base/version
echo "building kube-apiserver $version into $TOOLS_BIN (k8s.io/kubernetes through the module proxy, takes ~5 minutes)" >&2
cd "$root/test/tools/kubernetes"
# Build to a temporary name and rename, so an interrupted build never
# leaves a half-written binary that the check above would accept.
tmp="$TOOLS_BIN/.kube-apiserver.$$"
trap 'rm -f "$tmp"' EXIT
GOTOOLCHAIN="${GOTOOLCHAIN:-local}" GOFLAGS="${GOFLAGS:-}" CGO_ENABLED=0 \
	go build -trimpath -o "$tmp" \
	-ldflags "-s -w -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=37 -X $pkg.gitTreeState=clean" \
	k8s.io/kubernetes/cmd/kube-apiserver
mv "$tmp" "$TOOLS_BIN/kube-apiserver"
trap - EXIT
"$TOOLS_BIN/kube-apiserver" --version >&2
