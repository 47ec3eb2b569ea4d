package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/vetcd/vetcd/internal/local"
)

// Leaving replicas must not panic while clients poll them (issue 15: 3 of
// 12 scale-downs died with "panic: failed to find local ID in cluster
// members" in etcd's Status → IsLearner, after the member removed itself).
// Each replica's Status is polled hard, over connections opened before the
// scale-down, while 3 → 1 runs; several times, since it is a race.
func TestScaleDownUnderStatusPolling(t *testing.T) {
	iterations := 3
	if s := os.Getenv("VETCD_SCALE_STATUS_ITERATIONS"); s != "" {
		iterations, _ = strconv.Atoi(s)
	}
	for it := range iterations {
		dir := filepath.Join(t.TempDir(), "c")
		c := startUp(t, dir, freeBasePort(t, 3), 3)
		c.requireSettled(3)
		w := startWriter(t, c.client(1), "poll")
		w.waitAcked(50, 30*time.Second)

		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		var mu sync.Mutex
		polls := 0
		for _, ep := range c.endpoints(3) {
			cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, TLS: c.tlsConfig(), DialTimeout: time.Second, Logger: zap.NewNop()})
			if err != nil {
				t.Fatal(err)
			}
			defer cli.Close()
			for range 4 {
				wg.Go(func() {
					for ctx.Err() == nil {
						cctx, ccancel := context.WithTimeout(ctx, 500*time.Millisecond)
						_, err := cli.Status(cctx, ep)
						ccancel()
						if err == nil {
							mu.Lock()
							polls++
							mu.Unlock()
						} else {
							select { // not a busy loop while the member is gone
							case <-ctx.Done():
							case <-time.After(time.Millisecond):
							}
						}
					}
				})
			}
		}
		c.scale(1)
		c.requireSettled(1)
		cancel()
		wg.Wait()
		w.waitAcked(20, 30*time.Second)
		w.verify(c.client(1))
		w.stop()
		c.stop()
		ended := 0 // requests that met etcd's removed-member panic, ended by vetcd's hook
		for i := range 3 {
			b, err := os.ReadFile(filepath.Join(dir, local.ReplicaName(i), "serve.log"))
			if err != nil {
				t.Fatal(err)
			}
			ended += strings.Count(string(b), "failed to find local ID in cluster members")
			if n := strings.Index(string(b), "panic:"); n >= 0 {
				lines := strings.SplitN(string(b[n:]), "\n", 9)
				t.Fatalf("iteration %d: %s panicked during the scale-down:\n%s", it, local.ReplicaName(i), strings.Join(lines[:len(lines)-1], "\n"))
			}
		}
		t.Logf("iteration %d: 3→1 with %d successful Status polls, no panic (%d requests reached a removed member's etcd)", it, polls, ended)
	}
}
