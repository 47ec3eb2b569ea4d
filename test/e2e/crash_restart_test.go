package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/vetcd/vetcd/internal/local"
	"github.com/vetcd/vetcd/internal/status"
)

// A replica killed with -9 restarts on its own data, as a stock etcd member
// would: same member ID, nothing moved aside, every acknowledged write
// kept. Each replica in turn, under a continuous write load; the
// supervisor restarts the process (issue 15: every kill -9 used to throw
// the member's data away as "unverifiable").
func TestCrashRestartKeepsData(t *testing.T) {
	c, w := startRecoveryCluster(t, "")
	for i := range 3 {
		name := local.ReplicaName(i)
		id := c.memberID(3, name)
		pid := c.pid(i)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill -9 %s (pid %d): %v", name, pid, err)
		}
		start := time.Now()
		waitFor(t, time.Minute, name+" restarted by its supervisor", func() bool {
			p := c.pid(i)
			return p != 0 && p != pid && syscall.Kill(p, 0) == nil
		})
		waitFor(t, 2*time.Minute, name+" back as a healthy voter", func() bool { return c.healthyVoter(name) })
		if got := c.memberID(3, name); got != id {
			t.Fatalf("%s came back as member %x, was %x: a kill -9 threw its data away", name, got, id)
		}
		requireNotMovedAside(t, c, i)
		w.waitAcked(50, time.Minute)
		t.Logf("%s restarted on its data as member %x in %s", name, id, time.Since(start).Round(time.Millisecond))
	}
	c.requireSettled(3)
	w.verify(c.client(3))
}

// healthyVoter reports whether the named member is in the member list as a
// started voter and answers its own status.
func (c *cluster) healthyVoter(name string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := status.Get(ctx, c.endpoints(3), c.tlsConfig())
	if err != nil || !st.Linearizable {
		return false
	}
	for _, m := range st.Members {
		if m.Name == name {
			return m.Healthy && m.Role != "learner"
		}
	}
	return false
}

func requireNotMovedAside(t *testing.T, c *cluster, i int) {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(c.dir, local.ReplicaName(i), "data.aside-*"))
	if len(m) > 0 {
		var sizes []string
		for _, d := range m {
			sizes = append(sizes, fmt.Sprintf("%s (%d MB)", filepath.Base(d), dirSize(d)>>20))
		}
		t.Fatalf("vetcd-%d moved its data aside: %v", i, sizes)
	}
}

func dirSize(dir string) int64 {
	var n int64
	_ = filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// A data dir deleted under a running replica (a lost volume, an rm -rf) is
// healed inside the process: the replica stops its member and rejoins with
// fresh data, and its process is never restarted by the supervisor. etcd
// alone would exit the process through lg.Fatal when its file purger finds
// the WAL dir gone (issue 15).
func TestDataDirDeletedWhileRunning(t *testing.T) {
	c, w := startRecoveryCluster(t, "")
	const i = 2
	name := local.ReplicaName(i)
	old := c.memberID(3, name)
	pid := c.pid(i)
	start := time.Now()
	if err := os.RemoveAll(filepath.Join(c.dir, name, "data")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for !(c.memberIDIn(3, name) != old && c.healthyVoter(name)) {
		if p := c.pid(i); p != pid || syscall.Kill(pid, 0) != nil {
			t.Fatalf("%s's process %d exited after its data dir was deleted (now pid %d, %d supervisor restarts): healed by the supervisor, not inside the process",
				name, pid, p, c.restarts(i))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not rejoin as a healthy voter within 2m after its data dir was deleted", name)
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("%s rejoined as member %x (was %x) in %s, in process %d", name, c.memberIDIn(3, name), old, time.Since(start).Round(time.Millisecond), pid)
	finish(t, c, w, start)
	if p := c.pid(i); p != pid || c.restarts(i) != 0 {
		t.Fatalf("%s's process was restarted (pid %d → %d, %d restarts)", name, pid, p, c.restarts(i))
	}
}
