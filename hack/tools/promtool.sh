#!/usr/bin/env bash
# promtool.sh installs Prometheus's promtool into $TOOLS_BIN (default
# bin/test) for the monitoring mixin's tests (test/mixin), which run
# `promtool check rules` and `promtool test rules` on the chart's rules file
# deploy/helm/vetcd/files/prometheus-rules.yaml. The binary keeps
# Prometheus's dependency tree out of vetcd's go.mod. The remove_all_sd tag
# leaves out every service-discovery plugin (cloud SDKs, client-go), which
# rule checks and tests never use: cold (empty module and build caches) it
# took 3m07s on 2 busy cores (215 s user CPU, 0.95 GB peak memory, 1.8 GB of
# caches) instead of 28 min with them. Idempotent: returns at once when
# promtool is already there. Needs only the Go module proxy.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOOLS_BIN="${TOOLS_BIN:-$root/bin/test}"
case "$TOOLS_BIN" in /*) ;; *) TOOLS_BIN="$root/$TOOLS_BIN" ;; esac

if [ -x "$TOOLS_BIN/promtool" ]; then
	exit 0
fi
# github.com/prometheus/prometheus v0.316.0 is Prometheus 3.16.0 (go 1.26.7).
version=v0.316.0
release=3.16.0
mkdir -p "$TOOLS_BIN"
echo "installing promtool $version into $TOOLS_BIN (go install github.com/prometheus/prometheus/cmd/promtool@$version)" >&2
GOTOOLCHAIN="${GOTOOLCHAIN:-local}" GOFLAGS="${GOFLAGS:-}" CGO_ENABLED=0 GOBIN="$TOOLS_BIN" \
	go install -tags remove_all_sd -trimpath -ldflags "-s -w -X github.com/prometheus/common/version.Version=$release" "github.com/prometheus/prometheus/cmd/promtool@$version"
"$TOOLS_BIN/promtool" --version >&2
