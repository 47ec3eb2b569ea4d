package testtools

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Ack is an acknowledged write: the key's value and mod revision after it,
// or Deleted when the write removed the key.
type Ack struct {
	Value    string
	Revision int64
	Deleted  bool
}

// WriterOptions shapes an AckWriter's load.
type WriterOptions struct {
	// Keys is how many keys (/registry/w/NNNN) are written round robin.
	Keys int
	// DeleteEvery makes every DeleteEvery-th write a delete (0: none).
	DeleteEvery int
	// LeaseEvery puts every LeaseEvery-th write on a lease (0: none),
	// granting a new lease every fourth time.
	LeaseEvery int
}

// AckWriter writes to a cluster in the background, one request at a time,
// and logs every acknowledged write, so that a test can check that each
// one is still there after a migration, a restore or a fault. It stops at
// the first failed write; Err says why.
type AckWriter struct {
	mu   sync.Mutex
	acks map[string]Ack
	n    int
	err  error
	stop chan struct{}
	done chan struct{}
}

// StartWriter starts an AckWriter on cli. It is halted when the test ends.
func StartWriter(t testing.TB, cli *clientv3.Client, o WriterOptions) *AckWriter {
	t.Helper()
	if o.Keys <= 0 {
		o.Keys = 200
	}
	w := &AckWriter{acks: map[string]Ack{}, stop: make(chan struct{}), done: make(chan struct{})}
	var lease clientv3.LeaseID
	if o.LeaseEvery > 0 {
		l, err := cli.Grant(t.Context(), 60)
		if err != nil {
			t.Fatal(err)
		}
		lease = l.ID
	}
	go func() {
		defer close(w.done)
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			a, err := w.write(ctx, cli, o, i, &lease)
			cancel()
			w.mu.Lock()
			if err != nil {
				w.err = err
				w.mu.Unlock()
				return
			}
			w.acks[fmt.Sprintf("/registry/w/%04d", i%o.Keys)] = a
			w.n++
			w.mu.Unlock()
		}
	}()
	t.Cleanup(w.Halt)
	return w
}

// write sends the i-th request.
func (w *AckWriter) write(ctx context.Context, cli *clientv3.Client, o WriterOptions, i int, lease *clientv3.LeaseID) (Ack, error) {
	key := fmt.Sprintf("/registry/w/%04d", i%o.Keys)
	a := Ack{Value: fmt.Sprintf("v%d", i)}
	switch {
	case o.DeleteEvery > 0 && i%o.DeleteEvery == o.DeleteEvery/2:
		resp, err := cli.Delete(ctx, key)
		if err != nil {
			return a, err
		}
		return Ack{Revision: resp.Header.Revision, Deleted: true}, nil
	case o.LeaseEvery > 0 && i%o.LeaseEvery == o.LeaseEvery/2:
		if i%4 == 0 { // now and then a lease granted while the test runs
			l, err := cli.Grant(ctx, 60)
			if err != nil {
				return a, err
			}
			*lease = l.ID
		}
		resp, err := cli.Put(ctx, key, a.Value, clientv3.WithLease(*lease))
		if err != nil {
			return a, err
		}
		a.Revision = resp.Header.Revision
		return a, nil
	default:
		resp, err := cli.Put(ctx, key, a.Value)
		if err != nil {
			return a, err
		}
		a.Revision = resp.Header.Revision
		return a, nil
	}
}

// Count is how many writes were acknowledged so far.
func (w *AckWriter) Count() int { w.mu.Lock(); defer w.mu.Unlock(); return w.n }

// WaitCount waits until n writes were acknowledged. It fails the test if
// the writer stopped on an error or timeout passed first.
func (w *AckWriter) WaitCount(t testing.TB, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for w.Count() < n {
		if err := w.Err(); err != nil {
			t.Fatalf("writer stopped after %d of %d writes: %v", w.Count(), n, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("writer: %d of %d writes acknowledged after %s", w.Count(), n, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Acks returns each written key's last acknowledged write.
func (w *AckWriter) Acks() map[string]Ack {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.acks)
}

// Err is the write that stopped the writer, if one did.
func (w *AckWriter) Err() error { w.mu.Lock(); defer w.mu.Unlock(); return w.err }

// Halt stops the writer and waits for its last request.
func (w *AckWriter) Halt() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}
