package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vetcd/vetcd/internal/pki"
	"github.com/vetcd/vetcd/internal/plan"
	"github.com/vetcd/vetcd/internal/status"
	"github.com/vetcd/vetcd/test/kube"
)

// kubeSet plays the StatefulSet controller and the kubelet for `vetcd
// serve` processes against a real kube-apiserver (which has no controllers
// of its own): it creates a pod object and starts the process for each
// desired ordinal; for a surplus one it deletes the pod (which makes it
// terminating, as it is bound to a node), sends SIGTERM, waits for the
// process to exit and then removes the pod object, as a kubelet confirms.
type kubeSet struct {
	t        *testing.T
	api      *kube.APIServer
	ns       string
	dir      string
	basePort int
	config   string
	procs    map[int]*exec.Cmd
	exited   map[int]chan struct{}
}

const kubeStatefulSet = "vetcd"

func newKubeSet(t *testing.T, api *kube.APIServer, ns string, basePort int) *kubeSet {
	t.Helper()
	ctx := context.Background()
	if _, err := api.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app.kubernetes.io/name": "vetcd", "app.kubernetes.io/instance": "test"}
	zero := int32(0)
	set := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: kubeStatefulSet, Namespace: ns},
		Spec: appsv1.StatefulSetSpec{
			Replicas:            &zero,
			ServiceName:         "vetcd-headless",
			PodManagementPolicy: appsv1.ParallelPodManagement,
			Selector:            &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "vetcd", Image: "vetcd"}}},
			},
		},
	}
	if _, err := api.Client.AppsV1().StatefulSets(ns).Create(ctx, set, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	k := &kubeSet{t: t, api: api, ns: ns, dir: t.TempDir(), basePort: basePort, procs: map[int]*exec.Cmd{}, exited: map[int]chan struct{}{}}
	// One config for every replica, as the chart's ConfigMap: the identity
	// comes from POD_NAME. Replicas share 127.0.0.1, so each ordinal's
	// ports are shifted by 10.
	k.config = filepath.Join(k.dir, "config.yaml")
	cfg := fmt.Sprintf(`dataDir: %[1]s/${POD}/data
tls:
  caFile: %[1]s/${POD}/tls/ca.crt
  certFile: %[1]s/${POD}/tls/tls.crt
  keyFile: %[1]s/${POD}/tls/tls.key
topology:
  source: kubernetes
  kubernetes:
    kubeconfig: %[2]s
    namespace: %[3]s
    service: vetcd-headless
    tlsSecret: vetcd-tls
    advertiseHost: 127.0.0.1
    portStride: 10
    ports: {client: %[4]d, peer: %[5]d, agent: %[6]d, metrics: %[7]d}
shutdown:
  leaveTimeout: 10s
`, k.dir, api.Kubeconfig, ns, basePort, basePort+1, basePort+2, basePort+3)
	if err := os.WriteFile(k.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.stopAll)
	return k
}

func (k *kubeSet) pod(i int) string { return kubeStatefulSet + "-" + strconv.Itoa(i) }

// configFor writes replica i's config: the shared one with its paths.
func (k *kubeSet) configFor(i int) string {
	b, err := os.ReadFile(k.config)
	if err != nil {
		k.t.Fatal(err)
	}
	p := filepath.Join(k.dir, k.pod(i)+".yaml")
	if err := os.WriteFile(p, []byte(os.Expand(string(b), func(v string) string {
		if v == "POD" {
			return k.pod(i)
		}
		return "$" + v
	})), 0o600); err != nil {
		k.t.Fatal(err)
	}
	return p
}

// scale patches spec.replicas and then does what the StatefulSet
// controller (Parallel) and the kubelets would.
func (k *kubeSet) scale(n int) {
	k.t.Helper()
	k.patchReplicas(n)
	ctx := context.Background()
	for i := 0; i < n; i++ {
		if _, ok := k.procs[i]; ok {
			continue
		}
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: k.pod(i), Namespace: k.ns, Labels: map[string]string{
				"app.kubernetes.io/name": "vetcd", "app.kubernetes.io/instance": "test", "statefulset.kubernetes.io/pod-name": k.pod(i),
			}},
			Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "vetcd", Image: "vetcd"}}},
		}
		if _, err := k.api.Client.CoreV1().Pods(k.ns).Create(ctx, p, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			k.t.Fatal(err)
		}
		k.start(i)
	}
	var surplus []int
	for i := range k.procs {
		if i >= n {
			surplus = append(surplus, i)
		}
	}
	for _, i := range surplus { // all at once: Parallel
		k.terminatePod(i)
		_ = k.procs[i].Process.Signal(syscall.SIGTERM)
	}
	for _, i := range surplus {
		k.waitExit(i, 30*time.Second)
		k.removePod(i)
	}
}

func (k *kubeSet) patchReplicas(n int) {
	k.t.Helper()
	patch := []byte(fmt.Sprintf(`{"spec":{"replicas":%d}}`, n))
	if _, err := k.api.Client.AppsV1().StatefulSets(k.ns).Patch(context.Background(), kubeStatefulSet, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		k.t.Fatal(err)
	}
}

// terminatePod deletes the pod gracefully: bound to a node, it stays as a
// terminating object until removePod.
func (k *kubeSet) terminatePod(i int) {
	k.t.Helper()
	if err := k.api.Client.CoreV1().Pods(k.ns).Delete(context.Background(), k.pod(i), metav1.DeleteOptions{}); err != nil {
		k.t.Fatal(err)
	}
}

// removePod removes the pod object, as a kubelet does once the
// containers stopped.
func (k *kubeSet) removePod(i int) {
	k.t.Helper()
	zero := int64(0)
	err := k.api.Client.CoreV1().Pods(k.ns).Delete(context.Background(), k.pod(i), metav1.DeleteOptions{GracePeriodSeconds: &zero})
	if err != nil && !apierrors.IsNotFound(err) {
		k.t.Fatal(err)
	}
}

// start runs `vetcd serve` for ordinal i with POD_NAME set.
func (k *kubeSet) start(i int) {
	k.t.Helper()
	logf, err := os.OpenFile(filepath.Join(k.dir, k.pod(i)+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		k.t.Fatal(err)
	}
	cmd := exec.Command(binary, "serve", "--config", k.configFor(i))
	cmd.Env = append(os.Environ(), "POD_NAME="+k.pod(i), "POD_NAMESPACE=ignored-the-config-wins")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		k.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	k.procs[i], k.exited[i] = cmd, done
}

// waitExit waits for replica i's process to exit, killing it after the
// timeout (as the kubelet does after the grace period).
func (k *kubeSet) waitExit(i int, timeout time.Duration) {
	k.t.Helper()
	select {
	case <-k.exited[i]:
	case <-time.After(timeout):
		k.t.Errorf("%s did not exit within %s of SIGTERM; killed", k.pod(i), timeout)
		_ = k.procs[i].Process.Kill()
		<-k.exited[i]
	}
	delete(k.procs, i)
	delete(k.exited, i)
}

// kill sends SIGKILL to replica i and waits for it to be reaped.
func (k *kubeSet) kill(i int) {
	k.t.Helper()
	_ = k.procs[i].Process.Kill()
	k.waitExit(i, 10*time.Second)
}

func (k *kubeSet) stopAll() {
	for i, cmd := range k.procs {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-k.exited[i]:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-k.exited[i]
		}
	}
	if k.t.Failed() {
		// VETCD_KEEP_LOGS=DIR keeps every replica's whole log and data dir
		// for a failure that the tails below do not explain.
		if keep := os.Getenv("VETCD_KEEP_LOGS"); keep != "" {
			_ = exec.Command("cp", "-r", k.dir, keep).Run()
		}
		for i := 0; i < 5; i++ {
			if b, err := os.ReadFile(filepath.Join(k.dir, k.pod(i)+".log")); err == nil {
				k.t.Logf("--- %s log (tail):\n%s", k.pod(i), tail(string(b), 30))
			}
		}
	}
}

func (k *kubeSet) endpoints(n int) []string {
	var eps []string
	for i := 0; i < n; i++ {
		eps = append(eps, fmt.Sprintf("https://127.0.0.1:%d", k.basePort+10*i))
	}
	return eps
}

// tlsConfig is a client config from the certificate vetcd-0 wrote from
// the generated Secret.
func (k *kubeSet) tlsConfig() *tls.Config {
	k.t.Helper()
	d := filepath.Join(k.dir, k.pod(0), "tls")
	cfg, err := pki.ClientConfig(filepath.Join(d, "ca.crt"), filepath.Join(d, "tls.crt"), filepath.Join(d, "tls.key"))
	if err != nil {
		k.t.Fatal(err)
	}
	return cfg
}

// ready reports whether replica i's /readyz answers ok.
func (k *kubeSet) ready(i int) bool {
	c := &http.Client{Timeout: time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", k.basePort+10*i+3))
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// metric reads one vetcd metric of replica i.
func (k *kubeSet) metric(i int, name string) float64 {
	c := &cluster{basePort: k.basePort}
	return c.metric(i, name)
}

// settled waits until n healthy voters serve and every desired replica
// is ready.
func (k *kubeSet) settled(n int, timeout time.Duration) status.Cluster {
	k.t.Helper()
	kube.WaitFor(k.t, timeout, "vetcd-0 wrote the TLS files from the Secret", func(context.Context) error {
		_, err := os.Stat(filepath.Join(k.dir, k.pod(0), "tls", "tls.key"))
		return err
	})
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	st, err := status.Wait(ctx, func() []string { return k.endpoints(n) }, k.tlsConfig(), n)
	if err != nil {
		k.t.Fatalf("settle at %d: %v", n, err)
	}
	kube.WaitFor(k.t, timeout, "every desired replica ready", func(context.Context) error {
		for i := 0; i < n; i++ {
			if !k.ready(i) {
				return fmt.Errorf("%s not ready", k.pod(i))
			}
		}
		return nil
	})
	return st
}

func (k *kubeSet) client() *clientv3.Client {
	k.t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: k.endpoints(1), TLS: k.tlsConfig(), DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		k.t.Fatal(err)
	}
	k.t.Cleanup(func() { cli.Close() })
	return cli
}

// The replicas follow a StatefulSet in a real kube-apiserver: spec.replicas
// 1 → 3 → 1 → 3 is followed as `vetcd scale` is; after a quorum-breaking
// loss the survivor waits while the surplus pods still exist (terminating)
// and rebuilds only once their pod objects are deleted. No acknowledged
// write is lost and the cluster ID never changes.
func TestKubeTopologyFollowsStatefulSet(t *testing.T) {
	api := kube.Start(t, kube.Options{})
	k := newKubeSet(t, api, "vetcd-e2e", freeBasePort(t, 3))

	k.scale(1)
	st := k.settled(1, 2*time.Minute)
	id := st.ClusterID
	cm, err := api.Client.CoreV1().ConfigMaps(k.ns).Get(context.Background(), "vetcd-cluster", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("cluster record ConfigMap: %v", err)
	}
	t.Logf("cluster %s founded; record %q", id, cm.Data["record"])
	cli := k.client()
	w := startWriter(t, cli, "kube")
	w.waitAcked(50, 30*time.Second)

	for _, n := range []int{3, 1, 3} {
		start := time.Now()
		k.scale(n)
		st := k.settled(n, 3*time.Minute)
		if st.ClusterID != id {
			t.Fatalf("after spec.replicas=%d the cluster ID is %s, was %s: a second cluster", n, st.ClusterID, id)
		}
		w.waitAcked(20, time.Minute)
		w.verify(cli)
		t.Logf("spec.replicas=%d followed in %s", n, time.Since(start).Round(time.Millisecond))
	}

	// Quorum loss: both surplus replicas die (kill -9) as spec.replicas
	// drops to 1, but their pods stay terminating (an unreachable node).
	k.waitLeader0()
	k.patchReplicas(1)
	for _, i := range []int{1, 2} {
		k.terminatePod(i)
		k.kill(i)
	}
	// While the pod objects exist the survivor must not rebuild.
	deadline := time.Now().Add(8 * time.Second)
	sample := time.NewTicker(200 * time.Millisecond)
	defer sample.Stop()
	for time.Now().Before(deadline) {
		if r := k.metric(0, "vetcd_rebuilds_total"); r != 0 {
			t.Fatalf("vetcd-0 rebuilt (%v) while the surplus pods still existed", r)
		}
		<-sample.C
	}
	if k.ready(0) {
		t.Fatalf("vetcd-0 is ready without quorum")
	}
	// The kubelet confirms: the pod objects go, and the rebuild goes ahead.
	start := time.Now()
	for _, i := range []int{1, 2} {
		k.removePod(i)
	}
	st = k.settled(1, 2*time.Minute)
	if st.ClusterID != id {
		t.Fatalf("rebuild founded cluster %s, was %s", st.ClusterID, id)
	}
	// vetcd-0 turns ready as its forced start finishes; the record names
	// the new generation a moment later.
	kube.WaitFor(t, time.Minute, "the record names the rebuild", func(ctx context.Context) error {
		cm, err := api.Client.CoreV1().ConfigMaps(k.ns).Get(ctx, "vetcd-cluster", metav1.GetOptions{})
		if err != nil {
			return err
		}
		rec, _, err := plan.ParseRecord(cm.Data["record"])
		if err != nil {
			return err
		}
		if rec.Made == nil || rec.Made.How != plan.OriginRebuilt || rec.Claim != nil {
			return fmt.Errorf("record %q", cm.Data["record"])
		}
		return nil
	})
	if r := k.metric(0, "vetcd_rebuilds_total"); r != 1 {
		t.Fatalf("vetcd_rebuilds_total %v after the pods were deleted; want 1", r)
	}
	t.Logf("rebuilt %s after the surplus pod objects were deleted", time.Since(start).Round(time.Millisecond))
	w.waitAcked(20, time.Minute)
	w.verify(cli)

	// And back to 3: the old replicas' data is stale (removed members);
	// they rejoin with fresh data.
	k.scale(3)
	if st := k.settled(3, 3*time.Minute); st.ClusterID != id {
		t.Fatalf("cluster ID %s after scaling back, was %s", st.ClusterID, id)
	}
	w.waitAcked(20, time.Minute)
	w.verify(cli)
}

// waitLeader0 waits until vetcd-0 leads, so that the survivor of a
// quorum loss holds every committed entry (the controller moves leadership
// to the lowest ordinal).
func (k *kubeSet) waitLeader0() {
	k.t.Helper()
	kube.WaitFor(k.t, time.Minute, "vetcd-0 leads", func(ctx context.Context) error {
		st, err := status.Get(ctx, k.endpoints(1), k.tlsConfig())
		if err != nil {
			return err
		}
		for _, m := range st.Members {
			if m.Name == k.pod(0) && m.Role == "leader" {
				return nil
			}
		}
		return errors.New("vetcd-0 is not the leader")
	})
}

// restart stops replica i (SIGTERM; it stays desired, so it keeps its
// membership) and starts it again with the current config, as a rolling
// update of the StatefulSet does.
func (k *kubeSet) restart(i int) {
	k.t.Helper()
	_ = k.procs[i].Process.Signal(syscall.SIGTERM)
	k.waitExit(i, 30*time.Second)
	k.start(i)
}

// restore.from on Kubernetes: a snapshot taken from a StatefulSet's
// cluster, then more writes, then restore.from in the shared config and a
// rolling restart. The cluster is founded anew from the snapshot (new
// cluster ID, three voters), writes after the snapshot are gone, writes
// before it are there, and the record ConfigMap says where it came from.
func TestKubeRestoreFromSnapshot(t *testing.T) {
	api := kube.Start(t, kube.Options{})
	k := newKubeSet(t, api, "vetcd-restore", freeBasePort(t, 3))
	k.scale(3)
	old := k.settled(3, 3*time.Minute).ClusterID
	cli := k.client()
	ctx := context.Background()
	for i := 0; i < 100; i++ {
		if _, err := cli.Put(ctx, fmt.Sprintf("before/%03d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	tlsDir := filepath.Join(k.dir, k.pod(0), "tls")
	snap := "file://" + filepath.Join(t.TempDir(), "snaps") + "/before"
	out, err := vetcd(t, 2*time.Minute, "snapshot", "create", snap, "--endpoints", k.endpoints(3)[0],
		"--cacert", filepath.Join(tlsDir, "ca.crt"), "--cert", filepath.Join(tlsDir, "tls.crt"), "--key", filepath.Join(tlsDir, "tls.key"))
	if err != nil {
		t.Fatalf("snapshot create: %v\n%s", err, out)
	}
	for i := 0; i < 50; i++ {
		if _, err := cli.Put(ctx, fmt.Sprintf("after/%03d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}

	// restore.from in the shared config, then a rolling restart.
	b, err := os.ReadFile(k.config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(k.config, append(b, []byte("restore:\n  from: "+snap+"\n")...), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := 2; i >= 0; i-- {
		k.restart(i)
	}
	var st status.Cluster
	kube.WaitFor(t, 3*time.Minute, "a cluster founded anew from the snapshot", func(ctx context.Context) error {
		s, err := status.Get(ctx, k.endpoints(3), k.tlsConfig())
		if err != nil {
			return err
		}
		if s.ClusterID == old {
			return fmt.Errorf("still cluster %s", old)
		}
		if ok, why := s.Settled(3); !ok {
			return errors.New(why)
		}
		st = s
		return nil
	})
	t.Logf("restored into cluster %s (was %s) in %s", st.ClusterID, old, time.Since(start).Round(time.Millisecond))
	cli2 := k.client()
	kube.WaitFor(t, time.Minute, "the restored data reads back", func(ctx context.Context) error {
		before, err := cli2.Get(ctx, "before/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return err
		}
		after, err := cli2.Get(ctx, "after/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return err
		}
		if before.Count != 100 || after.Count != 0 {
			return fmt.Errorf("%d keys from before the snapshot (want 100), %d from after (want 0)", before.Count, after.Count)
		}
		return nil
	})
	cm, err := api.Client.CoreV1().ConfigMaps(k.ns).Get(ctx, "vetcd-cluster", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rec := cm.Data["record"]; restoredFrom(rec) != snap {
		t.Fatalf("cluster record %q does not name the snapshot", rec)
	}
	t.Logf("record: %s", cm.Data["record"])
	// A restart with the same config does not restore again.
	k.restart(0)
	if s := k.settled(3, 2*time.Minute); s.ClusterID != st.ClusterID {
		t.Fatalf("a restart with the same restore.from founded cluster %s again (was %s)", s.ClusterID, st.ClusterID)
	}
}
