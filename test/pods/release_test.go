package pods

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/vetcd/vetcd/internal/pki"
	"github.com/vetcd/vetcd/internal/testtools"
)

// release is the vetcd chart installed on the node in the virtual-cluster
// shape: a kube-apiserver container in each pod on vetcd over localhost.
type release struct {
	n         *node
	ns, name  string
	inner     kubernetes.Interface // the pods' kube-apiserver, through the chart's Service
	valuesYML string
}

const innerToken = "vetcd-pods-test-token"

// installChart writes the inner kube-apiserver's certificates and keys into a
// Secret, installs the chart with helm and waits for replicas Ready pods.
func installChart(t *testing.T, n *node, replicas int) *release {
	t.Helper()
	r := &release{n: n, ns: "vetcd", name: "vetcd"}
	ctx := context.Background()
	if _, err := n.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: r.ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caCert, caKey, err := pki.NewCA("vetcd-pods-inner-ca", 24*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	svc := r.name + "." + r.ns + ".svc"
	serving, servingKey, err := pki.NewLeaf(caCert, caKey, "kube-apiserver", true, false,
		pki.Options{DNSNames: []string{svc, svc + ".cluster.local", "localhost"}}, now)
	if err != nil {
		t.Fatal(err)
	}
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	saPub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "inner-apiserver", Namespace: r.ns},
		Data: map[string][]byte{
			"ca.crt":     caCert,
			"tls.crt":    serving,
			"tls.key":    servingKey,
			"sa.key":     pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(saKey)}),
			"sa.pub":     pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPub}),
			"tokens.csv": []byte(innerToken + ",admin,admin,system:masters\n"),
		},
	}
	if _, err := n.cs.CoreV1().Secrets(r.ns).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r.valuesYML = filepath.Join(n.dir, "values.yaml")
	values := fmt.Sprintf(`replicas: %[1]d
image: {repository: vetcd.local/vetcd, tag: dev, pullPolicy: Never}
resources: {requests: {cpu: 10m, memory: 64Mi}}
extraEnv:
  - {name: AWS_ACCESS_KEY_ID, value: %[2]s}
  - {name: AWS_SECRET_ACCESS_KEY, value: %[3]s}
kubeApiserver:
  enabled: true
  image: {repository: vetcd.local/kube-apiserver, tag: v1.37.2, pullPolicy: Never}
  resources: {requests: {cpu: 10m, memory: 64Mi}}
  extraArgs:
    - --tls-cert-file=/etc/inner/tls.crt
    - --tls-private-key-file=/etc/inner/tls.key
    - --token-auth-file=/etc/inner/tokens.csv
    - --service-account-issuer=https://kubernetes.default.svc
    - --service-account-key-file=/etc/inner/sa.pub
    - --service-account-signing-key-file=/etc/inner/sa.key
    - --authorization-mode=RBAC
  extraVolumes:
    - {name: inner, secret: {secretName: inner-apiserver, defaultMode: 0444}}
  extraVolumeMounts:
    - {name: inner, mountPath: /etc/inner, readOnly: true}
`, replicas, minioUser, minioPassword)
	if err := os.WriteFile(r.valuesYML, []byte(values), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	n.helm(t, "install", r.name, filepath.Join(n.root, "deploy", "helm", "vetcd"), "-n", r.ns, "-f", r.valuesYML)
	r.waitSettled(t, replicas, 5*time.Minute)
	t.Logf("pods: chart installed, %d/%d Ready and settled in %s", replicas, replicas, time.Since(start).Round(time.Second))

	ip := r.service(t).Spec.ClusterIP
	cfg := &rest.Config{
		Host:            "https://" + ip + ":443",
		BearerToken:     innerToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: caCert, ServerName: svc},
		Timeout:         5 * time.Second,
	}
	if r.inner, err = kubernetes.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	r.waitInner(t)
	return r
}

func (r *release) service(t *testing.T) *corev1.Service {
	t.Helper()
	s, err := r.n.cs.CoreV1().Services(r.ns).Get(context.Background(), r.name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (r *release) statefulSet(ctx context.Context) (*appsv1.StatefulSet, error) {
	return r.n.cs.AppsV1().StatefulSets(r.ns).Get(ctx, r.name, metav1.GetOptions{})
}

// pods are the release's pods by ordinal name.
func (r *release) pods(ctx context.Context) (map[string]corev1.Pod, error) {
	l, err := r.n.cs.CoreV1().Pods(r.ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + r.name})
	if err != nil {
		return nil, err
	}
	m := map[string]corev1.Pod{}
	for _, p := range l.Items {
		m[p.Name] = p
	}
	return m, nil
}

// podRestarts is one pod's container restarts, by container, with the pod's
// UID: a pod deleted and made again starts from zero.
type podRestarts struct {
	uid        string
	containers map[string]int32
	last       map[string]string // how each container last ended, if it did
}

func (p podRestarts) total() (n int32) {
	for _, c := range p.containers {
		n += c
	}
	return n
}

// restarts is every container restart of the release's pods now.
func (r *release) restarts(t *testing.T) map[string]podRestarts {
	t.Helper()
	pods, err := r.pods(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]podRestarts{}
	for name, p := range pods {
		pr := podRestarts{uid: string(p.UID), containers: map[string]int32{}, last: map[string]string{}}
		for _, s := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
			pr.containers[s.Name] = s.RestartCount
			if term := s.LastTerminationState.Terminated; term != nil {
				pr.last[s.Name] = fmt.Sprintf("%s, exit %d at %s: %.200s", term.Reason, term.ExitCode, term.FinishedAt.UTC().Format(time.TimeOnly), term.Message)
			}
		}
		m[name] = pr
	}
	return m
}

// etcdTLS is the client side of the release's generated TLS Secret. Every
// member's certificate covers *.<fullname>-headless.<ns>.svc, so one server
// name checks them all when they are dialled by pod IP.
func (r *release) etcdTLS(ctx context.Context) (*tls.Config, error) {
	s, err := r.n.cs.CoreV1().Secrets(r.ns).Get(ctx, r.name+"-tls", metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(s.Data["tls.crt"], s.Data["tls.key"])
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.Data["ca.crt"])
	name := "member." + r.name + "-headless." + r.ns + ".svc"
	// etcd's client sets the server name to each endpoint's host, here a pod
	// IP that no certificate names; so the chain and name are checked here.
	return &tls.Config{
		Certificates:       []tls.Certificate{cert},
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no server certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: name, Roots: pool, Intermediates: inter})
			return err
		},
	}, nil
}

// health is what the members say about the cluster.
type health struct {
	voters, learners int
	leader           uint64
	leaderPod        string
}

// members asks every running pod's member for its status and the member
// list; it fails unless every pod's member answers under one leader.
func (r *release) members(ctx context.Context) (health, error) {
	var h health
	pods, err := r.pods(ctx)
	if err != nil {
		return h, err
	}
	tc, err := r.etcdTLS(ctx)
	if err != nil {
		return h, err
	}
	var eps []string
	byEP := map[string]string{}
	for name, p := range pods {
		if p.Status.PodIP == "" || p.DeletionTimestamp != nil {
			return h, fmt.Errorf("pod %s has no IP or is terminating", name)
		}
		ep := "https://" + p.Status.PodIP + ":2379"
		eps, byEP[ep] = append(eps, ep), name
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, TLS: tc, DialTimeout: 3 * time.Second, Logger: zap.NewNop(), Context: ctx})
	if err != nil {
		return h, err
	}
	defer cli.Close()
	for _, ep := range eps {
		st, err := cli.Status(ctx, ep)
		if err != nil {
			return h, fmt.Errorf("%s (%s): %w", byEP[ep], ep, err)
		}
		if len(st.Errors) > 0 {
			return h, fmt.Errorf("%s: %v", byEP[ep], st.Errors)
		}
		if h.leader != 0 && st.Leader != h.leader {
			return h, fmt.Errorf("%s sees leader %x, another member %x", byEP[ep], st.Leader, h.leader)
		}
		h.leader = st.Leader
		if st.Header.MemberId == st.Leader {
			h.leaderPod = byEP[ep]
		}
	}
	ml, err := cli.MemberList(ctx)
	if err != nil {
		return h, err
	}
	for _, m := range ml.Members {
		if m.IsLearner {
			h.learners++
		} else {
			h.voters++
		}
	}
	return h, nil
}

// waitSettled waits for the StatefulSet to have replicas Ready pods whose
// members are exactly replicas voters under one leader.
func (r *release) waitSettled(t *testing.T, replicas int, timeout time.Duration) health {
	t.Helper()
	var h health
	testtools.WaitFor(t, timeout, fmt.Sprintf("%d Ready pods with %d healthy voters", replicas, replicas), func(ctx context.Context) error {
		sts, err := r.statefulSet(ctx)
		if err != nil {
			return err
		}
		if sts.Status.ObservedGeneration < sts.Generation || int(sts.Status.ReadyReplicas) != replicas ||
			int(sts.Status.Replicas) != replicas || sts.Status.CurrentRevision != sts.Status.UpdateRevision {
			return fmt.Errorf("statefulset: %d replicas, %d ready, revision %s → %s", sts.Status.Replicas, sts.Status.ReadyReplicas, sts.Status.CurrentRevision, sts.Status.UpdateRevision)
		}
		if h, err = r.members(ctx); err != nil {
			return err
		}
		if h.voters != replicas || h.learners != 0 {
			return fmt.Errorf("%d voters and %d learners", h.voters, h.learners)
		}
		return nil
	})
	return h
}

// load writes ConfigMaps through the pods' kube-apiserver Service, the way a
// virtual cluster's users write, and records each one acknowledged.
type load struct {
	r      *release
	mu     sync.Mutex
	acked  []string
	failed int
	last   time.Time
	gap    time.Duration // the longest time without an acknowledged write since reset
	cancel context.CancelFunc
	done   chan struct{}
}

// startLoad starts writing ConfigMaps named prefix-NNNNNN; prior are names
// acknowledged before (by an earlier load) that verify checks too.
func startLoad(t *testing.T, r *release, prefix string, prior []string) *load {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{r: r, cancel: cancel, done: make(chan struct{}), last: time.Now(), acked: prior}
	go func() {
		defer close(l.done)
		for i := 0; ctx.Err() == nil; i++ {
			name := fmt.Sprintf("%s-%06d", prefix, i)
			cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := r.inner.CoreV1().ConfigMaps("default").Create(cctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"i": fmt.Sprint(i)},
			}, metav1.CreateOptions{})
			ccancel()
			l.mu.Lock()
			if err == nil {
				now := time.Now()
				l.gap = max(l.gap, now.Sub(l.last))
				l.acked, l.last = append(l.acked, name), now
			} else {
				l.failed++
			}
			l.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { l.stop() })
	return l
}

// stop ends the load and returns every acknowledged name.
func (l *load) stop() []string {
	l.cancel()
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.acked...)
}

// reset starts a new scenario's measurement of the longest gap.
func (l *load) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.gap, l.last, l.failed = 0, time.Now(), 0
}

// verify waits for a few new acknowledged writes, then reads every
// acknowledged ConfigMap back through the Service; it returns how many.
func (l *load) verify(t *testing.T) (acked, failed int, gap time.Duration) {
	t.Helper()
	l.mu.Lock()
	n0 := len(l.acked)
	l.mu.Unlock()
	testtools.WaitFor(t, 2*time.Minute, "new writes acknowledged through the kube-apiserver Service", func(context.Context) error {
		l.mu.Lock()
		defer l.mu.Unlock()
		if len(l.acked) < n0+5 {
			return fmt.Errorf("%d new acknowledged writes", len(l.acked)-n0)
		}
		return nil
	})
	l.mu.Lock()
	names := append([]string(nil), l.acked...)
	failed, gap = l.failed, max(l.gap, time.Since(l.last))
	l.mu.Unlock()
	var have map[string]bool
	testtools.WaitFor(t, time.Minute, "list ConfigMaps through the Service", func(ctx context.Context) error {
		list, err := l.r.inner.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		have = map[string]bool{}
		for _, c := range list.Items {
			have[c.Name] = true
		}
		return nil
	})
	var lost []string
	for _, name := range names {
		if !have[name] {
			lost = append(lost, name)
		}
	}
	if len(lost) > 0 {
		t.Fatalf("%d of %d acknowledged writes lost, first %s", len(lost), len(names), strings.Join(lost[:min(5, len(lost))], " "))
	}
	return len(names), failed, gap
}

// memberStatus reports whether the member at ep answers Status as a voter
// with no errors. It does not ask for a leader: a leader change during a
// rolling update leaves a second without one, and that is not lost quorum
// (the load's longest API gap measures it).
func memberStatus(ctx context.Context, ep string, tc *tls.Config) (bool, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, TLS: tc, DialTimeout: 2 * time.Second, Logger: zap.NewNop(), Context: ctx})
	if err != nil {
		return false, err
	}
	defer cli.Close()
	st, err := cli.Status(ctx, ep)
	if err != nil {
		return false, err
	}
	if st.IsLearner || len(st.Errors) > 0 {
		return false, fmt.Errorf("learner %t, errors %v", st.IsLearner, st.Errors)
	}
	return true, nil
}
