package plan

import (
	"strings"
	"testing"
)

func TestStartHashPoint(t *testing.T) {
	tests := []struct {
		name          string
		lastKey       int64
		finished      int64
		finishedFound bool
		scheduled     int64
		want          HashPoint
	}{
		{name: "never compacted: etcd reports -1, not 0", lastKey: 40, want: HashPoint{Revision: 40, CompactRevision: -1}},
		{name: "empty store", want: HashPoint{Revision: 1, CompactRevision: -1}},
		{name: "compacted", lastKey: 40, finished: 30, finishedFound: true, scheduled: 30, want: HashPoint{Revision: 40, CompactRevision: 30}},
		{
			name: "compacted at the newest revision, a tombstone the compaction removed", lastKey: 38, finished: 40, finishedFound: true, scheduled: 40,
			want: HashPoint{Revision: 40, CompactRevision: 40},
		},
		{
			name: "crash between scheduling and finishing a compaction: etcd resumes it", lastKey: 40, finished: 20, finishedFound: true, scheduled: 35,
			want: HashPoint{Revision: 40, CompactRevision: 35},
		},
		{
			name: "first compaction scheduled, none finished", lastKey: 40, scheduled: 35,
			want: HashPoint{Revision: 40, CompactRevision: 35},
		},
		{
			name: "scheduled compaction of the newest tombstone raises the revision", lastKey: 38, finished: 20, finishedFound: true, scheduled: 41,
			want: HashPoint{Revision: 41, CompactRevision: 41},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := StartHashPoint(tt.lastKey, tt.finished, tt.finishedFound, tt.scheduled); got != tt.want {
				t.Fatalf("StartHashPoint = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestUnverifiable(t *testing.T) {
	never := HashPoint{Revision: 40, CompactRevision: NeverCompacted}
	at30 := HashPoint{Revision: 40, CompactRevision: 30}
	given := func(name string, compact int64) PeerHash {
		return PeerHash{Name: name, Answer: HashGiven, CompactRevision: compact}
	}
	tests := []struct {
		name  string
		local HashPoint
		peers []PeerHash
		want  string // "" or a substring of the reason
	}{
		{
			// Issue 15: every kill -9 threw the data away because 0 was
			// compared with etcd's -1.
			name: "nobody ever compacted: verifiable", local: never,
			peers: []PeerHash{given("vetcd-1", -1), given("vetcd-2", -1)},
		},
		{name: "same compaction: verifiable", local: at30, peers: []PeerHash{given("vetcd-1", 30)}},
		{
			name: "one peer is enough", local: at30,
			peers: []PeerHash{{Name: "vetcd-1", Answer: HashCompacted}, given("vetcd-2", 30)},
		},
		{
			name: "peers compacted since, not past the revision", local: never,
			peers: []PeerHash{given("vetcd-1", 35), given("vetcd-2", 35)},
			want:  "vetcd-1 compacted to revision 35, this data to -1",
		},
		{
			name: "peers compacted past the revision", local: at30,
			peers: []PeerHash{{Name: "vetcd-1", Answer: HashCompacted}, {Name: "vetcd-2", Answer: HashCompacted}},
			want:  "vetcd-2 has compacted past revision 40",
		},
		{
			name: "peer behind the data", local: at30,
			peers: []PeerHash{{Name: "vetcd-1", Answer: HashFutureRev}},
			want:  "has not reached revision 40",
		},
		{
			name: "a definite refusal counts even when another peer does not answer", local: at30,
			peers: []PeerHash{{Name: "vetcd-1", Answer: HashUnknown}, given("vetcd-2", 35)},
			want:  "vetcd-2 compacted to revision 35, this data to 30",
		},
		{
			name: "no definite answer never throws data away", local: at30,
			peers: []PeerHash{{Name: "vetcd-1", Answer: HashUnknown}, {Name: "vetcd-2", Answer: HashUnknown}},
		},
		{name: "no peers", local: at30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Unverifiable(tt.local, tt.peers)
			switch {
			case tt.want == "" && got != "":
				t.Fatalf("Unverifiable = %q, want verifiable", got)
			case tt.want != "" && !strings.Contains(got, tt.want):
				t.Fatalf("Unverifiable = %q, want it to say %q", got, tt.want)
			}
		})
	}
}

func TestComparable(t *testing.T) {
	local := HashPoint{Revision: 500, CompactRevision: 300}
	tests := []struct {
		p    PeerHash
		want bool
	}{
		{PeerHash{Answer: HashGiven, CompactRevision: 300}, true},
		{PeerHash{Answer: HashGiven, CompactRevision: 200}, false},
		{PeerHash{Answer: HashCompacted}, false},
		{PeerHash{Answer: HashFutureRev}, false},
		{PeerHash{Answer: HashUnknown, CompactRevision: 300}, false},
	}
	for _, tt := range tests {
		if got := Comparable(local, tt.p); got != tt.want {
			t.Errorf("Comparable(%+v, %+v) = %t, want %t", local, tt.p, got, tt.want)
		}
	}
}
