#!/usr/bin/env bash
# helm.sh installs the helm CLI into $TOOLS_BIN (default bin/test) for the
# chart tests, which render deploy/helm/vetcd with `helm template` and
# `helm lint`. The binary keeps helm's dependency tree out of vetcd's
# go.mod. Idempotent: returns at once when helm is already there. Needs only
# the Go module proxy (~2 min cold).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOOLS_BIN="${TOOLS_BIN:-$root/bin/test}"
case "$TOOLS_BIN" in /*) ;; *) TOOLS_BIN="$root/$TOOLS_BIN" ;; esac

if [ -x "$TOOLS_BIN/helm" ]; then
	exit 0
fi
version=v3.22.0
mkdir -p "$TOOLS_BIN"
echo "installing helm $version into $TOOLS_BIN (go install helm.sh/helm/v3/cmd/helm@$version)" >&2
GOTOOLCHAIN="${GOTOOLCHAIN:-local}" GOFLAGS="${GOFLAGS:-}" CGO_ENABLED=0 GOBIN="$TOOLS_BIN" \
	go install -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$version" "helm.sh/helm/v3/cmd/helm@$version"
"$TOOLS_BIN/helm" version --short >&2
