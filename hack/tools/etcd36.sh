#!/usr/bin/env bash
# etcd36.sh installs a stock etcd 3.6.16 server as $TOOLS_BIN/etcd36 (default
# bin/test/etcd36) for the migration and storage-upgrade tests. It builds
# go.etcd.io/etcd/server/v3 in the helper module test/tools/etcd36, whose own
# go.mod pins the version (a plain `go install` fails: etcd's go.mod carries
# replace directives). Idempotent: returns at once when the binary is there.
# Needs only the Go module proxy (~1 min cold, ~30 MB binary).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOOLS_BIN="${TOOLS_BIN:-$root/bin/test}"
case "$TOOLS_BIN" in /*) ;; *) TOOLS_BIN="$root/$TOOLS_BIN" ;; esac

if [ -x "$TOOLS_BIN/etcd36" ]; then
	exit 0
fi
mkdir -p "$TOOLS_BIN"
echo "building etcd 3.6.16 into $TOOLS_BIN/etcd36 (from test/tools/etcd36, about a minute)" >&2
cd "$root/test/tools/etcd36"
GOTOOLCHAIN="${GOTOOLCHAIN:-local}" GOFLAGS="${GOFLAGS:-}" \
	go build -o "$TOOLS_BIN/etcd36.tmp" go.etcd.io/etcd/server/v3
# Check before installing, and without a pipe into grep -q: under pipefail,
# grep exiting at the first match can fail the pipeline with SIGPIPE.
out="$("$TOOLS_BIN/etcd36.tmp" --version)"
case "$out" in
*"etcd Version: 3.6.16"*) ;;
*) echo "etcd36: built binary reports: $out" >&2; rm -f "$TOOLS_BIN/etcd36.tmp"; exit 1 ;;
esac
mv "$TOOLS_BIN/etcd36.tmp" "$TOOLS_BIN/etcd36"
