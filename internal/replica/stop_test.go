package replica

import (
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// TestStopUnreadyMemberReturns: a member that never publishes itself (its
// initial cluster names two peers that never come) is not ready; stopping it
// must still return. embed's Close alone waits for readiness forever, which
// left a halted replica running its old member after a restore.
func TestStopUnreadyMemberReturns(t *testing.T) {
	tr := newTestReplica(t, t.TempDir(), nil)
	r, err := New(tr.cfg, Options{Logger: zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel))})
	if err != nil {
		t.Fatal(err)
	}
	initial := tr.cfg.Name + "=" + tr.cfg.PeerURL + ",absent-1=https://127.0.0.1:1,absent-2=https://127.0.0.1:2"
	e, err := r.startEtcd(t.Context(), startSpec{initialCluster: initial})
	if err != nil {
		t.Fatal(err)
	}
	r.setEtcd(e)
	select {
	case <-e.Server.ReadyNotify():
		t.Fatal("a member without quorum got ready; the test needs one that is not")
	case <-time.After(500 * time.Millisecond):
	}
	done := make(chan struct{})
	go func() { r.stopEtcd(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("stopping a member that is not ready did not return within 20s")
	}
}
