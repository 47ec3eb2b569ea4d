#!/usr/bin/env bash
# restart-node.sh restarts the node as a reboot would: kubelet stops, every
# container is killed (SIGKILL, no grace), containerd and its shims stop;
# then containerd and kubelet start again with the same state on disk, and
# kubelet brings the pods back.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
stop kubelet
for t in $("${C[@]}" task ls -q 2>/dev/null); do "${C[@]}" task kill -s SIGKILL "$t" >/dev/null 2>&1 || true; done
stop containerd
for p in $(pgrep -f "containerd-shim-runc-v2 .*-address $D/containerd/containerd.sock" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
say "node down: kubelet, containers and containerd stopped"
start_containerd
start_kubelet
wait_node_ready
say "node back: containerd and kubelet started, node Ready"
