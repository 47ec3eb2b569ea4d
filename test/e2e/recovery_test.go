package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/storage/mvcc/testutil"

	"github.com/vetcd/vetcd/internal/testtools"
)

// recoveryConfig shortens the thresholds so scenarios run in seconds.
const recoveryConfig = `recovery:
  unresponsiveAfter: 10s
  learnerStuckAfter: 15s
`

// startRecoveryCluster runs a 3-replica cluster with short thresholds and
// a logged write load.
func startRecoveryCluster(t *testing.T, extraConfig string) (*cluster, *writer) {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "vetcd.yaml")
	if err := os.WriteFile(cfg, []byte(recoveryConfig+extraConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startUp(t, filepath.Join(t.TempDir(), "c"), freeBasePort(t, 3), 3, "--config", cfg)
	c.requireSettled(3)
	w := startWriter(t, c.client(3), "rec")
	w.waitAcked(100, 30*time.Second)
	return c, w
}

// finish checks what every recovery scenario must end with: three healthy
// voters, every acknowledged write, at most one supervisor restart each.
func finish(t *testing.T, c *cluster, w *writer, took time.Time) {
	t.Helper()
	st := c.requireSettled(3)
	w.waitAcked(50, time.Minute)
	w.verify(c.client(3))
	c.requireRestartsAtMost(1, 3)
	t.Logf("recovered in %s; %d healthy voters", time.Since(took).Round(time.Millisecond), len(st.Members))
}

// Database corruption: replica 2's bbolt file gets altered keys and values
// while it is stopped. etcd's initial corruption check refuses to start on
// it; the replica moves the data aside and rejoins, inside the process.
func TestRecoverCorruptDatabase(t *testing.T) {
	c, w := startRecoveryCluster(t, "")
	old := c.memberID(3, "vetcd-2")
	c.stopReplica(2)
	start := time.Now()
	if err := testutil.CorruptBBolt(filepath.Join(c.dir, "vetcd-2", "data", "member", "snap", "db")); err != nil {
		c.resumeSupervisor()
		t.Fatal(err)
	}
	c.resumeSupervisor()
	finish(t, c, w, start)
	if id := c.memberID(3, "vetcd-2"); id == old {
		t.Fatalf("vetcd-2 kept its old identity %x on corrupt data", id)
	}
	requireMovedAside(t, c, 2)
}

// Database deletion: member/snap/db removed while stopped.
func TestRecoverDeletedDatabase(t *testing.T) {
	c, w := startRecoveryCluster(t, "")
	c.stopReplica(2)
	start := time.Now()
	if err := os.Remove(filepath.Join(c.dir, "vetcd-2", "data", "member", "snap", "db")); err != nil {
		c.resumeSupervisor()
		t.Fatal(err)
	}
	c.resumeSupervisor()
	finish(t, c, w, start)
	requireMovedAside(t, c, 2)
}

// Volume deletion: the whole data dir is gone.
func TestRecoverDeletedVolume(t *testing.T) {
	c, w := startRecoveryCluster(t, "")
	c.stopReplica(2)
	start := time.Now()
	if err := os.RemoveAll(filepath.Join(c.dir, "vetcd-2", "data")); err != nil {
		c.resumeSupervisor()
		t.Fatal(err)
	}
	c.resumeSupervisor()
	finish(t, c, w, start)
}

// A member removed from outside (etcdctl member remove) rejoins by itself.
func TestRecoverRemovedFromOutside(t *testing.T) {
	c, w := startRecoveryCluster(t, "")
	id := c.memberID(3, "vetcd-2")
	start := time.Now()
	removeMember(t, c.client(2), id)
	finish(t, c, w, start)
	if c.memberID(3, "vetcd-2") == id {
		t.Fatal("vetcd-2 came back with its removed identity")
	}
}

// An unresponsive member (SIGSTOP past the threshold) is removed; after
// SIGCONT its replica finds itself removed and rejoins.
func TestRecoverUnresponsiveMember(t *testing.T) {
	c, w := startRecoveryCluster(t, "")
	id := c.memberID(3, "vetcd-2")
	pid := c.pid(2)
	start := time.Now()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// Removed after the 10s threshold, not before.
	waitFor(t, 40*time.Second, "vetcd-2 removed", func() bool { return len(c.status(2).Members) == 2 })
	if took := time.Since(start); took < 10*time.Second {
		t.Fatalf("removed after %s, before the 10s threshold", took)
	}
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	finish(t, c, w, start)
	if c.memberID(3, "vetcd-2") == id {
		t.Fatal("vetcd-2 came back with its removed identity")
	}
	if n := c.metric(c.leaderOrdinal(), `vetcd_recoveries_total{reason="unresponsive"}`); n < 1 {
		t.Errorf("vetcd_recoveries_total{reason=\"unresponsive\"} = %v on the leader", n)
	}
}

// A stuck learner: a learner whose replica never starts (its peer traffic
// is cut entirely: the member was added but nothing answers at its peer
// URL) is removed after learnerStuckAfter; when the replica runs again it
// joins and is promoted.
func TestRecoverStuckLearner(t *testing.T) {
	c, w := startRecoveryCluster(t, "")
	id := c.memberID(3, "vetcd-2")
	c.stopReplica(2)
	t.Cleanup(c.resumeSupervisor) // also when a wait below fails the test
	deadline := time.Now().Add(30 * time.Second)
	cli := c.client(2)
	removeMember(t, cli, id)
	var added *clientv3.MemberAddResponse
	// etcd refuses adds for 5s after a removal.
	testtools.WaitFor(t, time.Until(deadline), "add learner", func(ctx context.Context) error {
		var err error
		added, err = cli.MemberAddAsLearner(ctx, []string{fmt.Sprintf("https://127.0.0.1:%d", c.basePort+21)})
		return err
	})
	start := time.Now()
	waitFor(t, 45*time.Second, "stuck learner removed", func() bool {
		for _, m := range c.status(2).Members {
			if m.ID == strconv.FormatUint(added.Member.ID, 16) {
				return false
			}
		}
		return true
	})
	if took := time.Since(start); took < 14*time.Second {
		t.Fatalf("stuck learner removed after %s, before the 15s threshold", took)
	}
	c.resumeSupervisor()
	finish(t, c, w, start)
}

// A CORRUPT alarm raised at run time on replica 2: the member is replaced
// and the alarm disarmed only after it is out of the cluster.
func TestRecoverCorruptAlarm(t *testing.T) {
	c, w := startRecoveryCluster(t, "")
	id := c.memberID(3, "vetcd-2")
	start := time.Now()
	raiseAlarm(t, c, id, pb.AlarmType_CORRUPT)
	waitFor(t, 30*time.Second, "alarm disarmed", func() bool { return len(alarms(t, c)) == 0 })
	if c.memberIDIn(3, "vetcd-2") == id {
		t.Fatal("the CORRUPT alarm was disarmed while the corrupt member was still in the cluster")
	}
	finish(t, c, w, start)
	if c.memberID(3, "vetcd-2") == id {
		t.Fatal("vetcd-2 came back with its corrupt identity")
	}
}

// NOSPACE: a small quota fills; the controller compacts, defragments one
// member at a time and disarms, and writes resume by themselves.
func TestRecoverNoSpace(t *testing.T) {
	c, w := startRecoveryCluster(t, "extraArgs: [\"--quota-backend-bytes=16777216\"]\n")
	w.stop()
	ow := startOverwriter(t, c.client(3), "big", 64, 32<<10)
	start := time.Now()
	waitFor(t, 2*time.Minute, "NOSPACE recovered", func() bool {
		return c.metric(c.leaderOrdinal(), `vetcd_recoveries_total{reason="nospace"}`) >= 3 // compact, defrags, disarm
	})
	ow.waitAcked(100, time.Minute) // writes resume
	ow.stop()
	if ow.noSpaceErrors() == 0 {
		t.Fatal("the quota never filled: the test did not exercise NOSPACE")
	}
	ow.verify(c.client(3))
	c.requireSettled(3)
	c.requireRestartsAtMost(0, 3)
	t.Logf("NOSPACE hit %d times; writes resumed; recovered within %s", ow.noSpaceErrors(), time.Since(start).Round(time.Second))
	w.verify(c.client(3))
}

// No quorum: two of three replicas stopped (SIGSTOP, far past the
// threshold). Nothing is removed; when they return the cluster is whole,
// with the same members and all data.
func TestNoQuorumNothingRemoved(t *testing.T) {
	c, w := startRecoveryCluster(t, "")
	before := c.status(3)
	p1, p2 := c.pid(1), c.pid(2)
	for _, p := range []int{p1, p2} {
		if err := syscall.Kill(p, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	// The stop is held for 2.5x the unresponsive threshold and nothing may
	// happen: the fault's length is the test's input, there is no event to
	// await (what is checked is the membership after it).
	time.Sleep(25 * time.Second)
	for _, p := range []int{p1, p2} {
		if err := syscall.Kill(p, syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
	}
	finish(t, c, w, start)
	after := c.status(3)
	for i := range before.Members {
		if before.Members[i].ID != after.Members[i].ID {
			t.Fatalf("member %s changed identity %s -> %s without quorum", before.Members[i].Name, before.Members[i].ID, after.Members[i].ID)
		}
	}
}

// Two at once: replica 1 stops answering and replica 2 gets a CORRUPT alarm
// at the same time. They are recovered one after the other: at no moment
// are two members out of the cluster.
func TestRecoverTwoAtOnce(t *testing.T) {
	c, w := startRecoveryCluster(t, "")
	id2 := c.memberID(3, "vetcd-2")
	p1 := c.pid(1)
	stop := make(chan struct{})
	var minMembers = 3
	var mu sync.Mutex
	done := make(chan struct{})
	go func() { // the invariant, watched throughout
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			resp, err := c.client(1).MemberList(ctx)
			cancel()
			if err == nil {
				mu.Lock()
				minMembers = min(minMembers, len(resp.Members))
				mu.Unlock()
			}
		}
	}()
	start := time.Now()
	if err := syscall.Kill(p1, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	raiseAlarm(t, c, id2, pb.AlarmType_CORRUPT)
	// The stop is held for 2x the unresponsive threshold, so that both
	// recoveries are due at once; the fault's length is the test's input,
	// not a condition to await.
	time.Sleep(20 * time.Second)
	if err := syscall.Kill(p1, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 90*time.Second, "alarm disarmed", func() bool { return len(alarms(t, c)) == 0 })
	finish(t, c, w, start)
	close(stop)
	<-done
	if minMembers < 2 {
		t.Fatalf("at some moment only %d members were in the cluster: two recoveries in flight", minMembers)
	}
}

// removeMember is `etcdctl member remove`, retried while etcd refuses
// membership changes right after one (its 5s strict-reconfig window).
func removeMember(t *testing.T, cli *clientv3.Client, id uint64) {
	t.Helper()
	testtools.WaitFor(t, 30*time.Second, fmt.Sprintf("member remove %x", id), func(ctx context.Context) error {
		_, err := cli.MemberRemove(ctx, id)
		if err != nil && !errors.Is(err, rpctypes.ErrUnhealthy) {
			t.Fatalf("member remove %x: %v", id, err)
		}
		return err
	})
}

func requireMovedAside(t *testing.T, c *cluster, i int) {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(c.dir, fmt.Sprintf("vetcd-%d", i), "data.aside-*"))
	if len(m) == 0 {
		t.Fatalf("vetcd-%d's bad data was not moved aside", i)
	}
}

// waitFor is testtools.WaitFor for a condition that only says yes or no;
// a wait that can say what it last saw calls testtools.WaitFor itself.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testtools.WaitFor(t, timeout, what, func(context.Context) error {
		if !cond() {
			return errors.New("the condition still does not hold")
		}
		return nil
	})
}

func raiseAlarm(t *testing.T, c *cluster, id uint64, typ pb.AlarmType) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cli := c.client(1)
	_, err := pb.NewMaintenanceClient(cli.ActiveConnection()).Alarm(ctx, &pb.AlarmRequest{Action: pb.AlarmRequest_ACTIVATE, MemberID: id, Alarm: typ})
	if err != nil {
		t.Fatalf("raise %s alarm: %v", typ, err)
	}
}

func alarms(t *testing.T, c *cluster) []*pb.AlarmMember {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.client(3).AlarmList(ctx)
	if err != nil {
		return []*pb.AlarmMember{{}} // unknown: not yet clear
	}
	return resp.Alarms
}

// memberIDIn is memberID that returns 0 when the member is absent.
func (c *cluster) memberIDIn(n int, name string) uint64 {
	for _, m := range c.status(n).Members {
		if m.Name == name {
			id, _ := strconv.ParseUint(m.ID, 16, 64)
			return id
		}
	}
	return 0
}

// leaderOrdinal is the ordinal of the leading replica.
func (c *cluster) leaderOrdinal() int {
	for _, m := range c.status(3).Members {
		if m.Role == "leader" {
			if i, err := strconv.Atoi(strings.TrimPrefix(m.Name, "vetcd-")); err == nil {
				return i
			}
		}
	}
	return 0
}

// overwriter rewrites a fixed set of keys with large values, so that old
// versions pile up and compaction can free them; values carry a sequence
// number so that a read can tell an acknowledged write from a later one.
type overwriter struct {
	*writer
	mu      sync.Mutex
	lastSeq map[string]int
	nospace int
}

func startOverwriter(t *testing.T, cli *clientv3.Client, prefix string, keys, size int) *overwriter {
	ctx, cancel := context.WithCancel(context.Background())
	ow := &overwriter{writer: &writer{t: t, cli: cli, prefix: prefix, cancel: cancel, done: make(chan struct{}), acked: map[string]string{}, lastAck: time.Now()}, lastSeq: map[string]int{}}
	pad := strings.Repeat("x", size)
	go func() {
		defer close(ow.done)
		for seq := 0; ctx.Err() == nil; seq++ {
			k := fmt.Sprintf("%s/%03d", prefix, seq%keys)
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := cli.Put(cctx, k, fmt.Sprintf("%010d:%s", seq, pad))
			cancel()
			ow.mu.Lock()
			if err == nil {
				ow.lastSeq[k] = seq
				ow.writer.mu.Lock()
				ow.acked[k] = strconv.Itoa(seq)
				ow.acks++
				ow.writer.mu.Unlock()
			} else if strings.Contains(err.Error(), "database space exceeded") {
				ow.nospace++
			}
			ow.mu.Unlock()
			if err != nil { // a back-off while the quota is full
				select {
				case <-ctx.Done():
				case <-time.After(50 * time.Millisecond):
				}
			}
		}
	}()
	t.Cleanup(ow.stop)
	return ow
}

func (ow *overwriter) noSpaceErrors() int {
	ow.mu.Lock()
	defer ow.mu.Unlock()
	return ow.nospace
}

// verify checks that each key holds its last acknowledged write or a
// later one (an unacknowledged write may still have been applied).
func (ow *overwriter) verify(cli *clientv3.Client) {
	ow.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, ow.prefix+"/", clientv3.WithPrefix())
	if err != nil {
		ow.t.Fatalf("read back: %v", err)
	}
	got := map[string]int{}
	for _, kv := range resp.Kvs {
		seq, _ := strconv.Atoi(strings.SplitN(string(kv.Value), ":", 2)[0])
		got[string(kv.Key)] = seq
	}
	ow.mu.Lock()
	defer ow.mu.Unlock()
	for k, seq := range ow.lastSeq {
		if got[k] < seq {
			ow.t.Errorf("acknowledged write lost: %s holds write %d, write %d was acknowledged", k, got[k], seq)
		}
	}
	ow.t.Logf("all %d keys hold their last acknowledged write or a later one", len(ow.lastSeq))
}
