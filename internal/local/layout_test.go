package local

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vetcd/vetcd/internal/config"
	"github.com/vetcd/vetcd/internal/topology"
)

func TestCheckDir(t *testing.T) {
	root := t.TempDir()
	file := filepath.Join(root, "file")
	must(t, os.WriteFile(file, nil, 0o600))
	foreign := filepath.Join(root, "foreign")
	must(t, os.MkdirAll(filepath.Join(foreign, "x"), 0o700))
	cluster := filepath.Join(root, "cluster")
	must(t, os.MkdirAll(cluster, 0o700))
	must(t, os.WriteFile(filepath.Join(cluster, "local.json"), []byte("{}"), 0o600))
	empty := filepath.Join(root, "empty")
	must(t, os.MkdirAll(empty, 0o700))
	tests := []struct {
		dir string
		err string
	}{
		{filepath.Join(root, "new"), ""},
		{empty, ""},
		{cluster, ""},
		{file, "not a directory"},
		{foreign, "not a vetcd cluster dir"},
	}
	for _, tc := range tests {
		t.Run(filepath.Base(tc.dir), func(t *testing.T) {
			err := CheckDir(tc.dir)
			if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("CheckDir(%s) = %v, want %q", tc.dir, err, tc.err)
			}
		})
	}
}

func TestSettingsReplicaPorts(t *testing.T) {
	s := Settings{Host: "127.0.0.1", BasePort: 2379}
	var rs []topology.Replica
	for i := 0; i < MaxReplicas; i++ {
		rs = append(rs, s.Replica(i))
	}
	if err := topology.ValidateReplicas(rs); err != nil {
		t.Fatalf("replica endpoints collide: %v", err)
	}
	r0 := s.Replica(0)
	if r0.ClientURL != "https://127.0.0.1:2379" || r0.PeerURL != "https://127.0.0.1:2380" || r0.Name != "vetcd-0" {
		t.Fatalf("vetcd-0 is not on etcd's ports: %+v", r0)
	}
}

func TestPrepareRefusesIdentityKeysAndWritesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c")
	base := config.Default()
	base.DataDir = "/elsewhere"
	base.ClientURL = "https://x:1"
	_, err := Prepare(Options{Dir: dir, Base: base})
	if err == nil || !strings.Contains(err.Error(), "dataDir") || !strings.Contains(err.Error(), "clientURL") {
		t.Fatalf("Prepare = %v, want an error naming dataDir and clientURL", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatal("Prepare wrote the dir despite bad input")
	}
}

func TestPrepareNewAndResumedDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c")
	sup, err := Prepare(Options{Dir: dir, Base: config.Default(), BasePort: 40000, Replicas: 2})
	must(t, err)
	f, err := topology.ReadFile(sup.layout.TopologyPath())
	must(t, err)
	if f.Desired != 2 || len(f.Replicas) != 2 {
		t.Fatalf("desired %d, %d replicas", f.Desired, len(f.Replicas))
	}
	for _, p := range []string{"ca.crt", "member.key", "client.crt"} {
		if _, err := os.Stat(filepath.Join(dir, "pki", p)); err != nil {
			t.Fatal(err)
		}
	}
	sup.Close()
	// Resuming keeps the count and the ports; another base port is refused.
	sup, err = Prepare(Options{Dir: dir, Base: config.Default()})
	must(t, err)
	sup.Close()
	if f, _ := topology.ReadFile(sup.layout.TopologyPath()); f.Desired != 2 {
		t.Fatalf("resumed desired %d, want 2", f.Desired)
	}
	if _, err := Prepare(Options{Dir: dir, Base: config.Default(), BasePort: 41000}); err == nil {
		t.Fatal("a different base port on an existing dir was accepted")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// With PeerProxy (set only in a local.json written beforehand, by the chaos
// suite) a replica still advertises BASE+10N+1 but listens for peers on
// BASE+10N+PeerProxyPortOffset, where a test's proxy forwards to; without
// it both are the same port.
func TestReplicaConfigPeerProxy(t *testing.T) {
	for _, tc := range []struct {
		proxy      bool
		wantListen string
	}{
		{false, "https://127.0.0.1:30021"},
		{true, "https://127.0.0.1:30025"},
	} {
		sup := &Supervisor{opts: Options{Base: config.Default()}, layout: Layout{Dir: t.TempDir()},
			settings: Settings{Host: "127.0.0.1", BasePort: 30000, PeerProxy: tc.proxy}}
		c, err := sup.replicaConfig(2)
		must(t, err)
		if c.PeerURL != "https://127.0.0.1:30021" || c.ListenPeerURL != tc.wantListen {
			t.Errorf("PeerProxy %v: peerURL %s, listenPeerURL %s; want https://127.0.0.1:30021 and %s", tc.proxy, c.PeerURL, c.ListenPeerURL, tc.wantListen)
		}
	}
}
