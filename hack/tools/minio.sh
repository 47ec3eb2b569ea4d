#!/usr/bin/env bash
# minio.sh installs the MinIO server into $TOOLS_BIN (default bin/test) for
# the S3 storage tests. Idempotent: returns at once when minio is already
# there. Needs only the Go module proxy (~2.5 min cold, ~150 MB binary).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOOLS_BIN="${TOOLS_BIN:-$root/bin/test}"
case "$TOOLS_BIN" in /*) ;; *) TOOLS_BIN="$root/$TOOLS_BIN" ;; esac

if [ -x "$TOOLS_BIN/minio" ]; then
	exit 0
fi
mkdir -p "$TOOLS_BIN"
echo "installing minio into $TOOLS_BIN (go install github.com/minio/minio@latest, takes a few minutes)" >&2
# GOFLAGS from the caller (e.g. -buildvcs=false) is kept; -mod is not
# meaningful outside the main module, so clear it.
GOTOOLCHAIN="${GOTOOLCHAIN:-local}" GOFLAGS="${GOFLAGS:-}" GOBIN="$TOOLS_BIN" \
	go install github.com/minio/minio@latest
test -x "$TOOLS_BIN/minio"
