package config

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Defaults of topology.kubernetes. The ports are etcd's own (2379, 2380)
// followed by the agent's and the metrics endpoint's.
const (
	// DefaultKubernetesClientPort is the etcd client port of every pod.
	DefaultKubernetesClientPort = 2379
	// DefaultKubernetesPeerPort is the etcd peer port of every pod.
	DefaultKubernetesPeerPort = 2380
	// DefaultKubernetesAgentPort is the agent endpoint's port.
	DefaultKubernetesAgentPort = 2381
	// DefaultKubernetesMetricsPort serves /metrics, /healthz and /readyz
	// over plain http, so that the kubelet can probe it.
	DefaultKubernetesMetricsPort = 2382
	// DefaultKubernetesListenHost is what every port binds to in a pod:
	// all IPv4 addresses, as the pod IP is not known in advance.
	DefaultKubernetesListenHost = "0.0.0.0"
	// DefaultClusterRecordSuffix names the ConfigMap holding the cluster
	// record: <statefulSet> + DefaultClusterRecordSuffix.
	DefaultClusterRecordSuffix = "-cluster"
	// EnvPodName and EnvPodNamespace are the environment variables (set
	// from the downward API) that give a replica its identity in a pod.
	EnvPodName = "POD_NAME"
	// EnvPodNamespace is the pod's namespace; see EnvPodName.
	EnvPodNamespace = "POD_NAMESPACE"
)

// Kubernetes is topology.kubernetes: where the StatefulSet that owns the
// replicas lives, and how a replica's endpoints are derived from its pod
// name, so that a chart's config file stays a few lines long.
//
// Replica N of StatefulSet S behind headless Service H in namespace NS is
// the pod S-N, reachable as S-N.H.NS.svc on the four ports. Validate fills
// every empty field with its default and derives the replica's own name and
// URLs; Replica derives any other replica's.
type Kubernetes struct {
	// Kubeconfig is a kubeconfig file; empty uses the in-cluster config
	// (the pod's service account).
	Kubeconfig string `yaml:"kubeconfig,omitempty"`
	// Namespace holds the StatefulSet, its pods and the cluster record;
	// default $POD_NAMESPACE.
	Namespace string `yaml:"namespace,omitempty"`
	// PodName is this replica's pod; default $POD_NAME, else name. It is
	// the member name, and its "-N" suffix the ordinal.
	PodName string `yaml:"podName,omitempty"`
	// StatefulSet is the StatefulSet whose spec.replicas is the desired
	// count; default the pod name without its "-N" suffix.
	StatefulSet string `yaml:"statefulSet,omitempty"`
	// Service is the headless Service (the StatefulSet's serviceName) that
	// gives each pod its DNS name; default <statefulSet>-headless.
	Service string `yaml:"service,omitempty"`
	// ClusterRecord is the ConfigMap holding the bootstrap guard's record;
	// default <statefulSet>-cluster.
	ClusterRecord string `yaml:"clusterRecord,omitempty"`
	// TLSSecret, when set, is a Secret of type kubernetes.io/tls (plus
	// ca.crt) that vetcd creates at first start with a new CA and a member
	// certificate whose SANs cover every replica, then writes to the files
	// named by tls.caFile, tls.certFile and tls.keyFile. Empty: the files
	// are supplied (for example a mounted Secret of the user's).
	TLSSecret string `yaml:"tlsSecret,omitempty"`
	// ExtraSANs are DNS names added to a generated certificate (a client
	// Service's name, for instance).
	ExtraSANs []string `yaml:"extraSANs,omitempty"`
	// Ports are the four ports of every replica.
	Ports KubernetesPorts `yaml:"ports,omitempty"`
	// ListenHost is the address every port binds to; default 0.0.0.0, or
	// AdvertiseHost when that is set.
	ListenHost string `yaml:"listenHost,omitempty"`
	// AdvertiseHost replaces every replica's DNS name in the advertised
	// URLs. It is for running several replicas on one machine (tests):
	// with 127.0.0.1 and a PortStride, replica N uses port + N*PortStride.
	AdvertiseHost string `yaml:"advertiseHost,omitempty"`
	// PortStride shifts replica N's ports by N*PortStride; 0 in pods,
	// where every replica has its own IP.
	PortStride int `yaml:"portStride,omitempty"`
}

// KubernetesPorts are the ports of one replica.
type KubernetesPorts struct {
	Client  int `yaml:"client,omitempty"`
	Peer    int `yaml:"peer,omitempty"`
	Agent   int `yaml:"agent,omitempty"`
	Metrics int `yaml:"metrics,omitempty"`
}

// KubernetesReplica is a replica's name and URLs as topology.kubernetes
// derives them.
type KubernetesReplica struct {
	Name       string
	ClientURL  string
	PeerURL    string
	AgentURL   string
	MetricsURL string
}

// Host is the DNS name of replica ordinal: <statefulSet>-N.<service>.<ns>.svc,
// or AdvertiseHost when set. k must have its defaults filled (Validate).
func (k *Kubernetes) Host(ordinal int) string {
	if k.AdvertiseHost != "" {
		return k.AdvertiseHost
	}
	return fmt.Sprintf("%s.%s.%s.svc", k.PodNameOf(ordinal), k.Service, k.Namespace)
}

// PodNameOf is the name of the pod with this ordinal.
func (k *Kubernetes) PodNameOf(ordinal int) string {
	return k.StatefulSet + "-" + strconv.Itoa(ordinal)
}

// Replica derives the name and URLs of the replica with this ordinal. k
// must have its defaults filled (Validate).
func (k *Kubernetes) Replica(ordinal int) KubernetesReplica {
	host := k.Host(ordinal)
	shift := ordinal * k.PortStride
	u := func(scheme string, port int) string {
		return scheme + "://" + net.JoinHostPort(host, strconv.Itoa(port+shift))
	}
	return KubernetesReplica{
		Name:       k.PodNameOf(ordinal),
		ClientURL:  u("https", k.Ports.Client),
		PeerURL:    u("https", k.Ports.Peer),
		AgentURL:   u("https", k.Ports.Agent),
		MetricsURL: u("http", k.Ports.Metrics),
	}
}

// listenURL is where replica ordinal binds scheme://ListenHost:port.
func (k *Kubernetes) listenURL(scheme string, port, ordinal int) string {
	return scheme + "://" + net.JoinHostPort(k.ListenHost, strconv.Itoa(port+ordinal*k.PortStride))
}

// DNSNames are the SANs a certificate needs for every replica of this
// StatefulSet, whatever the replica count: the wildcard of the headless
// Service in its short and cluster.local forms, plus ExtraSANs.
func (k *Kubernetes) DNSNames() []string {
	base := k.Service + "." + k.Namespace + ".svc"
	names := []string{"*." + base, "*." + base + ".cluster.local", base, base + ".cluster.local", "localhost"}
	return append(names, k.ExtraSANs...)
}

// kubernetesIdentity fills name from topology.kubernetes.podName or
// $POD_NAME before the ordinal is derived from it.
func (c *Config) kubernetesIdentity(getenv func(string) string) []error {
	k := c.Topology.Kubernetes
	if k == nil {
		k = &Kubernetes{}
		c.Topology.Kubernetes = k
	}
	if k.PodName == "" {
		k.PodName = getenv(EnvPodName)
	}
	switch {
	case k.PodName == "" && c.Name == "":
		return []error{fmt.Errorf("topology.kubernetes.podName: required: set it, name, or the %s environment variable", EnvPodName)}
	case k.PodName == "":
		k.PodName = c.Name
	case c.Name == "":
		c.Name = k.PodName
	case c.Name != k.PodName:
		return []error{fmt.Errorf("name %q: differs from the pod name %q; in Kubernetes the member name is the pod name", c.Name, k.PodName)}
	}
	return nil
}

// deriveKubernetes fills the defaults of topology.kubernetes and this
// replica's URLs. It runs after the ordinal is known. A URL key set in the
// file must equal the derived value: two sources for one fact would let
// replicas disagree about each other's addresses.
func (c *Config) deriveKubernetes(getenv func(string) string) []error {
	k := c.Topology.Kubernetes
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if k.Namespace == "" {
		k.Namespace = getenv(EnvPodNamespace)
	}
	if k.Namespace == "" {
		add("topology.kubernetes.namespace: required: set it or the %s environment variable", EnvPodNamespace)
	}
	if k.StatefulSet == "" {
		if i := strings.LastIndexByte(k.PodName, '-'); i > 0 {
			k.StatefulSet = k.PodName[:i]
		}
	}
	if k.Service == "" {
		k.Service = k.StatefulSet + "-headless"
	}
	if k.ClusterRecord == "" {
		k.ClusterRecord = k.StatefulSet + DefaultClusterRecordSuffix
	}
	for _, f := range []struct {
		key, val string
	}{
		{"topology.kubernetes.namespace", k.Namespace},
		{"topology.kubernetes.statefulSet", k.StatefulSet},
		{"topology.kubernetes.service", k.Service},
		{"topology.kubernetes.clusterRecord", k.ClusterRecord},
		{"topology.kubernetes.tlsSecret", k.TLSSecret},
	} {
		if f.val != "" && !isDNSLabel(f.val) {
			add("%s %q: must be a DNS label (lower case letters, digits and '-', at most 63)", f.key, f.val)
		}
	}
	if want := k.PodNameOf(c.OrdinalValue()); k.StatefulSet != "" && k.PodName != want {
		add("topology.kubernetes.podName %q: a pod of StatefulSet %q with ordinal %d is named %q", k.PodName, k.StatefulSet, c.OrdinalValue(), want)
	}
	for _, p := range []struct {
		key string
		val *int
		def int
	}{
		{"client", &k.Ports.Client, DefaultKubernetesClientPort},
		{"peer", &k.Ports.Peer, DefaultKubernetesPeerPort},
		{"agent", &k.Ports.Agent, DefaultKubernetesAgentPort},
		{"metrics", &k.Ports.Metrics, DefaultKubernetesMetricsPort},
	} {
		if *p.val == 0 {
			*p.val = p.def
		}
		if *p.val < 1 || *p.val > 65535 {
			add("topology.kubernetes.ports.%s %d: must be 1-65535", p.key, *p.val)
		}
	}
	if k.PortStride < 0 {
		add("topology.kubernetes.portStride %d: must not be negative", k.PortStride)
	}
	if k.ListenHost == "" {
		k.ListenHost = DefaultKubernetesListenHost
		if k.AdvertiseHost != "" {
			k.ListenHost = k.AdvertiseHost
		}
	}
	if len(errs) > 0 {
		return errs
	}

	self := k.Replica(c.OrdinalValue())
	for _, u := range []struct {
		key       string
		val       *string
		want      string
		advertise bool
	}{
		{"clientURL", &c.ClientURL, self.ClientURL, true},
		{"peerURL", &c.PeerURL, self.PeerURL, true},
		{"agentURL", &c.AgentURL, self.AgentURL, true},
		{"metricsURL", &c.MetricsURL, self.MetricsURL, true},
		{"listenClientURL", &c.ListenClientURL, k.listenURL("https", k.Ports.Client, c.OrdinalValue()), false},
		{"listenPeerURL", &c.ListenPeerURL, k.listenURL("https", k.Ports.Peer, c.OrdinalValue()), false},
		{"listenAgentURL", &c.ListenAgentURL, k.listenURL("https", k.Ports.Agent, c.OrdinalValue()), false},
		{"listenMetricsURL", &c.ListenMetricsURL, k.listenURL("http", k.Ports.Metrics, c.OrdinalValue()), false},
	} {
		switch {
		case *u.val == "":
			*u.val = u.want
		case *u.val != u.want && u.advertise:
			add("%s %q: topology.source kubernetes derives it as %q; remove it (or change topology.kubernetes)", u.key, *u.val, u.want)
		}
	}
	return errs
}

// isDNSLabel reports whether s is an RFC 1123 label, as Kubernetes object
// names in these roles must be.
func isDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
		case r == '-' && i > 0 && i < len(s)-1:
		default:
			return false
		}
	}
	return true
}

// errKubernetesOnly is returned for topology.kubernetes with another source.
var errKubernetesOnly = errors.New("topology.kubernetes: only for topology.source \"kubernetes\"")
