package status

import (
	"strings"
	"testing"
)

func TestSettled(t *testing.T) {
	row := func(name string, role Role, healthy bool) Row {
		return Row{Name: name, Role: role, Healthy: healthy, Error: "down"}
	}
	tests := []struct {
		name string
		c    Cluster
		n    int
		ok   bool
		why  string
	}{
		{"three healthy voters", Cluster{Linearizable: true, Members: []Row{row("a", "leader", true), row("b", "follower", true), row("c", "follower", true)}}, 3, true, ""},
		{"too few", Cluster{Linearizable: true, Members: []Row{row("a", "leader", true)}}, 3, false, "1 members, want 3"},
		{"a learner", Cluster{Linearizable: true, Members: []Row{row("a", "leader", true), row("b", "learner", true)}}, 2, false, "learner"},
		{"unhealthy", Cluster{Linearizable: true, Members: []Row{row("a", "leader", true), row("b", "follower", false)}}, 2, false, "not healthy"},
		{"no quorum", Cluster{Members: []Row{row("a", "leader", true)}}, 1, false, "quorum"},
		{"no leader", Cluster{Linearizable: true, Members: []Row{row("a", "follower", true)}}, 1, false, "0 leaders"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ok, why := tc.c.Settled(tc.n)
			if ok != tc.ok || !strings.Contains(why, tc.why) {
				t.Fatalf("Settled = %v %q, want %v %q", ok, why, tc.ok, tc.why)
			}
		})
	}
}
