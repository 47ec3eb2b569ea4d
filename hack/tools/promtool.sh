#!/usr/bin/env bash
# promtool.sh installs Prometheus's promtool into $TOOLS_BIN (default
# bin/test) for the monitoring mixin's tests (test/mixin), which run
# `promtool check rules` and `promtool test rules` on the chart's rules file
# deploy/helm/vetcd/files/prometheus-rules.yaml. The binary keeps
# Prometheus's dependency tree out of vetcd's go.mod. Idempotent: returns at
# once when promtool is already there. Needs only the Go module proxy
# (28 min cold measured on a 2-core machine busy with two other builds;
# it builds most of Prometheus).
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
	go install -trimpath -ldflags "-s -w -X github.com/prometheus/common/version.Version=$release" "github.com/prometheus/prometheus/cmd/promtool@$version"
"$TOOLS_BIN/promtool" --version >&2
