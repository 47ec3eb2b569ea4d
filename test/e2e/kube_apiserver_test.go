package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/vetcd/vetcd/internal/pki"
	"github.com/vetcd/vetcd/test/kube"
)

// apiLoad creates ConfigMaps and Secrets through a real kube-apiserver,
// remembers every acknowledged one, and measures the longest time
// without a successful write.
type apiLoad struct {
	client kubernetes.Interface
	ns     string
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	acked    map[string]bool // "cm/<name>" and "secret/<name>"
	lastOK   time.Time
	maxGap   time.Duration
	failures int
	lastErr  error
}

func startAPILoad(t *testing.T, client kubernetes.Interface, ns string) *apiLoad {
	ctx, cancel := context.WithCancel(context.Background())
	l := &apiLoad{client: client, ns: ns, cancel: cancel, done: make(chan struct{}), acked: map[string]bool{}, lastOK: time.Now()}
	go l.run(ctx)
	t.Cleanup(l.stop)
	return l
}

func (l *apiLoad) run(ctx context.Context) {
	defer close(l.done)
	for i := 0; ctx.Err() == nil; i++ {
		name := fmt.Sprintf("obj-%06d", i)
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var err error
		kind := "cm"
		if i%4 == 3 {
			kind = "secret"
			_, err = l.client.CoreV1().Secrets(l.ns).Create(cctx, &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: name}, StringData: map[string]string{"n": name},
			}, metav1.CreateOptions{})
		} else {
			_, err = l.client.CoreV1().ConfigMaps(l.ns).Create(cctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"n": name},
			}, metav1.CreateOptions{})
		}
		cancel()
		now := time.Now()
		l.mu.Lock()
		if err == nil || apierrors.IsAlreadyExists(err) { // a retried create that had landed
			l.acked[kind+"/"+name] = true
			l.maxGap = max(l.maxGap, now.Sub(l.lastOK))
			l.lastOK = now
		} else {
			l.failures++
			l.lastErr = err
			i-- // retry the same name: a create may have landed unacknowledged
		}
		l.mu.Unlock()
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

func (l *apiLoad) stop() {
	l.cancel()
	<-l.done
}

func (l *apiLoad) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// waitMore waits until n more writes are acknowledged.
func (l *apiLoad) waitMore(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	want := l.count() + n
	kube.WaitFor(t, timeout, fmt.Sprintf("%d acknowledged API writes", want), func(context.Context) error {
		if c := l.count(); c < want {
			l.mu.Lock()
			defer l.mu.Unlock()
			return fmt.Errorf("%d acknowledged; last error %v", c, l.lastErr)
		}
		return nil
	})
}

// resetGap starts a new unavailability measurement and returns the
// longest gap of the previous one.
func (l *apiLoad) resetGap() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	g := max(l.maxGap, time.Since(l.lastOK))
	l.maxGap = 0
	l.lastOK = time.Now()
	return g
}

// A kube-apiserver stores its objects in a 3-replica vetcd cluster (`vetcd
// up`, mTLS with the cluster's admin certificate). Through client-go it
// creates namespaces, ConfigMaps and Secrets without pause while an
// informer watches. vetcd is scaled 3 → 1 → 3, one replica is killed with
// -9, and one replica's data dir is deleted. The apiserver keeps serving
// (the longest unavailability is logged), every acknowledged object is
// still there, and the watch resumed or relisted without losing an event.
func TestKubeAPIServerOnVetcd(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c")
	base := freeBasePort(t, 3)
	c := startUp(t, dir, base, 3)
	f := pki.FilesIn(filepath.Join(dir, "pki"))
	api := kube.Start(t, kube.Options{
		EtcdServers: c.endpoints(3),
		EtcdCAFile:  f.CA, EtcdCertFile: f.ClientCert, EtcdKeyFile: f.ClientKey,
	})
	ctx := context.Background()
	client := api.Client

	// Namespaces, then a load of ConfigMaps and Secrets in one of them.
	for _, ns := range []string{"load", "team-a", "team-b"} {
		if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	// The watch: an informer on ConfigMaps in "load"; every Add event
	// (from the watch, or from a relist after the watch broke) is recorded.
	var (
		seenMu sync.Mutex
		seen   = map[string]bool{}
	)
	watchCtx, stopWatch := context.WithCancel(ctx)
	t.Cleanup(stopWatch)
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace("load"))
	cmInf := factory.Core().V1().ConfigMaps().Informer()
	if _, err := cmInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if cm, ok := obj.(*corev1.ConfigMap); ok {
				seenMu.Lock()
				seen[cm.Name] = true
				seenMu.Unlock()
			}
		},
	}); err != nil {
		t.Fatal(err)
	}
	factory.Start(watchCtx.Done())
	if !cache.WaitForCacheSync(watchCtx.Done(), cmInf.HasSynced) {
		t.Fatal("informer did not sync")
	}

	load := startAPILoad(t, client, "load")
	load.waitMore(t, 50, time.Minute)

	type step struct {
		name string
		do   func()
	}
	steps := []step{
		{"vetcd scale 1", func() { c.scale(1); c.requireSettled(1) }},
		{"vetcd scale 3", func() { c.scale(3); c.requireSettled(3) }},
		{"kill -9 vetcd-1", func() {
			pid := c.pid(1)
			if pid == 0 {
				t.Fatal("no pid for vetcd-1")
			}
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			c.requireSettled(3)
		}},
		{"delete vetcd-2's data dir", func() {
			c.stopReplica(2)
			err := os.RemoveAll(filepath.Join(dir, "vetcd-2", "data"))
			c.resumeSupervisor()
			if err != nil {
				t.Fatal(err)
			}
			c.requireSettled(3)
		}},
	}
	var worst time.Duration
	for _, s := range steps {
		load.resetGap()
		start := time.Now()
		s.do()
		load.waitMore(t, 30, 2*time.Minute)
		gap := load.resetGap()
		worst = max(worst, gap)
		t.Logf("%s: done in %s; longest kube-apiserver write unavailability %s", s.name, time.Since(start).Round(time.Millisecond), gap.Round(time.Millisecond))
		if code, body, err := api.Get("/readyz"); err != nil || code != 200 {
			t.Fatalf("after %s kube-apiserver /readyz: %d %s %v", s.name, code, body, err)
		}
	}
	load.stop()
	t.Logf("longest kube-apiserver unavailability over all faults: %s (%d failed writes, retried)", worst.Round(time.Millisecond), load.failures)

	// Every acknowledged object is there.
	cms, err := client.CoreV1().ConfigMaps("load").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	secrets, err := client.CoreV1().Secrets("load").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, o := range cms.Items {
		have["cm/"+o.Name] = true
	}
	for _, o := range secrets.Items {
		have["secret/"+o.Name] = true
	}
	missing := 0
	for k := range load.acked {
		if !have[k] {
			missing++
			if missing < 10 {
				t.Errorf("acknowledged %s is gone", k)
			}
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged objects lost", missing, len(load.acked))
	}
	for _, ns := range []string{"load", "team-a", "team-b"} {
		if _, err := client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
			t.Errorf("namespace %s: %v", ns, err)
		}
	}

	// The watch delivered every ConfigMap (directly or through a relist).
	kube.WaitFor(t, time.Minute, "the informer saw every ConfigMap", func(context.Context) error {
		seenMu.Lock()
		defer seenMu.Unlock()
		n := 0
		for k := range have {
			if len(k) > 3 && k[:3] == "cm/" {
				if !seen[k[3:]] {
					n++
				}
			}
		}
		if n > 0 {
			return fmt.Errorf("%d ConfigMaps never reached the watch", n)
		}
		return nil
	})
	t.Logf("%d ConfigMaps and %d Secrets intact; the watch saw every ConfigMap", len(cms.Items), len(secrets.Items))
}
