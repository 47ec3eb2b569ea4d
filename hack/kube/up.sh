#!/usr/bin/env bash
# up.sh starts a single-node Kubernetes v1.37.2 on this machine, with no
# registry and nothing that leaves the machine: containerd with runc, etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy,
# CoreDNS, a bridge CNI and local PersistentVolumes. test/kubernetes starts it
# through `make e2e-kube`; down.sh undoes everything it does.
#
#   KUBE_DIR   work dir (default /tmp/vetcd-kube): pki, configs, logs, state,
#              pids/ (one file per process), saved kernel settings
#   KUBE_BIN   the tools of hack/tools/kube.sh (default bin/test/kube)
#   KUBE_IMAGES  docker-archive tarballs to import (default $KUBE_DIR/images)
#
# The node's address is 198.51.100.2 on an interface of its own (vetcd-node0) (never
# the machine's address); pods get 10.244.0.0/24 on the bridge vetcd-cni0,
# Services 10.96.0.0/16, with no masquerading. A start after a crashed run
# first runs down.sh on the same KUBE_DIR. Facts behind each setting:
# ../../../shared/TESTING.md ("A real single-node Kubernetes").
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
for t in kube kubelet containerd containerd-shim-runc-v2 ctr coredns; do
	[ -x "$B/$t" ] || { echo "up.sh: $B/$t is missing: run make test-tools (hack/tools/kube.sh)" >&2; exit 1; }
done
[ -x "$ETCD" ] || { echo "up.sh: $ETCD is missing: run make test-tools" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "up.sh: must run as root (kubelet, containerd, network setup)" >&2; exit 1; }
if [ -d "$D/pids" ] && [ -n "$(ls -A "$D/pids" 2>/dev/null)" ]; then
	echo "up.sh: $D has state of an earlier run; running down.sh first" >&2
	"$root/hack/kube/down.sh"
fi
mkdir -p "$D"/{pids,log,kubelet/root,kubelet/manifests,cni/conf,cni/ipam,pv}
# Kernel settings kubelet and kube-proxy change, saved once (down.sh restores).
if [ ! -f "$D/pids/sysctl.saved" ]; then
	for s in net.ipv4.ip_forward net.ipv4.conf.all.route_localnet vm.overcommit_memory kernel.panic kernel.panic_on_oops \
		net.netfilter.nf_conntrack_max net.netfilter.nf_conntrack_tcp_timeout_established \
		net.netfilter.nf_conntrack_tcp_timeout_close_wait net.bridge.bridge-nf-call-iptables; do
		v=$(sysctl -n "$s" 2>/dev/null) && echo "$s=$v"
	done >"$D/pids/sysctl.saved.tmp"
	mv "$D/pids/sysctl.saved.tmp" "$D/pids/sysctl.saved"
fi
# What down.sh may delete: nft tables and directories that were not here before.
[ -f "$D/pids/nft.before" ] || { nft list tables 2>/dev/null || true; } >"$D/pids/nft.before"
if [ ! -f "$D/pids/paths.before" ]; then
	for p in /run/containerd /var/lib/kubelet /var/log/pods /var/log/containers; do [ -e "$p" ] && echo "$p"; done >"$D/pids/paths.before" || true
fi
sysctl -qw net.ipv4.ip_forward=1
# The node's address, on an interface of its own. This kernel has no dummy
# link type; a bridge with no ports serves the same: a local address.
ip link show vetcd-node0 >/dev/null 2>&1 || {
	ip link add vetcd-node0 type bridge && ip addr add $NODE_IP/32 dev vetcd-node0 && ip link set vetcd-node0 up
}
echo "vetcd-node0" >"$D/pids/links"

"$root/hack/kube/pki.sh" "$D/pki" $NODE_IP $NODE
P=$D/pki

# containerd: the CRI with runc; CAP_SYS_RESOURCE is not in this machine's
# bounding set, so negative oom_score_adj must not be asked for.
mkdir -p "$D/containerd"
cat >"$D/containerd/config.toml" <<EOF
version = 3
root = "$D/containerd/root"
state = "$D/containerd/state"
[grpc]
  address = "$D/containerd/containerd.sock"
[ttrpc]
  address = "$D/containerd/containerd.sock.ttrpc"
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "vetcd.local/pause:v1"
[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "$D/cni/conf"
EOF
cat >"$D/cni/conf/10-vetcd.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "vetcd-kube", "plugins": [
  {"type": "bridge", "bridge": "vetcd-cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.0.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$D/cni/ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
EOF
start_containerd
for f in "$IMAGES"/*.tar; do
	[ -e "$f" ] || { echo "up.sh: no images in $IMAGES (make image; test/kubernetes builds the others)" >&2; exit 1; }
	"${C[@]}" images import "$f" >/dev/null
done
say "containerd up; images: $("${C[@]}" images ls -q | grep -v sha256 | tr '\n' ' ')"

mkdir -p "$D/etcd"
start etcd "$ETCD" --name kube --data-dir "$D/etcd/data" --listen-client-urls http://127.0.0.1:23790 \
	--advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 \
	--initial-advertise-peer-urls http://127.0.0.1:23800 --initial-cluster kube=http://127.0.0.1:23800 \
	--listen-metrics-urls http://127.0.0.1:23810
# This machine's hostname resolves to 127.0.0.1: the apiserver must reach
# kubelet by the node's InternalIP, not its name.
start kube-apiserver "$root/bin/test/kube-apiserver" --etcd-servers http://127.0.0.1:23790 \
	--bind-address $NODE_IP --advertise-address $NODE_IP --secure-port 6443 \
	--kubelet-preferred-address-types InternalIP \
	--tls-cert-file "$P/apiserver.crt" --tls-private-key-file "$P/apiserver.key" --client-ca-file "$P/ca.crt" \
	--kubelet-client-certificate "$P/apiserver-kubelet-client.crt" --kubelet-client-key "$P/apiserver-kubelet-client.key" \
	--kubelet-certificate-authority "$P/ca.crt" --service-account-key-file "$P/sa.pub" \
	--service-account-signing-key-file "$P/sa.key" --service-account-issuer https://kubernetes.default.svc.cluster.local \
	--service-cluster-ip-range 10.96.0.0/16 --authorization-mode Node,RBAC --allow-privileged=true \
	--enable-admission-plugins NodeRestriction
wait_for 90 "kube-apiserver /readyz" kubectl get --raw /readyz
say "kube-apiserver ready"
start kube-controller-manager "$B/kube-controller-manager" --kubeconfig "$P/kcm.kubeconfig" \
	--authentication-kubeconfig "$P/kcm.kubeconfig" --authorization-kubeconfig "$P/kcm.kubeconfig" \
	--bind-address 127.0.0.1 --service-account-private-key-file "$P/sa.key" --root-ca-file "$P/ca.crt" \
	--use-service-account-credentials=true --cluster-signing-cert-file "$P/ca.crt" --cluster-signing-key-file "$P/ca.key" \
	--allocate-node-cidrs=false --service-cluster-ip-range 10.96.0.0/16 --leader-elect=false
start kube-scheduler "$B/kube-scheduler" --kubeconfig "$P/sched.kubeconfig" \
	--authentication-kubeconfig "$P/sched.kubeconfig" --authorization-kubeconfig "$P/sched.kubeconfig" \
	--bind-address 127.0.0.1 --leader-elect=false

# kubelet: cgroups here are v1 (hybrid), swap may be on, no systemd.
cat >"$D/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication: {anonymous: {enabled: false}, webhook: {enabled: true}, x509: {clientCAFile: $P/ca.crt}}
authorization: {mode: Webhook}
address: $NODE_IP
healthzBindAddress: 127.0.0.1
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$D/containerd/containerd.sock
clusterDomain: cluster.local
clusterDNS: [10.96.0.10]
resolvConf: /etc/resolv.conf
tlsCertFile: $P/kubelet-serving.crt
tlsPrivateKeyFile: $P/kubelet-serving.key
staticPodPath: $D/kubelet/manifests
podCIDR: 10.244.0.0/24
maxPods: 40
evictionHard: {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
enforceNodeAllocatable: ["pods"]
EOF
start_kubelet
cat >"$D/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $P/proxy.kubeconfig}
mode: iptables
clusterCIDR: 10.244.0.0/16
hostnameOverride: $NODE
bindAddress: 127.0.0.1
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
conntrack: {maxPerCore: 0}
EOF
start kube-proxy "$B/kube-proxy" --config "$D/kube-proxy.yaml"
wait_node_ready
say "node Ready"
wait_for 60 "the default ServiceAccount" kubectl -n default get serviceaccount default
"$root/hack/kube/addons.sh" "$D" $NODE
kubectl -n kube-system rollout status deployment/coredns --timeout=120s >/dev/null
say "CoreDNS ready; cluster up (KUBECONFIG=$KUBECONFIG)"
