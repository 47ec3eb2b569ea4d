package cluster

import (
	"slices"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/vetcd/vetcd/internal/plan"
)

// TestPlanAlarms checks that etcd's alarm names are the ones plan's rules
// compare against, now that the client hands etcd's alarms through.
func TestPlanAlarms(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []*pb.AlarmMember
		want []plan.Alarm
	}{
		{name: "none", in: nil, want: []plan.Alarm{}},
		{name: "nospace", in: []*pb.AlarmMember{{MemberID: 2, Alarm: pb.AlarmType_NOSPACE}},
			want: []plan.Alarm{{MemberID: 2, Name: plan.AlarmNoSpace}}},
		{name: "corrupt of member 0", in: []*pb.AlarmMember{{MemberID: 0, Alarm: pb.AlarmType_CORRUPT}},
			want: []plan.Alarm{{MemberID: 0, Name: plan.AlarmCorrupt}}},
		{name: "both, in order", in: []*pb.AlarmMember{{MemberID: 3, Alarm: pb.AlarmType_CORRUPT}, {MemberID: 1, Alarm: pb.AlarmType_NOSPACE}},
			want: []plan.Alarm{{MemberID: 3, Name: plan.AlarmCorrupt}, {MemberID: 1, Name: plan.AlarmNoSpace}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := planAlarms(tc.in); !slices.Equal(got, tc.want) {
				t.Errorf("planAlarms(%v) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}
