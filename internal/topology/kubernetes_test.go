package topology_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/vetcd/vetcd/internal/config"
	"github.com/vetcd/vetcd/internal/pki"
	"github.com/vetcd/vetcd/internal/topology"
	"github.com/vetcd/vetcd/test/kube"
)

// kubeConfig is a validated replica config for pod vetcd-<ordinal>.
func kubeConfig(t *testing.T, ns, kubeconfig string, ordinal int, dir string) config.Config {
	t.Helper()
	c := config.Default()
	c.Name = "vetcd-" + string(rune('0'+ordinal))
	c.DataDir = filepath.Join(dir, "data")
	c.TLS = config.TLS{CAFile: filepath.Join(dir, "tls", "ca.crt"), CertFile: filepath.Join(dir, "tls", "tls.crt"), KeyFile: filepath.Join(dir, "tls", "tls.key")}
	c.Topology = config.Topology{Source: config.TopologyKubernetes, Kubernetes: &config.Kubernetes{
		Kubeconfig: kubeconfig, Namespace: ns, Service: "vetcd-headless", TLSSecret: "vetcd-tls",
		AdvertiseHost: "127.0.0.1", PortStride: 10,
		Ports: config.KubernetesPorts{Client: 31000, Peer: 31001, Agent: 31002, Metrics: 31003},
	}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

func statefulSet(ns string, replicas int32) *appsv1.StatefulSet {
	labels := map[string]string{"app.kubernetes.io/name": "vetcd"}
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "vetcd", Namespace: ns},
		Spec: appsv1.StatefulSetSpec{
			Replicas:            &replicas,
			ServiceName:         "vetcd-headless",
			PodManagementPolicy: appsv1.ParallelPodManagement,
			Selector:            &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "vetcd", Image: "vetcd"}}},
			},
		},
	}
}

// pod is the object a StatefulSet controller would create for ordinal i,
// already bound to a node, so that deleting it is graceful (the pod is
// terminating until the kubelet confirms), as in a real cluster.
func pod(ns, name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{
			"app.kubernetes.io/name": "vetcd", "statefulset.kubernetes.io/pod-name": name,
		}},
		Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "vetcd", Image: "vetcd"}}},
	}
}

func newNamespace(t *testing.T, client kubernetes.Interface, name string) {
	t.Helper()
	_, err := client.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// startSource starts the Source of cfg's replica until the test ends.
func startSource(t *testing.T, cfg config.Config) *topology.Kubernetes {
	t.Helper()
	src, err := topology.NewKubernetesFromConfig(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := src.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return src
}

// One real kube-apiserver serves every subtest: each works in its own
// namespace.
func TestKubernetesSource(t *testing.T) {
	api := kube.Start(t, kube.Options{})
	client := api.Client
	ctx := context.Background()

	t.Run("desired follows spec.replicas", func(t *testing.T) {
		ns := "desired"
		newNamespace(t, client, ns)
		src := startSource(t, kubeConfig(t, ns, api.Kubeconfig, 0, t.TempDir()))
		// No StatefulSet yet: an error, never a guess.
		kube.WaitFor(t, 30*time.Second, "an error while the StatefulSet does not exist", func(ctx context.Context) error {
			_, err := src.Desired(ctx)
			if !errors.Is(err, topology.ErrNoTopology) {
				return errors.New("want ErrNoTopology, got " + errString(err))
			}
			return nil
		})
		if _, err := client.AppsV1().StatefulSets(ns).Create(ctx, statefulSet(ns, 1), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, n := range []int{1, 3, 1, 3} {
			patch := []byte(`{"spec":{"replicas":` + string(rune('0'+n)) + `}}`)
			if _, err := client.AppsV1().StatefulSets(ns).Patch(ctx, "vetcd", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
				t.Fatal(err)
			}
			kube.WaitFor(t, 10*time.Second, "desired follows the patch", func(ctx context.Context) error {
				got, err := src.Desired(ctx)
				if err != nil {
					return err
				}
				if got != n {
					return errors.New("desired " + string(rune('0'+got)))
				}
				return nil
			})
		}
	})

	t.Run("gone means the pod object is deleted; terminating is alive", func(t *testing.T) {
		ns := "gone"
		newNamespace(t, client, ns)
		if _, err := client.AppsV1().StatefulSets(ns).Create(ctx, statefulSet(ns, 3), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		src := startSource(t, kubeConfig(t, ns, api.Kubeconfig, 0, t.TempDir()))
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := src.WaitSynced(wctx); err != nil {
			t.Fatal(err)
		}
		if gone, err := src.Gone(ctx, 1); err != nil || !gone {
			t.Fatalf("Gone(1) with no pod = %v, %v; want true", gone, err)
		}
		// A pod created a moment ago is alive at once, even before the
		// watch delivers it: "gone" is confirmed with a GET.
		if _, err := client.CoreV1().Pods(ns).Create(ctx, pod(ns, "vetcd-1"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if gone, err := src.Gone(ctx, 1); err != nil || gone {
			t.Fatalf("Gone(1) right after the pod was created = %v, %v; want false", gone, err)
		}
		// Deleting a pod bound to a node makes it terminating, not gone.
		if err := client.CoreV1().Pods(ns).Delete(ctx, "vetcd-1", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		p, err := client.CoreV1().Pods(ns).Get(ctx, "vetcd-1", metav1.GetOptions{})
		if err != nil || p.DeletionTimestamp == nil {
			t.Fatalf("pod after a graceful delete: %v, %v; want it terminating", p, err)
		}
		if gone, err := src.Gone(ctx, 1); err != nil || gone {
			t.Fatalf("Gone(1) while terminating = %v, %v; want false", gone, err)
		}
		// The kubelet confirms: the object is removed.
		zero := int64(0)
		if err := client.CoreV1().Pods(ns).Delete(ctx, "vetcd-1", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
			t.Fatal(err)
		}
		kube.WaitFor(t, 10*time.Second, "Gone(1) after the pod object is removed", func(ctx context.Context) error {
			gone, err := src.Gone(ctx, 1)
			if err != nil {
				return err
			}
			if !gone {
				return errors.New("not gone")
			}
			return nil
		})
		// A pod of another app with the name of ordinal 2 still blocks
		// "gone": names are what Kubernetes guarantees unique.
		other := pod(ns, "vetcd-2")
		other.Labels = map[string]string{"app": "other"}
		if _, err := client.CoreV1().Pods(ns).Create(ctx, other, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if gone, err := src.Gone(ctx, 2); err != nil || gone {
			t.Fatalf("Gone(2) with a foreign pod of that name = %v, %v; want false", gone, err)
		}
	})

	t.Run("cluster record guards a second bootstrap", func(t *testing.T) {
		ns := "record"
		newNamespace(t, client, ns)
		if _, err := client.AppsV1().StatefulSets(ns).Create(ctx, statefulSet(ns, 3), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		cfg := kubeConfig(t, ns, api.Kubeconfig, 0, t.TempDir())
		src := startSource(t, cfg)
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := src.WaitSynced(wctx); err != nil {
			t.Fatal(err)
		}
		if rec, err := src.ClusterRecord(ctx); err != nil || rec != "" {
			t.Fatalf("ClusterRecord before any bootstrap = %q, %v; want empty", rec, err)
		}
		const founding, founded = `{"version": 1, "generation": 0, "claim": {"kind": "found", "holder": 0}}`, `{"version": 1, "clusterID": "1234", "generation": 1}`
		for _, rec := range []string{founding, founded} {
			if err := src.SetClusterRecord(ctx, rec); err != nil {
				t.Fatal(err)
			}
		}
		cm, err := client.CoreV1().ConfigMaps(ns).Get(ctx, "vetcd-cluster", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if cm.Data[topology.ClusterRecordKey] != founded || cm.Annotations[topology.ClusterIDAnnotation] != "1234" {
			t.Fatalf("configmap %v: want record %q in data and cluster ID 1234 in the annotation", cm, founded)
		}
		// pod-0 restarted with an empty volume: a new Source sees the
		// record as soon as it has synced, without waiting for events.
		again := startSource(t, cfg)
		if err := again.WaitSynced(wctx); err != nil {
			t.Fatal(err)
		}
		if rec, err := again.ClusterRecord(ctx); err != nil || rec != founded {
			t.Fatalf("a fresh Source reads the record %q, %v; want %q", rec, err, founded)
		}
	})

	t.Run("swapping the record: exactly one of concurrent swaps wins", func(t *testing.T) {
		ns := "swap"
		newNamespace(t, client, ns)
		src := startSource(t, kubeConfig(t, ns, api.Kubeconfig, 0, t.TempDir()))
		other := startSource(t, kubeConfig(t, ns, api.Kubeconfig, 1, t.TempDir()))
		if ok, err := src.SwapClusterRecord(ctx, "something", "x"); err != nil || ok {
			t.Fatalf("swap from a record that does not exist = %v, %v; want false", ok, err)
		}
		if ok, err := src.SwapClusterRecord(ctx, "", "cluster ab founded by vetcd-0 at t"); err != nil || !ok {
			t.Fatalf("first swap = %v, %v; want true", ok, err)
		}
		if ok, err := other.SwapClusterRecord(ctx, "", "cluster cd founded by vetcd-1 at t"); err != nil || ok {
			t.Fatalf("a second founding swap = %v, %v; want false", ok, err)
		}
		const from = "cluster ab founded by vetcd-0 at t"
		wins := make([]bool, 6)
		var wg sync.WaitGroup
		for i := range wins {
			s := src
			if i%2 == 1 {
				s = other
			}
			wg.Go(func() {
				ok, err := s.SwapClusterRecord(ctx, from, "restore requested by replica "+string(rune('0'+i))+" from file:///x at t")
				if err != nil {
					t.Error(err)
				}
				wins[i] = ok
			})
		}
		wg.Wait()
		n := 0
		for _, w := range wins {
			if w {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%d of %d concurrent swaps won; want exactly 1", n, len(wins))
		}
	})

	t.Run("lookup derives every replica", func(t *testing.T) {
		cfg := kubeConfig(t, "lookup", api.Kubeconfig, 1, t.TempDir())
		src := startSource(t, cfg)
		if src.Self().ClientURL != cfg.ClientURL || src.Self().Name != "vetcd-1" {
			t.Fatalf("Self = %+v, config has %s %s", src.Self(), cfg.Name, cfg.ClientURL)
		}
		dir, err := topology.LookupAll(ctx, src)
		if err != nil {
			t.Fatal(err)
		}
		r2, ok := dir.ByOrdinal(2)
		if !ok || r2.PeerURL != "https://127.0.0.1:31021" || r2.Name != "vetcd-2" {
			t.Fatalf("replica 2 = %+v, %v", r2, ok)
		}
		if err := topology.ValidateReplicas(replicas(dir)); err != nil {
			t.Fatalf("derived replicas collide: %v", err)
		}
	})

	t.Run("tls secret is generated once and shared", func(t *testing.T) {
		ns := "tls"
		newNamespace(t, client, ns)
		dirs := make([]string, 3)
		var wg sync.WaitGroup
		errs := make([]error, 3)
		for i := range dirs {
			dirs[i] = t.TempDir()
			cfg := kubeConfig(t, ns, api.Kubeconfig, i, dirs[i])
			wg.Go(func() {
				cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
				errs[i] = topology.PrepareTLS(cctx, cfg, zaptest.NewLogger(t))
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("replica %d: %v", i, err)
			}
		}
		first := readAll(t, dirs[0])
		for i := 1; i < 3; i++ {
			if got := readAll(t, dirs[i]); got != first {
				t.Fatalf("replica %d wrote other TLS files than replica 0: the replicas raced and disagree", i)
			}
		}
		// The files work for mTLS between replicas under their names.
		files := filepath.Join(dirs[0], "tls")
		if _, err := pki.ServerConfig(filepath.Join(files, "ca.crt"), filepath.Join(files, "tls.crt"), filepath.Join(files, "tls.key")); err != nil {
			t.Fatal(err)
		}

		// A user's Secret that does not cover the names is refused, and
		// nothing is written.
		bad := "bad"
		newNamespace(t, client, bad)
		if _, err := pki.EnsureSecret(ctx, client.CoreV1().Secrets(bad), bad, "vetcd-tls", pki.Options{DNSNames: []string{"elsewhere.example"}}); err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		err := topology.PrepareTLS(ctx, kubeConfig(t, bad, api.Kubeconfig, 0, dir), zaptest.NewLogger(t))
		if !errors.Is(err, pki.ErrBadSecret) {
			t.Fatalf("PrepareTLS with a Secret for other names: %v; want ErrBadSecret", err)
		}
		if _, err := os.Stat(filepath.Join(dir, "tls")); !os.IsNotExist(err) {
			t.Fatalf("TLS dir written for a refused Secret: %v", err)
		}
	})

	t.Run("unusable tls secrets are refused, never replaced", func(t *testing.T) {
		now := time.Now()
		caCert, caKey, err := pki.NewCA(pki.CACommonName, time.Hour*24, now)
		if err != nil {
			t.Fatal(err)
		}
		otherCA, otherKey, err := pki.NewCA(pki.CACommonName, time.Hour*24, now)
		if err != nil {
			t.Fatal(err)
		}
		k := config.Kubernetes{Namespace: "x", Service: "vetcd-headless"}
		opts := pki.Options{DNSNames: k.DNSNames()}
		cert, key, err := pki.NewLeaf(caCert, caKey, pki.MemberCommonName, true, true, opts, now)
		if err != nil {
			t.Fatal(err)
		}
		serverOnly, serverOnlyKey, err := pki.NewLeaf(caCert, caKey, pki.MemberCommonName, true, false, opts, now)
		if err != nil {
			t.Fatal(err)
		}
		_, otherLeafKey, err := pki.NewLeaf(otherCA, otherKey, pki.MemberCommonName, true, true, opts, now)
		if err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name string
			data map[string][]byte
			want string
		}{
			{"no key", map[string][]byte{"ca.crt": caCert, "tls.crt": cert}, "key tls.key: missing"},
			{"key of another certificate", map[string][]byte{"ca.crt": caCert, "tls.crt": cert, "tls.key": otherLeafKey}, "does not match"},
			{"signed by another CA", map[string][]byte{"ca.crt": otherCA, "tls.crt": cert, "tls.key": key}, "not valid for server and client auth"},
			{"server auth only", map[string][]byte{"ca.crt": caCert, "tls.crt": serverOnly, "tls.key": serverOnlyKey}, "not valid for server and client auth"},
			{"not PEM", map[string][]byte{"ca.crt": []byte("junk"), "tls.crt": cert, "tls.key": key}, "key ca.crt"},
		}
		for i, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				ns := "badtls-" + string(rune('a'+i))
				newNamespace(t, client, ns)
				s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "vetcd-tls"}, Data: tc.data}
				if _, err := client.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
				_, err := pki.EnsureSecret(ctx, client.CoreV1().Secrets(ns), ns, "vetcd-tls", pki.Options{DNSNames: (&config.Kubernetes{Namespace: ns, Service: "vetcd-headless"}).DNSNames()})
				if !errors.Is(err, pki.ErrBadSecret) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("EnsureSecret: %v; want ErrBadSecret mentioning %q", err, tc.want)
				}
				after, err := client.CoreV1().Secrets(ns).Get(ctx, "vetcd-tls", metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if len(after.Data) != len(tc.data) || string(after.Data["ca.crt"]) != string(tc.data["ca.crt"]) {
					t.Fatalf("the refused Secret was changed")
				}
			})
		}
	})
}

func readAll(t *testing.T, dir string) string {
	t.Helper()
	var s string
	for _, f := range []string{"ca.crt", "tls.crt", "tls.key"} {
		b, err := os.ReadFile(filepath.Join(dir, "tls", f))
		if err != nil {
			t.Fatal(err)
		}
		s += string(b)
	}
	return s
}

func replicas(d topology.Directory) []topology.Replica {
	var out []topology.Replica
	for _, r := range d {
		out = append(out, r)
	}
	return out
}

func errString(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}
