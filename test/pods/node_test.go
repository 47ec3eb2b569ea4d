package pods

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/vetcd/vetcd/internal/testtools"
)

// node is the single-node Kubernetes of hack/kube, started for this test
// binary: containerd, kubelet, kube-proxy and a control plane on this machine.
type node struct {
	root, dir, bin string // repository, KUBE_DIR, the kube tools
	kubeconfig     string
	cs             kubernetes.Interface
	before         machineState
}

// kubeDir is fixed, not a temporary directory, so a run after a crashed one
// finds the state to clean up (up.sh runs down.sh first).
const kubeDir = "/tmp/vetcd-kube"

func repoRoot(t *testing.T) string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("no caller")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// startNode builds the images the node runs (vetcd's from `make image`, and
// kube-apiserver, MinIO, CoreDNS and the sandbox's pause from the binaries the
// tests already have), runs up.sh, and registers down.sh.
func startNode(t *testing.T) *node {
	t.Helper()
	if os.Geteuid() != 0 {
		msg := "test/pods runs a kubelet and containerd: it must run as root"
		if os.Getenv("VETCD_REQUIRE_TOOLS") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	n := &node{root: repoRoot(t), dir: kubeDir, bin: testtools.Path(t, "kube")}
	vetcdImage := os.Getenv("VETCD_IMAGE")
	if vetcdImage == "" {
		vetcdImage = filepath.Join(n.root, "bin", "image", "vetcd.tar")
	}
	if _, err := os.Stat(vetcdImage); err != nil {
		msg := "vetcd's image " + vetcdImage + " is missing: run `make image` (make e2e-kube does)"
		if os.Getenv("VETCD_REQUIRE_TOOLS") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	images := filepath.Join(n.dir, "images")
	if err := os.MkdirAll(images, 0o755); err != nil {
		t.Fatal(err)
	}
	tool := filepath.Join(n.dir, "image-tool")
	run(t, 3*time.Minute, filepath.Join(n.root, "hack", "image"), nil, "go", "build", "-o", tool, ".")
	for _, im := range []struct{ binary, path, tag, user string }{
		{testtools.Path(t, "kube-apiserver"), "/usr/local/bin/kube-apiserver", "vetcd.local/kube-apiserver:v1.37.2", "65532:65532"},
		{testtools.Path(t, "minio"), "/usr/local/bin/minio", "vetcd.local/minio:dev", "65532:65532"},
		{filepath.Join(n.bin, "coredns"), "/coredns", "vetcd.local/coredns:v1", "0:0"},
		{filepath.Join(n.bin, "pause"), "/pause", "vetcd.local/pause:v1", "65535:65535"},
	} {
		out := filepath.Join(images, filepath.Base(im.path)+".tar")
		run(t, time.Minute, n.root, nil, tool, "-binary", im.binary, "-path", im.path, "-tag", im.tag, "-user", im.user, "-out", out)
	}
	copyFile(t, vetcdImage, filepath.Join(images, "vetcd.tar"))

	if pids, _ := os.ReadDir(filepath.Join(n.dir, "pids")); len(pids) > 0 {
		t.Logf("pods: %s has state of a run that did not finish; cleaning it up first", n.dir)
		n.down(t)
	}
	n.before = readMachine(t, n)
	t.Cleanup(func() { n.down(t) })
	env := []string{"KUBE_DIR=" + n.dir, "KUBE_BIN=" + n.bin, "KUBE_IMAGES=" + images, "KUBE_ETCD=" + testtools.Path(t, "etcd36")}
	start := time.Now()
	if out, err := runErr(5*time.Minute, n.root, env, "hack/kube/up.sh"); err != nil {
		t.Fatalf("hack/kube/up.sh: %v\n%s\n%s", err, out, n.logs())
	}
	t.Logf("pods: node up in %s", time.Since(start).Round(time.Second))
	n.kubeconfig = filepath.Join(n.dir, "pki", "admin.kubeconfig")
	cfg, err := clientcmd.BuildConfigFromFlags("", n.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if n.cs, err = kubernetes.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	return n
}

// down runs down.sh; safe to call twice.
func (n *node) down(t *testing.T) {
	t.Helper()
	env := []string{"KUBE_DIR=" + n.dir, "KUBE_BIN=" + n.bin}
	if out, err := runErr(3*time.Minute, n.root, env, "hack/kube/down.sh"); err != nil {
		t.Errorf("hack/kube/down.sh: %v\n%s", err, out)
	}
}

// logs is the tail of every process log of the node, for a failure message.
func (n *node) logs() string {
	var b strings.Builder
	files, _ := filepath.Glob(filepath.Join(n.dir, "log", "*.log"))
	for _, f := range files {
		data, _ := os.ReadFile(f)
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		fmt.Fprintf(&b, "--- %s (last lines)\n%s\n", filepath.Base(f), strings.Join(lines[max(0, len(lines)-15):], "\n"))
	}
	return b.String()
}

// kubectl runs the node's kubectl and returns its output.
func (n *node) kubectl(t *testing.T, args ...string) string {
	t.Helper()
	return run(t, 2*time.Minute, n.root, []string{"KUBECONFIG=" + n.kubeconfig}, filepath.Join(n.bin, "kubectl"), args...)
}

// ctr runs containerd's ctr in the CRI's namespace.
func (n *node) ctr(t *testing.T, args ...string) string {
	t.Helper()
	return run(t, time.Minute, n.root, nil, filepath.Join(n.bin, "ctr"), append([]string{"-a", filepath.Join(n.dir, "containerd", "containerd.sock"), "-n", "k8s.io"}, args...)...)
}

// helm runs helm against the node.
func (n *node) helm(t *testing.T, args ...string) string {
	t.Helper()
	home := filepath.Join(n.dir, "helm")
	env := []string{"KUBECONFIG=" + n.kubeconfig, "HELM_CACHE_HOME=" + home, "HELM_CONFIG_HOME=" + home, "HELM_DATA_HOME=" + home}
	return run(t, 5*time.Minute, n.root, env, testtools.Path(t, "helm"), args...)
}

func run(t *testing.T, timeout time.Duration, dir string, env []string, name string, args ...string) string {
	t.Helper()
	out, err := runErr(timeout, dir, env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func runErr(timeout time.Duration, dir string, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// machineState is what the node may change on this machine and down.sh must
// put back: processes of the node, network namespaces, links, iptables chains,
// nftables tables, mounts, cgroups and kernel settings.
type machineState map[string][]string

var sysctls = []string{
	"net.ipv4.ip_forward", "net.ipv4.conf.all.route_localnet", "vm.overcommit_memory", "kernel.panic",
	"kernel.panic_on_oops", "net.netfilter.nf_conntrack_max", "net.netfilter.nf_conntrack_tcp_timeout_established",
	"net.netfilter.nf_conntrack_tcp_timeout_close_wait",
}

func readMachine(t *testing.T, n *node) machineState {
	t.Helper()
	lines := func(name string, args ...string) []string {
		out, _ := runErr(30*time.Second, "/", nil, name, args...)
		var l []string
		for _, s := range strings.Split(out, "\n") {
			if s = strings.TrimSpace(s); s != "" {
				l = append(l, s)
			}
		}
		sort.Strings(l)
		return l
	}
	m := machineState{}
	for _, s := range sysctls {
		v, _ := runErr(5*time.Second, "/", nil, "sysctl", "-n", s)
		m["sysctl"] = append(m["sysctl"], s+"="+strings.TrimSpace(v))
	}
	for _, l := range lines("ip", "-o", "link", "show") {
		if f := strings.Fields(l); len(f) > 1 {
			m["links"] = append(m["links"], strings.Split(strings.TrimSuffix(f[1], ":"), "@")[0])
		}
	}
	m["netns"] = lines("ip", "netns", "list")
	m["nft"] = lines("nft", "list", "tables")
	for _, table := range []string{"nat", "filter", "mangle"} {
		for _, l := range lines("iptables", "-t", table, "-S") {
			if strings.Contains(l, "KUBE-") || strings.Contains(l, "CNI-") {
				m["iptables"] = append(m["iptables"], table+": "+l)
			}
		}
	}
	for _, l := range lines("cat", "/proc/self/mountinfo") {
		if f := strings.Fields(l); len(f) > 4 && (strings.HasPrefix(f[4], n.dir+"/") || strings.Contains(f[4], "containerd") || strings.Contains(f[4], "kubelet") || strings.HasPrefix(f[4], "/run/netns")) {
			m["mounts"] = append(m["mounts"], f[4])
		}
	}
	for _, l := range lines("ps", "-eo", "args") {
		if strings.Contains(l, n.bin) || strings.Contains(l, n.dir) || strings.HasPrefix(l, "containerd-shim") {
			m["processes"] = append(m["processes"], l)
		}
	}
	cg, _ := filepath.Glob("/sys/fs/cgroup/*/kubepods")
	cg2, _ := filepath.Glob("/sys/fs/cgroup/*/k8s.io")
	m["cgroups"] = append(cg, cg2...)
	return m
}

// diff names what differs between two states.
func (m machineState) diff(after machineState) []string {
	var d []string
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for k := range after {
		if _, ok := m[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range slices.Compact(keys) {
		for _, v := range after[k] {
			if !slices.Contains(m[k], v) {
				d = append(d, k+": left behind: "+v)
			}
		}
		for _, v := range m[k] {
			if !slices.Contains(after[k], v) {
				d = append(d, k+": gone: "+v)
			}
		}
	}
	return d
}
