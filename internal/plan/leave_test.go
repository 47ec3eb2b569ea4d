package plan

import "testing"

func TestLeaveNext(t *testing.T) {
	// Replicas 0 and 1 stay (desired 2); replica 2 (member 3) leaves.
	members := func(mod func([]Member)) []Member {
		ms := []Member{
			{ID: 1, Name: "vetcd-0", Ordinal: 0, Started: true, Healthy: true, AppliedIndex: 100},
			{ID: 2, Name: "vetcd-1", Ordinal: 1, Started: true, Healthy: true, AppliedIndex: 100},
			{ID: 3, Name: "vetcd-2", Ordinal: 2, Started: true, Healthy: true, AppliedIndex: 100},
		}
		if mod != nil {
			mod(ms)
		}
		return ms
	}
	tests := []struct {
		name       string
		o          LeaveObservation
		want       LeaveStep
		wantHeir   uint64
		wantTarget uint64
	}{
		{"already removed", LeaveObservation{SelfID: 3, Members: members(nil)[:2], Desired: 2}, LeaveDone, 0, 0},
		{"no desired voter answers", LeaveObservation{SelfID: 3, Leader: 3, Desired: 2,
			Members: members(func(ms []Member) { ms[0].Healthy, ms[1].Healthy = false, false })}, LeaveStuck, 0, 0},
		{"leader hands over to the lowest desired ordinal; no target while it leads", LeaveObservation{SelfID: 3, Leader: 3, Desired: 2, Committed: 120,
			Members: members(nil)}, LeaveHandOver, 1, 0},
		{"heir is the lowest healthy one", LeaveObservation{SelfID: 3, Leader: 3, Desired: 2,
			Members: members(func(ms []Member) { ms[0].Healthy = false })}, LeaveHandOver, 2, 0},
		{"hand-over tried and failed: the commit index is the target", LeaveObservation{SelfID: 3, Leader: 3, Desired: 2, HandOverTried: true, Committed: 120,
			Members: members(nil)}, LeaveWaitHeir, 1, 120},
		{"a follower fixes its commit index as the target", LeaveObservation{SelfID: 3, Leader: 1, Desired: 2, Committed: 120,
			Members: members(nil)}, LeaveWaitHeir, 1, 120},
		{"a fixed target stays, however the commit index moves", LeaveObservation{SelfID: 3, Leader: 1, Desired: 2, Target: 100, Committed: 150,
			Members: members(nil)}, LeaveRemove, 1, 100},
		{"the chosen heir stays chosen", LeaveObservation{SelfID: 3, Leader: 1, Desired: 2, Heir: 2, Target: 100,
			Members: members(nil)}, LeaveRemove, 2, 100},
		{"heir caught up: remove", LeaveObservation{SelfID: 3, Leader: 1, Desired: 2, Committed: 100, Members: members(nil)}, LeaveRemove, 1, 100},
		{"quorum guard: the other voter is silent", LeaveObservation{SelfID: 3, Leader: 1, Desired: 1, Target: 100,
			Members: members(func(ms []Member) { ms[1].Healthy = false })}, LeaveWaitGuard, 1, 100},
		{"a learner neither hands over nor waits", LeaveObservation{SelfID: 3, Leader: 3, Desired: 2, Committed: 120,
			Members: members(func(ms []Member) { ms[2].IsLearner = true })}, LeaveRemove, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := LeaveNext(tt.o)
			if d.Step != tt.want || d.Heir.ID != tt.wantHeir || d.Target != tt.wantTarget {
				t.Fatalf("LeaveNext = %s with heir %x, target %d (%s); want %s with heir %x, target %d",
					d.Step, d.Heir.ID, d.Target, d.Reason, tt.want, tt.wantHeir, tt.wantTarget)
			}
		})
	}
}
