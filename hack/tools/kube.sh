#!/usr/bin/env bash
# kube.sh installs what the single-node Kubernetes of hack/kube runs, into
# $TOOLS_BIN/kube (default bin/test/kube):
#   kube          kubelet, kube-controller-manager, kube-scheduler, kube-proxy and
#                 kubectl in one binary (test/tools/kubernetes/kube), linked
#                 under each name; k8s.io/kubernetes v1.37.2
#   containerd, containerd-shim-runc-v2, ctr   containerd v2.4.2
#   coredns       CoreDNS v1.15.0
#   pause         the pod sandbox's process (test/tools/kubernetes/pause)
# all through the Go module proxy, and from Debian: runc, the CNI plugins,
# iptables, conntrack and nftables (apt-get, when missing).
# Idempotent: returns at once when everything is there. Cold, one at a time on
# 2 cores: ~9 min (most of it the kube binary, which shares kube-apiserver's
# build cache).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOOLS_BIN="${TOOLS_BIN:-$root/bin/test}"
case "$TOOLS_BIN" in /*) ;; *) TOOLS_BIN="$root/$TOOLS_BIN" ;; esac
out="$TOOLS_BIN/kube"
k8s=v1.37.2 containerd=v2.4.2 coredns=v1.15.0
stamp="$out/.installed-$k8s-$containerd-$coredns"

debian=(runc containernetworking-plugins iptables conntrack nftables)
missing=()
for p in "${debian[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
	echo "installing ${missing[*]} from Debian (apt-get)" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null ||
		{ apt-get update >/dev/null && apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; }
fi
if [ -e "$stamp" ]; then
	exit 0
fi
mkdir -p "$out"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}" GOFLAGS="${GOFLAGS:-}" CGO_ENABLED=0
t0=$SECONDS

# Each binary is built to a temporary name and renamed, so an interrupted
# build never leaves a half-written binary behind.
tmp="$out/.build.$$"
trap 'rm -f "$tmp"' EXIT
pkg=k8s.io/component-base/version
echo "building kubelet, kube-controller-manager, kube-scheduler, kube-proxy, kubectl $k8s as one binary into $out (~6 min cold)" >&2
(cd "$root/test/tools/kubernetes" && go build -trimpath -o "$tmp" \
	-ldflags "-s -w -X $pkg.gitVersion=$k8s -X $pkg.gitMajor=1 -X $pkg.gitMinor=37 -X $pkg.gitTreeState=clean" ./kube)
mv "$tmp" "$out/kube"
for n in kubelet kube-controller-manager kube-scheduler kube-proxy kubectl; do ln -sf kube "$out/$n"; done
(cd "$root/test/tools/kubernetes" && go build -trimpath -ldflags "-s -w" -o "$tmp" ./pause)
mv "$tmp" "$out/pause"

echo "installing containerd $containerd (go install, ~1.5 min cold)" >&2
GOBIN="$out" go install -trimpath -tags no_btrfs -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$containerd" \
	"github.com/containerd/containerd/v2/cmd/containerd@$containerd" \
	"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$containerd" \
	"github.com/containerd/containerd/v2/cmd/ctr@$containerd"
echo "installing CoreDNS $coredns (go install, ~4 min cold)" >&2
GOBIN="$out" go install -trimpath -ldflags "-s -w" "github.com/coredns/coredns@$coredns"

"$out/kubelet" --version >&2
"$out/containerd" --version >&2
"$out/coredns" -version >&2
touch "$stamp"
echo "kube tools installed in $((SECONDS - t0)) s" >&2
