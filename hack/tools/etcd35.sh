#!/usr/bin/env bash
# etcd35.sh installs a stock etcd 3.5.35 server as $TOOLS_BIN/etcd35 (default
# bin/test/etcd35) for the migration and storage-upgrade tests; see etcd-old.bash.
# Needs only the Go module proxy (~1 min cold, ~30 MB binary).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/etcd-old.bash"
install_old_etcd etcd35 3.5.35
