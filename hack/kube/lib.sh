# lib.sh: what up.sh and restart-node.sh share (sourced, not run): the
# node's paths and addresses, and how containerd and kubelet start.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
D=${KUBE_DIR:-/tmp/vetcd-kube}
B=${KUBE_BIN:-$root/bin/test/kube}
IMAGES=${KUBE_IMAGES:-$D/images}
ETCD=${KUBE_ETCD:-$root/bin/test/etcd36}
P=$D/pki
NODE=vetcd-node NODE_IP=198.51.100.2
export KUBECONFIG=$P/admin.kubeconfig PATH=$B:$PATH
C=(ctr -a "$D/containerd/containerd.sock" -n k8s.io)
t0=$SECONDS

say() { echo "[${0##*/} $((SECONDS - t0))s] $*" >&2; }
# start NAME COMMAND...: in the background, its PID in pids/NAME.pid.
start() { local n=$1; shift; nohup "$@" >>"$D/log/$n.log" 2>&1 & echo $! >"$D/pids/$n.pid"; }
# wait_for SECONDS WHAT COMMAND...: until COMMAND succeeds, or fail naming WHAT.
wait_for() {
	local secs=$1 what=$2; shift 2
	for _ in $(seq $((secs * 4))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.25; done
	echo "${0##*/}: $what not within ${secs}s; logs in $D/log" >&2
	exit 1
}
# stop NAME: SIGTERM, 10 s, then SIGKILL.
stop() {
	local n=$1 p
	if [ -f "$D/pids/$n.pid" ] && p=$(cat "$D/pids/$n.pid") && kill -0 "$p" 2>/dev/null; then
		kill "$p"
		for _ in $(seq 40); do kill -0 "$p" 2>/dev/null || break; sleep 0.25; done
		kill -0 "$p" 2>/dev/null && kill -9 "$p"
	fi
	rm -f "$D/pids/$n.pid"
}
start_containerd() {
	start containerd "$B/containerd" --config "$D/containerd/config.toml"
	wait_for 20 "containerd" "${C[@]}" version
}
start_kubelet() {
	start kubelet "$B/kubelet" --config "$D/kubelet/config.yaml" --kubeconfig "$P/kubelet.kubeconfig" \
		--root-dir "$D/kubelet/root" --node-ip $NODE_IP --hostname-override $NODE
}
wait_node_ready() {
	wait_for 120 "node $NODE Ready" bash -c "kubectl get node $NODE --no-headers | grep -qw Ready"
}
