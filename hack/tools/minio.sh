#!/usr/bin/env bash
# minio.sh installs the MinIO server into $TOOLS_BIN (default bin/test) for
# the S3 storage tests. Idempotent: returns at once when minio is already
# there. Needs only the Go module proxy (2.5-5.5 min cold, ~150 MB binary).
#
# MinIO has no semver tags, so @latest is whatever commit the proxy saw
# last; the default pins the pseudo-version measured to build with Go
# 1.26.8 here. MINIO_VERSION=latest follows upstream. Built static
# (CGO_ENABLED=0): test/pods runs it as a pod, from an image with no libc.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOOLS_BIN="${TOOLS_BIN:-$root/bin/test}"
case "$TOOLS_BIN" in /*) ;; *) TOOLS_BIN="$root/$TOOLS_BIN" ;; esac
MINIO_VERSION="${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}"

if [ -x "$TOOLS_BIN/minio" ] && go version -m "$TOOLS_BIN/minio" 2>/dev/null | grep -q 'CGO_ENABLED=0'; then
	exit 0
fi
mkdir -p "$TOOLS_BIN"
echo "installing minio@$MINIO_VERSION into $TOOLS_BIN (go install, takes a few minutes)" >&2
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" # outside any module: go install pkg@version ignores ours anyway
GOTOOLCHAIN="${GOTOOLCHAIN:-local}" GOFLAGS=-buildvcs=false GOBIN="$TOOLS_BIN" CGO_ENABLED=0 \
	go install "github.com/minio/minio@$MINIO_VERSION"
test -x "$TOOLS_BIN/minio"
