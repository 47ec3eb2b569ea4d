package snapshot

import "testing"

func TestMemAvailable(t *testing.T) {
	tests := []struct {
		name, meminfo string
		want          int64
	}{
		{"present", "MemTotal:       24684084 kB\nMemFree:         1000 kB\nMemAvailable:   21942684 kB\n", 21942684 << 10},
		{"absent (old kernel)", "MemTotal:       24684084 kB\nMemFree:         1000 kB\n", -1},
		{"garbled", "MemAvailable:   lots kB\n", -1},
	}
	for _, tc := range tests {
		if got := memAvailable(tc.meminfo); got != tc.want {
			t.Errorf("%s: memAvailable = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestCgroupV2Path(t *testing.T) {
	tests := []struct {
		name, procCgroup, want string
		ok                     bool
	}{
		{"v2", "0::/kubepods.slice/pod1/cri-abc\n", "/kubepods.slice/pod1/cri-abc", true},
		{"v2 in its own namespace", "0::/\n", "/", true},
		{"hybrid", "12:memory:/user.slice\n0::/user.slice/session-1.scope\n", "/user.slice/session-1.scope", true},
		{"v1 only", "12:memory:/user.slice\n11:cpu:/\n", "", false},
	}
	for _, tc := range tests {
		got, ok := cgroupV2Path(tc.procCgroup)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: cgroupV2Path = %q, %v; want %q, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

func TestCgroupHeadroom(t *testing.T) {
	tests := []struct {
		name, limit, usage string
		want               int64
		ok                 bool
	}{
		{"v2 limit", "2147483648\n", "536870912\n", 1610612736, true},
		{"v2 no limit", "max\n", "536870912\n", 0, false},
		{"v1 no limit", "9223372036854771712\n", "536870912\n", 0, false},
		{"over the limit", "1000\n", "2000\n", 0, true},
		{"no such files", "", "", 0, false},
	}
	for _, tc := range tests {
		got, ok := cgroupHeadroom(tc.limit, tc.usage)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: cgroupHeadroom = %d, %v; want %d, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}
