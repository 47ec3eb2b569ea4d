// Package pods runs the Helm chart on real pods: a single-node Kubernetes
// (hack/kube: kubelet, containerd with runc, kube-proxy, CoreDNS, a bridge
// CNI, local PersistentVolumes) started by this test, the chart installed with
// helm in the virtual-cluster shape (a kube-apiserver container in each pod,
// on vetcd over localhost), and the seed's procedures done to it with kubectl,
// under a client load through the kube-apiserver Service. Nothing is faked:
// the probes, DNS names, PVC mounts, grace periods, rolling updates and the
// PodDisruptionBudget are Kubernetes' own. `make e2e-kube` runs it (as root).
package pods

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vetcd/vetcd/internal/testtools"
)

// TestPods is one node and one release, and the scenarios in order; each
// ends with the cluster settled, every acknowledged write read back and a
// summary line (`pods: <scenario>: …`).
func TestPods(t *testing.T) {
	n := startNode(t)
	r := installChart(t, n, 3)
	l := startLoad(t, r, "load", nil)
	scenario := func(name string, replicas int, do func(t *testing.T)) {
		if t.Failed() {
			return
		}
		t.Run(name, func(t *testing.T) {
			before := r.restarts(t)
			l.reset()
			start := time.Now()
			do(t)
			r.waitSettled(t, replicas, 5*time.Minute)
			settled := time.Since(start)
			acked, failed, gap := l.verify(t)
			t.Logf("pods: %s: settled in %s, longest API gap %s, %d acknowledged writes, lost 0, %d failed attempts, pod restarts %s",
				name, settled.Round(100*time.Millisecond), gap.Round(100*time.Millisecond), acked, failed, restartDelta(before, r.restarts(t)))
		})
	}

	for _, to := range []int{1, 3, 5, 3} {
		scenario(fmt.Sprintf("scale-to-%d", to), to, func(t *testing.T) {
			n.kubectl(t, "-n", r.ns, "scale", "statefulset", r.name, fmt.Sprintf("--replicas=%d", to))
		})
	}
	scenario("delete-follower-pod", 3, func(t *testing.T) {
		h := r.waitSettled(t, 3, time.Minute)
		n.kubectl(t, "-n", r.ns, "delete", "pod", follower(h, 3), "--wait=false")
	})
	scenario("delete-leader-pod", 3, func(t *testing.T) {
		h := r.waitSettled(t, 3, time.Minute)
		n.kubectl(t, "-n", r.ns, "delete", "pod", h.leaderPod, "--wait=false")
	})
	scenario("delete-pvc-and-pod-0", 3, func(t *testing.T) {
		// The seed's manual procedure for a failing first replica; the new
		// pod must rejoin without a single container restart.
		n.kubectl(t, "-n", r.ns, "delete", "pvc", "data-"+r.name+"-0", "--wait=false")
		n.kubectl(t, "-n", r.ns, "delete", "pod", r.name+"-0", "--wait=false")
		testtools.WaitFor(t, 3*time.Minute, "a new pod 0 on a new volume", func(ctx context.Context) error {
			recyclePVs(ctx, t, n)
			pvc, err := n.cs.CoreV1().PersistentVolumeClaims(r.ns).Get(ctx, "data-"+r.name+"-0", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if pvc.Status.Phase != corev1.ClaimBound {
				return fmt.Errorf("claim %s", pvc.Status.Phase)
			}
			return nil
		})
		r.waitSettled(t, 3, 5*time.Minute)
		if got := r.restarts(t)[r.name+"-0"].total(); got != 0 {
			t.Fatalf("pod 0 on a new volume rejoined after %d container restarts, want 0", got)
		}
	})
	scenario("evict-under-pdb", 3, func(t *testing.T) {
		h := r.waitSettled(t, 3, time.Minute)
		first := follower(h, 3)
		if err := r.evict(first); err != nil {
			t.Fatalf("evicting %s with every pod Ready: %v", first, err)
		}
		second := ""
		for i := range 3 {
			if p := fmt.Sprintf("%s-%d", r.name, i); p != first {
				second = p
				break
			}
		}
		// While the first is not back, the budget (maxUnavailable 1) must refuse a second.
		err := r.evict(second)
		if err == nil || !apierrors.IsTooManyRequests(err) {
			t.Fatalf("evicting %s while %s is away: %v, want 429 TooManyRequests from the PodDisruptionBudget", second, first, err)
		}
	})
	scenario("node-restart", 3, func(t *testing.T) {
		n.restart(t)
	})
	scenario("helm-upgrade-image", 3, func(t *testing.T) {
		// A new tag of the same image: a rolling update, one pod at a time.
		n.ctr(t, "images", "tag", "--force", "vetcd.local/vetcd:dev", "vetcd.local/vetcd:v2")
		stop := watchQuorum(t, r)
		n.helm(t, "upgrade", r.name, n.root+"/deploy/helm/vetcd", "-n", r.ns, "-f", r.valuesYML, "--set", "image.tag=v2")
		testtools.WaitFor(t, 8*time.Minute, "the rolling update to finish", func(ctx context.Context) error {
			sts, err := r.statefulSet(ctx)
			if err != nil {
				return err
			}
			if sts.Status.ObservedGeneration < sts.Generation || sts.Status.UpdatedReplicas != 3 ||
				sts.Status.CurrentRevision != sts.Status.UpdateRevision || sts.Status.ReadyReplicas != 3 {
				return fmt.Errorf("generation %d observed %d, %d of 3 updated, %d ready", sts.Generation, sts.Status.ObservedGeneration, sts.Status.UpdatedReplicas, sts.Status.ReadyReplicas)
			}
			pods, err := r.pods(ctx)
			if err != nil {
				return err
			}
			for name, p := range pods {
				if img := p.Spec.InitContainers[0].Image; img != "vetcd.local/vetcd:v2" || p.DeletionTimestamp != nil {
					return fmt.Errorf("%s still runs %s", name, img)
				}
			}
			return nil
		})
		if worst := stop(); worst < 2 {
			t.Fatalf("during the rolling update the cluster had %d healthy voters at worst, want at least 2 (quorum of 3)", worst)
		}
		pods, err := r.pods(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for name, p := range pods {
			if img := p.Spec.InitContainers[0].Image; img != "vetcd.local/vetcd:v2" {
				t.Fatalf("%s runs %s after the upgrade", name, img)
			}
		}
	})
	dataLoss := func(t *testing.T) {
		// Every PVC gone; the cluster comes back from a snapshot in MinIO,
		// running as a pod of the same node.
		m := startMinIO(t, n, r.ns)
		acked := l.stop()
		url := "s3://" + m.bucket + "/pods/full?endpoint=http://minio." + r.ns + ".svc:9000"
		tlsFlags := []string{"--endpoints", "https://127.0.0.1:2379", "--cacert", "/var/run/vetcd/tls/ca.crt",
			"--cert", "/var/run/vetcd/tls/tls.crt", "--key", "/var/run/vetcd/tls/tls.key"}
		n.kubectl(t, append([]string{"-n", r.ns, "exec", r.name + "-0", "-c", "vetcd", "--", "vetcd", "snapshot", "create", url}, tlsFlags...)...)
		start := time.Now()
		n.kubectl(t, "-n", r.ns, "scale", "statefulset", r.name, "--replicas=0")
		testtools.WaitFor(t, 3*time.Minute, "every pod gone", func(ctx context.Context) error {
			pods, err := r.pods(ctx)
			if err != nil || len(pods) > 0 {
				return fmt.Errorf("%d pods left (%v)", len(pods), err)
			}
			return nil
		})
		n.kubectl(t, "-n", r.ns, "delete", "pvc", "-l", "app.kubernetes.io/instance="+r.name, "--wait=true", "--timeout=2m")
		testtools.WaitFor(t, 2*time.Minute, "the released volumes emptied", func(ctx context.Context) error {
			recyclePVs(ctx, t, n)
			pvs, err := n.cs.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
			if err != nil {
				return err
			}
			for _, pv := range pvs.Items {
				if pv.Status.Phase == corev1.VolumeReleased {
					return fmt.Errorf("%s still released", pv.Name)
				}
			}
			return nil
		})
		n.helm(t, "upgrade", r.name, n.root+"/deploy/helm/vetcd", "-n", r.ns, "--reuse-values",
			"--set", "replicas=3", "--set-string", "restore.from="+url)
		r.waitSettled(t, 3, 8*time.Minute)
		settled := time.Since(start)
		r.waitInner(t)
		l2 := startLoad(t, r, "after-restore", acked)
		l2.verify(t)
		t.Logf("pods: complete-data-loss-restore: settled in %s, %d writes acknowledged before the snapshot all read back, lost 0, pod restarts %s",
			settled.Round(100*time.Millisecond), len(acked), restartDelta(nil, r.restarts(t)))
	}
	if !t.Failed() {
		t.Run("complete-data-loss-restore", dataLoss)
	}
	t.Run("leaves-machine-as-found", func(t *testing.T) {
		n.down(t)
		if d := n.before.diff(readMachine(t, n)); len(d) > 0 {
			t.Fatalf("after down.sh the machine differs from before up.sh:\n%s", strings.Join(d, "\n"))
		}
	})
}

// follower is a pod of the first replicas that is not the leader's.
func follower(h health, replicas int) string {
	for i := replicas - 1; i >= 0; i-- {
		if p := fmt.Sprintf("vetcd-%d", i); p != h.leaderPod {
			return p
		}
	}
	return ""
}

// evict asks for a pod's eviction, as kubectl drain does.
func (r *release) evict(pod string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return r.n.cs.PolicyV1().Evictions(r.ns).Evict(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: pod, Namespace: r.ns}})
}

// watchQuorum samples the answering voters every half second until stopped,
// and returns the fewest seen (a sample where no member answers counts 0).
func watchQuorum(t *testing.T, r *release) (stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	worst := make(chan int, 1)
	go func() {
		w := 1 << 30
		for ctx.Err() == nil {
			c, cc := context.WithTimeout(ctx, 5*time.Second)
			if h := r.healthyVoters(c); ctx.Err() == nil {
				w = min(w, h) // a sample cut short by stop() is no sample
			}
			cc()
			select {
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
		}
		worst <- w
	}()
	return func() int { cancel(); return <-worst }
}

// healthyVoters counts the voters whose members answer Status, asking
// each pod's member on its own and all at once, each with its own deadline,
// so one member that does not answer cannot make the others look down.
func (r *release) healthyVoters(ctx context.Context) int {
	pods, err := r.pods(ctx)
	if err != nil {
		return 0
	}
	tc, err := r.etcdTLS(ctx)
	if err != nil {
		return 0
	}
	results := make(chan bool, len(pods))
	for _, p := range pods {
		go func(ip string) {
			if ip == "" {
				results <- false
				return
			}
			c, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			ok, err := memberStatus(c, "https://"+ip+":2379", tc)
			results <- err == nil && ok
		}(p.Status.PodIP)
	}
	healthy := 0
	for range pods {
		if <-results {
			healthy++
		}
	}
	return healthy
}

// recyclePVs makes Released local volumes Available again, as a volume
// reclaimer would: no provisioner runs on this node, so a deleted claim's
// volume must be emptied and unbound before a new claim can use it.
func recyclePVs(ctx context.Context, t *testing.T, n *node) {
	t.Helper()
	pvs, err := n.cs.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{LabelSelector: "vetcd.io/kube-harness=local"})
	if err != nil {
		return
	}
	for _, pv := range pvs.Items {
		if pv.Status.Phase != corev1.VolumeReleased {
			continue
		}
		if out, err := runErr(time.Minute, "/", nil, "find", pv.Spec.Local.Path, "-mindepth", "1", "-delete"); err != nil {
			t.Logf("emptying %s: %v %s", pv.Spec.Local.Path, err, out)
			continue
		}
		pv.Spec.ClaimRef = nil
		if _, err := n.cs.CoreV1().PersistentVolumes().Update(ctx, &pv, metav1.UpdateOptions{}); err != nil {
			t.Logf("releasing %s: %v", pv.Name, err)
		}
	}
}

// restartDelta names the container restarts between two readings, per pod
// and container ("vetcd-2/kube-apiserver=1"), or "none".
func restartDelta(before, after map[string]podRestarts) string {
	var parts []string
	for name, a := range after {
		b := before[name]
		for c, n := range a.containers {
			if b.uid == a.uid {
				n -= b.containers[c]
			}
			if n > 0 {
				parts = append(parts, fmt.Sprintf("%s/%s=%d (last: %s)", name, c, n, a.last[c]))
			}
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}
