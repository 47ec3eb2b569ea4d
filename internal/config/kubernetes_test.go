package config

import (
	"reflect"
	"strings"
	"testing"
)

// kubeBase is a chart-like config: everything but the identity is in the
// file, the identity comes from the downward API.
const kubeBase = `
dataDir: /var/lib/vetcd/data
tls:
  caFile: /var/run/vetcd/tls/ca.crt
  certFile: /var/run/vetcd/tls/tls.crt
  keyFile: /var/run/vetcd/tls/tls.key
topology:
  source: kubernetes
  kubernetes:
    service: vetcd-headless
`

func TestKubernetesDerivation(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		env     map[string]string
		want    Config // only the compared fields
		wantK   Kubernetes
		wantErr []string
	}{
		{
			name: "pod identity from the downward API, production URLs",
			yaml: kubeBase,
			env:  map[string]string{"POD_NAME": "vetcd-2", "POD_NAMESPACE": "team-a"},
			want: Config{
				Name:             "vetcd-2",
				ClientURL:        "https://vetcd-2.vetcd-headless.team-a.svc:2379",
				PeerURL:          "https://vetcd-2.vetcd-headless.team-a.svc:2380",
				AgentURL:         "https://vetcd-2.vetcd-headless.team-a.svc:2381",
				MetricsURL:       "http://vetcd-2.vetcd-headless.team-a.svc:2382",
				ListenClientURL:  "https://0.0.0.0:2379",
				ListenPeerURL:    "https://0.0.0.0:2380",
				ListenAgentURL:   "https://0.0.0.0:2381",
				ListenMetricsURL: "http://0.0.0.0:2382",
			},
			wantK: Kubernetes{Namespace: "team-a", PodName: "vetcd-2", StatefulSet: "vetcd", Service: "vetcd-headless", ClusterRecord: "vetcd-cluster", ListenHost: "0.0.0.0",
				Ports: KubernetesPorts{Client: 2379, Peer: 2380, Agent: 2381, Metrics: 2382}},
		},
		{
			name: "a release name with dashes keeps them in the StatefulSet name",
			yaml: strings.Replace(kubeBase, "service: vetcd-headless", "namespace: ns\n    service: my-etcd-headless", 1),
			env:  map[string]string{"POD_NAME": "my-etcd-10"},
			want: Config{Name: "my-etcd-10", ClientURL: "https://my-etcd-10.my-etcd-headless.ns.svc:2379"},
			wantK: Kubernetes{Namespace: "ns", PodName: "my-etcd-10", StatefulSet: "my-etcd", Service: "my-etcd-headless", ClusterRecord: "my-etcd-cluster",
				ListenHost: "0.0.0.0", Ports: KubernetesPorts{Client: 2379, Peer: 2380, Agent: 2381, Metrics: 2382}},
		},
		{
			name: "config beats the environment",
			yaml: kubeBase + "    namespace: from-file\n    podName: vetcd-1\n",
			env:  map[string]string{"POD_NAME": "vetcd-7", "POD_NAMESPACE": "from-env"},
			want: Config{Name: "vetcd-1", ClientURL: "https://vetcd-1.vetcd-headless.from-file.svc:2379"},
			wantK: Kubernetes{Namespace: "from-file", PodName: "vetcd-1", StatefulSet: "vetcd", Service: "vetcd-headless", ClusterRecord: "vetcd-cluster",
				ListenHost: "0.0.0.0", Ports: KubernetesPorts{Client: 2379, Peer: 2380, Agent: 2381, Metrics: 2382}},
		},
		{
			name: "one machine: advertised host and a port stride per ordinal",
			yaml: kubeBase + "    advertiseHost: 127.0.0.1\n    portStride: 10\n    ports: {client: 30000, peer: 30001, agent: 30002, metrics: 30003}\n",
			env:  map[string]string{"POD_NAME": "vetcd-2", "POD_NAMESPACE": "ns"},
			want: Config{
				Name:             "vetcd-2",
				ClientURL:        "https://127.0.0.1:30020",
				PeerURL:          "https://127.0.0.1:30021",
				AgentURL:         "https://127.0.0.1:30022",
				MetricsURL:       "http://127.0.0.1:30023",
				ListenClientURL:  "https://127.0.0.1:30020",
				ListenPeerURL:    "https://127.0.0.1:30021",
				ListenAgentURL:   "https://127.0.0.1:30022",
				ListenMetricsURL: "http://127.0.0.1:30023",
			},
			wantK: Kubernetes{Namespace: "ns", PodName: "vetcd-2", StatefulSet: "vetcd", Service: "vetcd-headless", ClusterRecord: "vetcd-cluster",
				AdvertiseHost: "127.0.0.1", ListenHost: "127.0.0.1", PortStride: 10,
				Ports: KubernetesPorts{Client: 30000, Peer: 30001, Agent: 30002, Metrics: 30003}},
		},
		{
			name: "an explicit URL equal to the derived one is accepted (Marshal round trip)",
			yaml: kubeBase + "clientURL: https://vetcd-0.vetcd-headless.ns.svc:2379\n",
			env:  map[string]string{"POD_NAME": "vetcd-0", "POD_NAMESPACE": "ns"},
			want: Config{Name: "vetcd-0", ClientURL: "https://vetcd-0.vetcd-headless.ns.svc:2379"},
			wantK: Kubernetes{Namespace: "ns", PodName: "vetcd-0", StatefulSet: "vetcd", Service: "vetcd-headless", ClusterRecord: "vetcd-cluster",
				ListenHost: "0.0.0.0", Ports: KubernetesPorts{Client: 2379, Peer: 2380, Agent: 2381, Metrics: 2382}},
		},
		{
			name:    "no pod name anywhere",
			yaml:    kubeBase,
			env:     map[string]string{"POD_NAMESPACE": "ns"},
			wantErr: []string{"topology.kubernetes.podName: required: set it, name, or the POD_NAME environment variable"},
		},
		{
			name:    "no namespace anywhere",
			yaml:    kubeBase,
			env:     map[string]string{"POD_NAME": "vetcd-0"},
			wantErr: []string{"topology.kubernetes.namespace: required: set it or the POD_NAMESPACE environment variable"},
		},
		{
			name:    "a pod name without an ordinal",
			yaml:    kubeBase,
			env:     map[string]string{"POD_NAME": "vetcd", "POD_NAMESPACE": "ns"},
			wantErr: []string{`ordinal: required: name "vetcd" does not end in "-N"`},
		},
		{
			name:    "a pod that is not of the named StatefulSet",
			yaml:    kubeBase + "    statefulSet: other\n",
			env:     map[string]string{"POD_NAME": "vetcd-0", "POD_NAMESPACE": "ns"},
			wantErr: []string{`topology.kubernetes.podName "vetcd-0": a pod of StatefulSet "other" with ordinal 0 is named "other-0"`},
		},
		{
			name:    "a member name that is not the pod name",
			yaml:    kubeBase + "name: etcd-0\n",
			env:     map[string]string{"POD_NAME": "vetcd-0", "POD_NAMESPACE": "ns"},
			wantErr: []string{`name "etcd-0": differs from the pod name "vetcd-0"`},
		},
		{
			name:    "an explicit URL that disagrees with the derived one",
			yaml:    kubeBase + "peerURL: https://10.1.2.3:2380\n",
			env:     map[string]string{"POD_NAME": "vetcd-0", "POD_NAMESPACE": "ns"},
			wantErr: []string{`peerURL "https://10.1.2.3:2380": topology.source kubernetes derives it as "https://vetcd-0.vetcd-headless.ns.svc:2380"`},
		},
		{
			name:    "bad names and ports",
			yaml:    kubeBase + "    clusterRecord: Not_A_Name\n    ports: {client: 70000}\n    portStride: -1\n",
			env:     map[string]string{"POD_NAME": "vetcd-0", "POD_NAMESPACE": "ns"},
			wantErr: []string{`topology.kubernetes.clusterRecord "Not_A_Name": must be a DNS label`, "topology.kubernetes.ports.client 70000: must be 1-65535", "topology.kubernetes.portStride -1: must not be negative"},
		},
		{
			name:    "an unknown key under topology.kubernetes",
			yaml:    kubeBase + "    replicas: 3\n",
			env:     map[string]string{"POD_NAME": "vetcd-0", "POD_NAMESPACE": "ns"},
			wantErr: []string{`unknown key "topology.kubernetes.replicas"`},
		},
		{
			name:    "topology.kubernetes with the static source",
			yaml:    strings.Replace(kubeBase, "source: kubernetes", "source: static\n  file: /t.json", 1) + "clientURL: https://a:1\npeerURL: https://a:2\nagentURL: https://a:3\nname: vetcd-0\n",
			wantErr: []string{`topology.kubernetes: only for topology.source "kubernetes"`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{EnvPodName, EnvPodNamespace} {
				t.Setenv(k, tc.env[k])
			}
			c, err := Parse([]byte(tc.yaml))
			if err == nil {
				err = c.Validate()
			}
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatalf("no error; want %q", tc.wantErr)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q\ndoes not contain %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			check := func(key, got, want string) {
				if want != "" && got != want {
					t.Errorf("%s = %q, want %q", key, got, want)
				}
			}
			check("name", c.Name, tc.want.Name)
			check("clientURL", c.ClientURL, tc.want.ClientURL)
			check("peerURL", c.PeerURL, tc.want.PeerURL)
			check("agentURL", c.AgentURL, tc.want.AgentURL)
			check("metricsURL", c.MetricsURL, tc.want.MetricsURL)
			check("listenClientURL", c.ListenClientURL, tc.want.ListenClientURL)
			check("listenPeerURL", c.ListenPeerURL, tc.want.ListenPeerURL)
			check("listenAgentURL", c.ListenAgentURL, tc.want.ListenAgentURL)
			check("listenMetricsURL", c.ListenMetricsURL, tc.want.ListenMetricsURL)
			got := *c.Topology.Kubernetes
			if got.Namespace != tc.wantK.Namespace || got.PodName != tc.wantK.PodName || got.StatefulSet != tc.wantK.StatefulSet ||
				got.Service != tc.wantK.Service || got.ClusterRecord != tc.wantK.ClusterRecord || got.ListenHost != tc.wantK.ListenHost ||
				got.AdvertiseHost != tc.wantK.AdvertiseHost || got.PortStride != tc.wantK.PortStride || got.Ports != tc.wantK.Ports {
				t.Errorf("topology.kubernetes = %+v\nwant %+v", got, tc.wantK)
			}
			// Marshal → Parse → Validate gives the same config back.
			b, err := c.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			c2, err := Parse(b)
			if err == nil {
				err = c2.Validate()
			}
			if err != nil {
				t.Fatalf("round trip: %v\n%s", err, b)
			}
			if c2.ClientURL != c.ClientURL || c2.Name != c.Name || !reflect.DeepEqual(c2.Topology.Kubernetes, c.Topology.Kubernetes) {
				t.Errorf("round trip changed the config:\n%s", b)
			}
		})
	}
}

// Other replicas' URLs are derived the same way as one's own: replica 0's
// view of replica 2 equals replica 2's own config.
func TestKubernetesReplicaAgreesWithSelf(t *testing.T) {
	for _, stride := range []int{0, 10} {
		configs := make([]Config, 3)
		for i := range configs {
			y := kubeBase + "    namespace: ns\n"
			if stride > 0 {
				y += "    advertiseHost: 127.0.0.1\n    portStride: 10\n"
			}
			t.Setenv(EnvPodName, "vetcd-"+string(rune('0'+i)))
			c, err := Parse([]byte(y))
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			configs[i] = c
		}
		seen := map[string]bool{}
		for i, c := range configs {
			r := configs[0].Topology.Kubernetes.Replica(i)
			if r.Name != c.Name || r.ClientURL != c.ClientURL || r.PeerURL != c.PeerURL || r.AgentURL != c.AgentURL || r.MetricsURL != c.MetricsURL {
				t.Errorf("stride %d: replica 0 derives %+v for ordinal %d, which has %s %s %s %s %s", stride, r, i, c.Name, c.ClientURL, c.PeerURL, c.AgentURL, c.MetricsURL)
			}
			for _, u := range []string{r.ClientURL, r.PeerURL, r.AgentURL, r.MetricsURL} {
				if seen[u] {
					t.Errorf("stride %d: URL %s used twice", stride, u)
				}
				seen[u] = true
			}
		}
	}
}

func TestKubernetesDNSNamesCoverEveryReplica(t *testing.T) {
	k := Kubernetes{Namespace: "ns", StatefulSet: "vetcd", Service: "vetcd-headless", ExtraSANs: []string{"vetcd.ns.svc"}}
	names := k.DNSNames()
	for _, want := range []string{"*.vetcd-headless.ns.svc", "*.vetcd-headless.ns.svc.cluster.local", "vetcd.ns.svc"} {
		found := false
		for _, n := range names {
			found = found || n == want
		}
		if !found {
			t.Errorf("DNSNames %v lacks %q", names, want)
		}
	}
}
