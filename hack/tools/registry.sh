#!/usr/bin/env bash
# registry.sh installs distribution's OCI registry (the reference registry
# behind Docker Hub) into $TOOLS_BIN (default bin/test) for the oci://
# storage tests. Idempotent: returns at once when registry is already there.
# Needs only the Go module proxy (~85 s cold, ~30 MB binary). The version is
# pinned so every run tests against the same server; override with
# REGISTRY_VERSION.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOOLS_BIN="${TOOLS_BIN:-$root/bin/test}"
case "$TOOLS_BIN" in /*) ;; *) TOOLS_BIN="$root/$TOOLS_BIN" ;; esac
REGISTRY_VERSION="${REGISTRY_VERSION:-v3.1.2}"

if [ -x "$TOOLS_BIN/registry" ]; then
	exit 0
fi
mkdir -p "$TOOLS_BIN"
echo "installing registry into $TOOLS_BIN (go install github.com/distribution/distribution/v3/cmd/registry@$REGISTRY_VERSION, about 1.5 min)" >&2
# GOFLAGS from the caller (e.g. -buildvcs=false) is kept; -mod is not
# meaningful outside the main module, so clear it.
GOTOOLCHAIN="${GOTOOLCHAIN:-local}" GOFLAGS="${GOFLAGS:-}" GOBIN="$TOOLS_BIN" \
	go install "github.com/distribution/distribution/v3/cmd/registry@$REGISTRY_VERSION"
test -x "$TOOLS_BIN/registry"
