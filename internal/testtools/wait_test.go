package testtools

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// fakeTB records a Fatalf instead of ending the test.
type fakeTB struct {
	testing.TB
	msg string
}

func (f *fakeTB) Helper()                           {}
func (f *fakeTB) Fatalf(format string, args ...any) { f.msg = fmt.Sprintf(format, args...) }

func TestWaitFor(t *testing.T) {
	n := 0
	WaitFor(t, time.Second, "third call", func(context.Context) error {
		if n++; n < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if n != 3 {
		t.Fatalf("cond called %d times, want 3", n)
	}
	f := &fakeTB{TB: t}
	WaitFor(f, 120*time.Millisecond, "never", func(context.Context) error { return errors.New("the last reason") })
	if !strings.Contains(f.msg, "never: not within 120ms: the last reason") {
		t.Fatalf("failure message %q does not name the wait, the timeout and the last error", f.msg)
	}
}
