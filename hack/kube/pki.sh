#!/usr/bin/env bash
# pki.sh makes the single-node Kubernetes' certificates and kubeconfigs in
# $1 (the harness's pki dir) with openssl: one CA for everything, short-lived
# (7 days) because the cluster lives for one test run. Idempotent.
set -euo pipefail
P=$1 NODE_IP=$2 NODE=$3
mkdir -p "$P"; cd "$P"
[ -f admin.kubeconfig ] && exit 0
o() { openssl "$@" 2>/dev/null; }
o req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 7 -subj "/CN=vetcd-kube-ca"
o genrsa -out sa.key 2048; o rsa -in sa.key -pubout -out sa.pub
# cert NAME SUBJECT [SANS]: a key and a certificate signed by the CA.
cert() {
	local ext="basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth"
	[ -n "${3:-}" ] && ext="$ext
subjectAltName=$3"
	o req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2"
	o x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" -days 7 -extfile <(echo "$ext")
	rm -f "$1.csr"
}
cert apiserver "/CN=kube-apiserver" "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:10.96.0.1,IP:$NODE_IP"
cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
cert kubelet-serving "/CN=$NODE" "DNS:$NODE,IP:$NODE_IP,IP:127.0.0.1"
# kubeconfig NAME SUBJECT: a client certificate and a kubeconfig using it.
kubeconfig() {
	cert "$1" "$2"
	cat > "$1.kubeconfig" <<EOK
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "https://$NODE_IP:6443", certificate-authority: $P/ca.crt}}]
users: [{name: $1, user: {client-certificate: $P/$1.crt, client-key: $P/$1.key}}]
contexts: [{name: local, context: {cluster: local, user: $1}}]
current-context: local
EOK
}
kubeconfig kubelet "/O=system:nodes/CN=system:node:$NODE"
kubeconfig kcm "/CN=system:kube-controller-manager"
kubeconfig sched "/CN=system:kube-scheduler"
kubeconfig proxy "/CN=system:kube-proxy"
kubeconfig admin "/O=system:masters/CN=vetcd-kube-admin"
