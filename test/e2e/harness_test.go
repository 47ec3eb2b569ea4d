// Package e2e runs the built vetcd binary as separate processes (`vetcd
// up`, which runs one `vetcd serve` per replica) and injects real faults:
// kill -9, SIGTERM at once to every surplus replica, deleted data. Every
// scenario runs a continuous write load that logs each acknowledged write,
// and checks afterwards that every one reads back.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/vetcd/vetcd/internal/local"
	"github.com/vetcd/vetcd/internal/pki"
	"github.com/vetcd/vetcd/internal/status"
	"github.com/vetcd/vetcd/internal/testtools"
)

// binary is the vetcd binary under test: $VETCD_BIN, or built once by
// TestMain.
var binary string

func TestMain(m *testing.M) {
	binary = os.Getenv("VETCD_BIN")
	if binary == "" {
		dir, err := os.MkdirTemp("", "vetcd-e2e-bin")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		binary = filepath.Join(dir, "vetcd")
		cmd := exec.Command("go", "build", "-o", binary, "../../cmd/vetcd")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build vetcd:", err)
			os.Exit(1)
		}
		defer os.RemoveAll(dir)
	}
	os.Exit(m.Run())
}

// freeBasePort finds a base port with the 10*n ports above it free.
func freeBasePort(t *testing.T, n int) int {
	t.Helper()
	// Below the kernel's ephemeral range: a port in it can be taken at any
	// moment as the source port of an outgoing connection (any client on
	// the machine), and the replica that should listen there then fails
	// to bind for as long as that connection lives.
	lo, top := 10000, ephemeralLow()-10*n
	if top-lo < 1000 {
		t.Fatalf("the ephemeral port range starts at %d: no room below it for %d ports", top+10*n, 10*n)
	}
	for try := 0; try < 200; try++ {
		base := lo + 10*rand.IntN((top-lo)/10)
		ok := true
		var lns []net.Listener
		for p := base; p < base+10*n; p++ {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				ok = false
				break
			}
			lns = append(lns, ln)
		}
		for _, ln := range lns {
			ln.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free port range")
	return 0
}

// ephemeralLow is where the kernel's ephemeral (outgoing) port range
// starts: net.ipv4.ip_local_port_range, 32768 when unreadable.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	var lo, hi int
	if _, err := fmt.Sscan(string(b), &lo, &hi); err != nil || lo <= 0 {
		return 32768
	}
	return lo
}

// cluster is a running `vetcd up`.
type cluster struct {
	t        *testing.T
	dir      string
	basePort int
	cmd      *exec.Cmd
	out      *lineBuffer
	done     chan error
}

// lineBuffer collects a process's output for waiting on lines.
type lineBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (b *lineBuffer) add(l string) {
	b.mu.Lock()
	b.lines = append(b.lines, l)
	b.mu.Unlock()
}

func (b *lineBuffer) count(substr string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, l := range b.lines {
		if strings.Contains(l, substr) {
			n++
		}
	}
	return n
}

func (b *lineBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.lines, "\n")
}

// startUp runs `vetcd up` on dir and waits for its "cluster is ready" line.
// The cluster is stopped when the test ends.
func startUp(t *testing.T, dir string, basePort, replicas int, extra ...string) *cluster {
	t.Helper()
	args := []string{"up", "--dir", dir, "--base-port", strconv.Itoa(basePort)}
	if replicas > 0 {
		args = append(args, "--replicas", strconv.Itoa(replicas))
	}
	args = append(args, extra...)
	c := &cluster{t: t, dir: dir, basePort: basePort, out: &lineBuffer{}, done: make(chan error, 1)}
	c.cmd = exec.Command(binary, args...)
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(t.TempDir(), "up.log"))
	if err != nil {
		t.Fatal(err)
	}
	c.cmd.Stderr = logf
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			c.out.add(sc.Text())
		}
		c.done <- c.cmd.Wait()
		logf.Close()
	}()
	t.Cleanup(func() {
		c.stop()
		if t.Failed() {
			c.dumpLogs(logf.Name())
		}
	})
	c.waitLine("cluster is ready", 1, 2*time.Minute)
	return c
}

// waitLine waits until substr has been printed n times.
func (c *cluster) waitLine(substr string, n int, timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for c.out.count(substr) < n {
		if time.Now().After(deadline) {
			c.t.Fatalf("vetcd up did not print %q %d times within %s; output:\n%s", substr, n, timeout, c.out)
		}
		select {
		case err := <-c.done:
			c.done <- err
			c.t.Fatalf("vetcd up exited (%v) before printing %q; output:\n%s", err, substr, c.out)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM to `vetcd up` and waits for it to stop every replica;
// anything left after the deadline is killed.
func (c *cluster) stop() {
	if c.cmd.ProcessState != nil {
		return
	}
	c.resumeSupervisor() // a test may have failed while it was paused
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c.done:
		c.done <- err
	case <-time.After(90 * time.Second):
		c.t.Errorf("vetcd up did not stop within 90s")
		_ = c.cmd.Process.Kill()
		<-c.done
	}
	// No replica may outlive its supervisor.
	for i := 0; i < local.MaxReplicas; i++ {
		if pid := c.pid(i); pid > 0 && syscall.Kill(pid, 0) == nil {
			c.t.Errorf("replica %d (pid %d) still runs after vetcd up stopped", i, pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func (c *cluster) dumpLogs(upLog string) {
	b, _ := os.ReadFile(upLog)
	c.t.Logf("vetcd up stderr (tail):\n%s", tail(string(b), 60))
	for i := 0; i < 6; i++ {
		b, err := os.ReadFile(filepath.Join(c.dir, local.ReplicaName(i), "serve.log"))
		if err == nil {
			c.t.Logf("%s serve.log (tail):\n%s", local.ReplicaName(i), tail(string(b), 40))
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// pid returns the pid of replica i's serve process, or 0.
func (c *cluster) pid(i int) int {
	b, err := os.ReadFile(filepath.Join(c.dir, local.ReplicaName(i), "pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// vetcd runs a vetcd CLI command and returns its combined output.
func vetcd(t *testing.T, timeout time.Duration, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// scale runs `vetcd scale n --wait` and fails the test if it fails.
func (c *cluster) scale(n int) time.Duration {
	c.t.Helper()
	start := time.Now()
	out, err := vetcd(c.t, 4*time.Minute, "scale", strconv.Itoa(n), "--dir", c.dir, "--wait", "--timeout", "3m")
	if err != nil {
		c.t.Fatalf("vetcd scale %d: %v\n%s", n, err, out)
	}
	return time.Since(start)
}

func (c *cluster) tlsConfig() *tls.Config {
	c.t.Helper()
	f := pki.FilesIn(filepath.Join(c.dir, "pki"))
	cfg, err := pki.ClientConfig(f.CA, f.ClientCert, f.ClientKey)
	if err != nil {
		c.t.Fatal(err)
	}
	return cfg
}

func (c *cluster) endpoints(n int) []string {
	var eps []string
	for i := 0; i < n; i++ {
		eps = append(eps, fmt.Sprintf("https://127.0.0.1:%d", c.basePort+10*i))
	}
	return eps
}

// client returns an etcd client over the first n replicas' endpoints.
func (c *cluster) client(n int) *clientv3.Client {
	c.t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   c.endpoints(n),
		TLS:         c.tlsConfig(),
		DialTimeout: 2 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cli.Close() })
	return cli
}

// status reads the cluster through the first n replicas.
func (c *cluster) status(n int) status.Cluster {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := status.Get(ctx, c.endpoints(n), c.tlsConfig())
	if err != nil {
		c.t.Fatalf("status: %v", err)
	}
	return st
}

// requireSettled checks the member list: n members, all healthy voters.
func (c *cluster) requireSettled(n int) status.Cluster {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := status.Wait(ctx, func() []string { return c.endpoints(n) }, c.tlsConfig(), n)
	if err != nil {
		c.t.Fatalf("member list: %v", err)
	}
	return st
}

// statusJSON runs `vetcd status -o json`, the user's view.
func (c *cluster) statusJSON() status.Cluster {
	c.t.Helper()
	out, err := vetcd(c.t, 30*time.Second, "status", "--dir", c.dir, "-o", "json")
	if err != nil {
		c.t.Fatalf("vetcd status: %v\n%s", err, out)
	}
	var st status.Cluster
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		c.t.Fatalf("vetcd status -o json: %v\n%s", err, out)
	}
	return st
}

// restarts is how often the supervisor restarted replica i.
func (c *cluster) restarts(i int) int {
	b, err := os.ReadFile(filepath.Join(c.dir, local.ReplicaName(i), "restarts"))
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// writer is a continuous write load that logs every acknowledged write.
type writer struct {
	t      *testing.T
	cli    *clientv3.Client
	prefix string
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	acked    map[string]string
	acks     int // acknowledged writes, counting overwrites
	lastAck  time.Time
	maxGap   time.Duration
	failures int
}

// startWriter writes prefix/<n> = v<n> in a loop until stopped.
func startWriter(t *testing.T, cli *clientv3.Client, prefix string) *writer {
	ctx, cancel := context.WithCancel(context.Background())
	w := &writer{t: t, cli: cli, prefix: prefix, cancel: cancel, done: make(chan struct{}), acked: map[string]string{}, lastAck: time.Now()}
	go w.run(ctx)
	t.Cleanup(w.stop)
	return w
}

func (w *writer) run(ctx context.Context) {
	defer close(w.done)
	for i := 0; ctx.Err() == nil; i++ {
		k, v := fmt.Sprintf("%s/%08d", w.prefix, i), fmt.Sprintf("v%d-%d", i, time.Now().UnixNano())
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := w.cli.Put(cctx, k, v)
		cancel()
		now := time.Now()
		w.mu.Lock()
		if err == nil {
			w.acked[k] = v
			w.acks++
			w.maxGap = max(w.maxGap, now.Sub(w.lastAck))
			w.lastAck = now
		} else {
			w.failures++
		}
		w.mu.Unlock()
		pause := 5 * time.Millisecond // a steady load, not a flood
		if err != nil {
			pause = 20 * time.Millisecond
		}
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
	}
}

func (w *writer) stop() {
	w.cancel()
	<-w.done
}

// resetGap starts measuring the write-unavailability window afresh.
func (w *writer) resetGap() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.maxGap = 0
	w.lastAck = time.Now()
}

// gap is the longest time without an acknowledged write since resetGap.
func (w *writer) gap() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return max(w.maxGap, time.Since(w.lastAck))
}

func (w *writer) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acks
}

// waitAcked waits until n more writes were acknowledged.
func (w *writer) waitAcked(n int, timeout time.Duration) {
	w.t.Helper()
	target := w.count() + n
	testtools.WaitFor(w.t, timeout, fmt.Sprintf("%d more writes acknowledged", n), func(context.Context) error {
		if got := w.count(); got < target {
			return fmt.Errorf("writes stalled: %d acknowledged, want %d", got, target)
		}
		return nil
	})
}

// verify reads every acknowledged write back, linearizably.
func (w *writer) verify(cli *clientv3.Client) {
	w.t.Helper()
	w.mu.Lock()
	acked := make(map[string]string, len(w.acked))
	for k, v := range w.acked {
		acked[k] = v
	}
	w.mu.Unlock()
	if len(acked) == 0 {
		w.t.Fatal("no write was acknowledged")
	}
	var resp *clientv3.GetResponse
	var err error
	retry := time.NewTicker(500 * time.Millisecond)
	defer retry.Stop()
	for try := 0; try < 20; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err = cli.Get(ctx, w.prefix+"/", clientv3.WithPrefix())
		cancel()
		if err == nil {
			break
		}
		<-retry.C
	}
	if err != nil {
		w.t.Fatalf("read back: %v", err)
	}
	got := make(map[string]string, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		got[string(kv.Key)] = string(kv.Value)
	}
	lost := 0
	for k, v := range acked {
		if got[k] != v {
			if lost < 5 {
				w.t.Errorf("acknowledged write lost: %s=%s, read %q", k, v, got[k])
			}
			lost++
		}
	}
	if lost > 0 {
		w.t.Fatalf("%d of %d acknowledged writes lost", lost, len(acked))
	}
	w.t.Logf("all %d acknowledged writes read back (%d failed attempts during faults)", len(acked), w.failures)
}

// waitLeader waits until the named member leads.
func (c *cluster) waitLeader(name string, timeout time.Duration) {
	c.t.Helper()
	testtools.WaitFor(c.t, timeout, name+" leads", func(context.Context) error {
		leader := ""
		for _, m := range c.status(len(c.endpoints(5))).Members {
			if m.Role == "leader" {
				leader = m.Name
			}
		}
		if leader != name {
			return fmt.Errorf("leader is %q", leader)
		}
		return nil
	})
}

// pauseSupervisor stops `vetcd up` (SIGSTOP) so that it restarts nothing
// while a test damages a replica; resume lets it go on.
func (c *cluster) pauseSupervisor()  { _ = c.cmd.Process.Signal(syscall.SIGSTOP) }
func (c *cluster) resumeSupervisor() { _ = c.cmd.Process.Signal(syscall.SIGCONT) }

// stopReplica kills replica i with -9 while the supervisor is paused, and
// waits until the process is gone (a zombie of the paused supervisor
// counts as gone). The caller resumes the supervisor, which restarts it.
func (c *cluster) stopReplica(i int) {
	c.t.Helper()
	pid := c.pid(i)
	if pid == 0 {
		c.t.Fatalf("no pid for replica %d", i)
	}
	c.pauseSupervisor()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		c.resumeSupervisor()
		c.t.Fatalf("kill replica %d: %v", i, err)
	}
	gone := false
	defer func() { // also when WaitFor fails the test
		if !gone {
			c.resumeSupervisor()
		}
	}()
	testtools.WaitFor(c.t, 10*time.Second, fmt.Sprintf("replica %d (pid %d) gone after kill -9", i, pid), func(context.Context) error {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil || strings.Contains(string(b), ") Z ") {
			return nil
		}
		return errors.New("still running")
	})
	gone = true
}

// memberID returns the member ID of the named member, from status.
func (c *cluster) memberID(n int, name string) uint64 {
	c.t.Helper()
	for _, m := range c.status(n).Members {
		if m.Name == name {
			id, err := strconv.ParseUint(m.ID, 16, 64)
			if err != nil {
				c.t.Fatal(err)
			}
			return id
		}
	}
	c.t.Fatalf("no member %s", name)
	return 0
}

// requireRestartsAtMost fails if the supervisor restarted any replica more
// than n times: self-healing happens inside the process, not by crashing.
func (c *cluster) requireRestartsAtMost(n int, replicas int) {
	c.t.Helper()
	for i := 0; i < replicas; i++ {
		if r := c.restarts(i); r > n {
			c.t.Errorf("replica %d was restarted %d times by its supervisor (at most %d allowed: no crash loops)", i, r, n)
		}
	}
}

// metric reads one vetcd metric of replica i (0 when absent).
func (c *cluster) metric(i int, name string) float64 {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", c.basePort+10*i+3))
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, name+" ") {
			v, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(l, name)), 64)
			return v
		}
	}
	return 0
}
