package plan

import (
	"strings"
	"testing"
)

func TestJudgeFollow(t *testing.T) {
	tests := []struct {
		name     string
		revs     []FollowRevision
		complete bool
		want     FollowVerdict
		rev      int64
		reason   string
	}{
		{name: "nothing of its own", complete: true, want: FollowInSync},
		{name: "only copies (another follower)", complete: true, want: FollowInSync,
			revs: []FollowRevision{{Revision: 11, Copied: true, Puts: 3}, {Revision: 12, Copied: true, LeaseDeletes: 2}}},
		{name: "a client's put", complete: true, want: FollowClientsMoved, rev: 11, reason: "clients moved over",
			revs: []FollowRevision{{Revision: 11, Puts: 1}}},
		{name: "a client's delete of a key without a lease", complete: true, want: FollowClientsMoved, rev: 11,
			revs: []FollowRevision{{Revision: 11, Deletes: 1}}},
		{name: "a lease expiring on the target is not a cut-over", complete: true, want: FollowSelfDiverged, rev: 11, reason: "lease",
			revs: []FollowRevision{{Revision: 11, LeaseDeletes: 1}}},
		{name: "a lease expiring, then a client's write", complete: true, want: FollowClientsMoved, rev: 13,
			revs: []FollowRevision{{Revision: 11, LeaseDeletes: 4}, {Revision: 12, LeaseDeletes: 1}, {Revision: 13, Puts: 1, LeaseDeletes: 1}}},
		{name: "a client's put and a lease's deletes in one txn", complete: true, want: FollowClientsMoved, rev: 11,
			revs: []FollowRevision{{Revision: 11, Puts: 1, LeaseDeletes: 1}}},
		{name: "a client's write in the part read of a compacted history", complete: false, want: FollowClientsMoved, rev: 12,
			revs: []FollowRevision{{Revision: 12, Puts: 2}}},
		{name: "history gone: nothing proves a client", complete: false, want: FollowSelfDiverged, reason: "compacted"},
		{name: "copies then a lease's deletes", complete: true, want: FollowSelfDiverged, rev: 12,
			revs: []FollowRevision{{Revision: 11, Copied: true}, {Revision: 12, LeaseDeletes: 1}}},
		{name: "a cut-over's marker write is no client's write", complete: true, want: FollowInSync,
			revs: []FollowRevision{{Revision: 11, Copied: true, Puts: 1}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := JudgeFollow(tc.revs, tc.complete)
			if got.Verdict != tc.want || got.Revision != tc.rev || !strings.Contains(got.Reason, tc.reason) {
				t.Fatalf("JudgeFollow = %+v (%s); want %s at %d, reason with %q", got, got.Verdict, tc.want, tc.rev, tc.reason)
			}
		})
	}
}
