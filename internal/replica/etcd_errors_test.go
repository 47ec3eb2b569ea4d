package replica

import (
	"errors"
	"fmt"
	"testing"

	"go.etcd.io/etcd/client/pkg/v3/types"
	"go.etcd.io/etcd/server/v3/etcdserver/api/membership"
	"go.uber.org/zap"
)

// TestIsMemberCountUnequal produces etcd's own join-time error, the way
// embed.StartEtcd returns it, so that a rewording in etcd fails here rather
// than turning the join retry off.
func TestIsMemberCountUnequal(t *testing.T) {
	lg := zap.NewNop()
	cluster := func(peerURLs ...string) *membership.RaftCluster {
		t.Helper()
		var members []*membership.Member
		for i, u := range peerURLs {
			urls, err := types.NewURLs([]string{u})
			if err != nil {
				t.Fatal(err)
			}
			members = append(members, membership.NewMember(fmt.Sprintf("m%d", i), urls, "token", nil))
		}
		return membership.NewClusterFromMembers(lg, 1, members)
	}
	local := cluster("https://127.0.0.1:1", "https://127.0.0.1:2")
	// The peer has not applied the add of the second member yet.
	raced := membership.ValidateClusterAndAssignIDs(lg, local, cluster("https://127.0.0.1:1"))
	// Same count, no URL match: a different error.
	mismatch := membership.ValidateClusterAndAssignIDs(lg, cluster("https://127.0.0.1:1", "https://127.0.0.1:2"),
		cluster("https://127.0.0.1:1", "https://127.0.0.1:3"))
	if raced == nil || mismatch == nil {
		t.Fatalf("ValidateClusterAndAssignIDs: raced %v, mismatch %v; want two errors", raced, mismatch)
	}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"etcd's error", raced, true},
		// etcdserver's bootstrap and startEtcd wrap it.
		{"wrapped as startEtcd returns it", fmt.Errorf("start etcd: %w", fmt.Errorf("error validating peerURLs x: %w", raced)), true},
		{"peer URL mismatch", mismatch, false},
		{"other", errors.New("cannot fetch cluster info from peer urls"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := isMemberCountUnequal(tc.err); got != tc.want {
				t.Errorf("isMemberCountUnequal(%v) = %t, want %t", tc.err, got, tc.want)
			}
		})
	}
}
