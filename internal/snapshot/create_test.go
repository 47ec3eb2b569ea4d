package snapshot

import (
	"testing"

	"github.com/vetcd/vetcd/internal/status"
)

// TestPickSource pins which member a snapshot is streamed from: the healthy
// leader first, otherwise the voter with the highest raft index that can
// answer, never a learner or a member without a client URL.
func TestPickSource(t *testing.T) {
	row := func(name string, role status.Role, healthy bool, idx uint64) status.Row {
		return status.Row{Name: name, Role: role, Healthy: healthy, RaftIndex: idx, ClientURL: "https://" + name + ":2379"}
	}
	noURL := row("d", status.RoleLeader, true, 50)
	noURL.ClientURL = ""
	for _, tc := range []struct {
		name    string
		members []status.Row
		want    string // "" for none
	}{
		{name: "no members", want: ""},
		{name: "the healthy leader, though behind",
			members: []status.Row{row("a", status.RoleFollower, true, 30), row("b", status.RoleLeader, true, 10), row("c", status.RoleFollower, true, 20)},
			want:    "b"},
		{name: "an unhealthy leader is not preferred",
			members: []status.Row{row("a", status.RoleLeader, false, 5), row("b", status.RoleFollower, true, 9)},
			want:    "b"},
		{name: "without a leader, the highest raft index",
			members: []status.Row{row("a", status.RoleFollower, true, 7), row("b", status.RoleFollower, false, 9), row("c", status.RoleFollower, true, 8)},
			want:    "b"},
		{name: "never a learner, though ahead",
			members: []status.Row{row("a", status.RoleLearner, true, 99), row("b", status.RoleFollower, true, 1)},
			want:    "b"},
		{name: "only a learner: none",
			members: []status.Row{row("a", status.RoleLearner, true, 99)},
			want:    ""},
		{name: "a member without a client URL is skipped",
			members: []status.Row{noURL, row("b", status.RoleFollower, true, 1)},
			want:    "b"},
		{name: "an unhealthy member that never answered is skipped",
			members: []status.Row{row("a", status.RoleFollower, false, 0)},
			want:    ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := pickSource(status.Cluster{Members: tc.members})
			if tc.want == "" {
				if ok {
					t.Fatalf("pickSource = %s, want none", got.Name)
				}
				return
			}
			if !ok || got.Name != tc.want {
				t.Fatalf("pickSource = %q %v, want %q", got.Name, ok, tc.want)
			}
		})
	}
}
