package e2e

import (
	"testing"
	"time"
)

// TestChaosSplitLeaseLosses: only a keepalive sent just after a SIGSTOP
// ended is put down to etcd's stale leader; any other lost lease stays a
// violation.
func TestChaosSplitLeaseLosses(t *testing.T) {
	sec := int64(time.Second)
	timeline := []faultEvent{
		{Kind: fStopLeader, Start: 10 * sec, End: 20 * sec},
		{Kind: fKill, Start: 30 * sec, End: 30 * sec},
	}
	tests := []struct {
		name  string
		at    int64
		stale bool
	}{
		{"right after SIGCONT", 20*sec + 20*int64(time.Millisecond), true},
		{"during the pause", 15 * sec, false},
		{"long after SIGCONT", 25 * sec, false},
		{"after a kill -9, not a pause", 30*sec + 10*int64(time.Millisecond), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stale, violations := splitLeaseLosses([]leaseLoss{{at: tt.at, msg: "lost"}}, timeline)
			if got := len(stale) == 1; got != tt.stale || len(stale)+len(violations) != 1 {
				t.Fatalf("stale %v, violations %v; want stale=%t", stale, violations, tt.stale)
			}
		})
	}
}
