package testtools

import (
	"context"
	"testing"
	"time"
)

// WaitPoll is how often WaitFor asks again.
const WaitPoll = 50 * time.Millisecond

// WaitFor polls cond until it returns nil, and fails the test with what,
// the timeout and cond's last error when timeout passes first. Each call of
// cond gets its own context of at most 5 s. It is the one way tests here
// wait for a condition: a blind sleep either wastes time or flakes.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func(ctx context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(WaitPoll)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), min(5*time.Second, max(time.Until(deadline), time.Second)))
		err := cond(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
			return // Fatalf ends the test's goroutine; a fake one may not
		}
		<-tick.C
	}
}
