#!/usr/bin/env bash
# down.sh stops the single-node Kubernetes of up.sh and leaves the machine as
# it found it. Order matters: workloads first (so the CNI releases veths and
# addresses), then kube-proxy's rules, kubelet, containers through ctr,
# containerd and its shims, the control plane; then mounts, network
# namespaces, links, iptables chains, cgroups and kernel settings. Safe to run
# twice, and after a crash of up.sh or of a test.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[ -d "$D" ] || exit 0
alive() { [ -f "$D/pids/$1.pid" ] && kill -0 "$(cat "$D/pids/$1.pid")" 2>/dev/null; }

if alive kube-apiserver && alive kubelet && alive containerd; then
	kubectl delete statefulsets,deployments,replicasets,daemonsets,jobs,pods --all -A --wait=false --grace-period=1 >/dev/null 2>&1
	for _ in $(seq 60); do [ "$(kubectl get pods -A --no-headers 2>/dev/null | wc -l)" = 0 ] && break; sleep 1; done
fi
stop kube-proxy
[ -x "$B/kube-proxy" ] && "$B/kube-proxy" --cleanup >/dev/null 2>&1
stop kubelet
if alive containerd; then
	for t in $("${C[@]}" task ls -q 2>/dev/null); do "${C[@]}" task kill -s SIGKILL "$t" >/dev/null 2>&1; done
	sleep 1
	for t in $("${C[@]}" task ls -q 2>/dev/null); do "${C[@]}" task delete -f "$t" >/dev/null 2>&1; done
	for c in $("${C[@]}" containers ls -q 2>/dev/null); do "${C[@]}" containers delete "$c" >/dev/null 2>&1; done
fi
stop containerd
for n in kube-scheduler kube-controller-manager kube-apiserver etcd; do stop "$n"; done
# Shims and containers that outlived containerd (their command line names our socket).
for p in $(pgrep -f "containerd-shim-runc-v2 .*-address $D/containerd/containerd.sock" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done

# Mounts under our dirs (deepest first), the CRI's netns, sandbox shm mounts.
mount | awk '{print $3}' | grep -E "^($D/|/run/containerd/io.containerd|/run/netns/cni-|/run/containerd/)" | sort -r |
	xargs -r -n1 umount -l 2>/dev/null
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^cni-'); do ip netns del "$ns"; done
ip link del vetcd-cni0 2>/dev/null
ip link del vetcd-node0 2>/dev/null
for l in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | grep '^veth' | cut -d@ -f1); do
	ip link show "$l" 2>/dev/null | grep -q 'master vetcd-cni0' && ip link del "$l"
done

# iptables: drop jumps into KUBE-/CNI- chains from the built-in chains, then
# flush and delete those chains.
for ipt in iptables ip6tables; do
	command -v $ipt >/dev/null || continue
	for t in nat filter mangle; do
		$ipt -t $t -S 2>/dev/null | grep -E '^-A [A-Z]+ .*-j (KUBE|CNI)-' | grep -vE '^-A (KUBE|CNI)-' | sed 's/^-A //' |
			while read -r r; do eval "$ipt -t $t -D $r"; done
		for ch in $($ipt -t $t -S 2>/dev/null | awk '/^-N (CNI-|KUBE-)/{print $2}'); do $ipt -t $t -F "$ch"; done
		for ch in $($ipt -t $t -S 2>/dev/null | awk '/^-N (CNI-|KUBE-)/{print $2}'); do $ipt -t $t -X "$ch"; done
	done
done
# nftables tables kube-proxy or iptables-nft made that were not there before up.sh.
if command -v nft >/dev/null && [ -f "$D/pids/nft.before" ]; then
	nft list tables 2>/dev/null | while read -r _ fam name; do
		grep -qx "table $fam $name" "$D/pids/nft.before" || nft delete table "$fam" "$name" 2>/dev/null
	done
fi

# cgroups kubelet and containerd made (depth first).
for h in /sys/fs/cgroup/*/; do
	for top in kubepods k8s.io; do [ -d "$h$top" ] && find "$h$top" -depth -type d -exec rmdir {} \; 2>/dev/null; done
done
for p in /run/containerd /var/lib/kubelet /var/log/pods /var/log/containers; do
	[ -f "$D/pids/paths.before" ] && ! grep -qx "$p" "$D/pids/paths.before" && rm -rf "$p" 2>/dev/null
done

# Kernel settings back as up.sh found them.
if [ -f "$D/pids/sysctl.saved" ]; then
	while IFS== read -r k v; do sysctl -qw "$k=$v" 2>/dev/null; done <"$D/pids/sysctl.saved"
	rm -f "$D/pids/sysctl.saved"
fi
rm -f "$D/pids/links" "$D/pids/nft.before" "$D/pids/paths.before"
# State, so the next up.sh starts a new cluster; images, pki and logs stay.
for d in etcd kubelet containerd cni pv; do rm -rf --one-file-system "${D:?}/$d"; done
echo "down: done" >&2
