#!/usr/bin/env bash
# etcd36.sh installs a stock etcd 3.6.16 server as $TOOLS_BIN/etcd36 (default
# bin/test/etcd36) for the migration and storage-upgrade tests; see etcd-old.bash.
# Needs only the Go module proxy (~1 min cold, ~30 MB binary).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/etcd-old.bash"
install_old_etcd etcd36 3.6.16
