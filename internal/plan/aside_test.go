package plan

import (
	"slices"
	"strings"
	"testing"
)

func TestPruneAside(t *testing.T) {
	const mb = 1 << 20
	// Copies a (oldest) to d (newest), 100 MB each unless said otherwise.
	four := []AsideCopy{{"a", 100 * mb}, {"b", 100 * mb}, {"c", 100 * mb}, {"d", 100 * mb}}
	defaults := func(volume, free int64) AsideLimits {
		return AsideLimits{Keep: DefaultAsideKeep, Share: DefaultAsideShare, MinFree: DefaultAsideMinFree, VolumeBytes: volume, FreeBytes: free}
	}
	tests := []struct {
		name   string
		copies []AsideCopy
		limits AsideLimits
		remove []string
		why    string // a substring of the reason; "" when nothing goes
	}{
		{"nothing to prune", nil, defaults(10000*mb, 9000*mb), nil, ""},
		{"volume unknown: count only", four, AsideLimits{Keep: 3}, []string{"a"}, "more than 3 copies"},
		{"big volume: count bounds", four, defaults(10000*mb, 9000*mb), []string{"a"}, "more than 3 copies"},
		{"order of the input does not matter", []AsideCopy{four[3], four[0], four[2], four[1]}, defaults(10000*mb, 9000*mb), []string{"a"}, "more than 3"},
		// 25% of 1000 MB is 250 MB: two 100 MB copies fit, a third does not.
		{"bytes bound before the count", four, defaults(1000*mb, 600*mb), []string{"a", "b"}, "copies over 25% of the volume"},
		// A copy bigger than the whole share: the newest is still kept
		// (a full copy fits), every older one goes.
		{"the newest copy fits even beyond the share", []AsideCopy{{"a", 10 * mb}, {"b", 300 * mb}}, defaults(1000*mb, 500*mb), []string{"a"}, "over 25%"},
		{"an older copy that would fit is not kept behind a dropped one",
			[]AsideCopy{{"a", 10 * mb}, {"b", 200 * mb}, {"c", 100 * mb}}, defaults(1000*mb, 500*mb), []string{"a", "b"}, "over 25%"},
		// 10% of 1000 MB must stay free: 75 MB free now, so 25 MB more
		// are needed; deleting b (30 MB) is enough.
		{"volume short: oldest go first until MinFree is free",
			[]AsideCopy{{"b", 30 * mb}, {"c", 30 * mb}, {"d", 30 * mb}}, defaults(1000*mb, 75*mb), []string{"b"}, "volume short"},
		{"volume short: the newest copy goes too if need be", []AsideCopy{{"a", 10 * mb}}, defaults(1000*mb, 20*mb), []string{"a"}, "volume short"},
		{"volume short and over the count", four, defaults(10000*mb, 850*mb), []string{"a", "b"}, "volume short"},
		{"keep 0: no copies kept", four[:1], AsideLimits{Keep: 0}, []string{"a"}, "more than 0 copies"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			remove, why := PruneAside(tc.copies, tc.limits)
			if !slices.Equal(remove, tc.remove) {
				t.Fatalf("remove %v, want %v (why %q)", remove, tc.remove, why)
			}
			if (tc.why == "") != (why == "") || !strings.Contains(why, tc.why) {
				t.Fatalf("why %q, want it to say %q", why, tc.why)
			}
		})
	}
}
