package replica

import (
	"testing"
	"time"

	"github.com/robfig/cron/v3"
)

// The exported schedule interval is the longest gap between two runs, so
// the RPO alert does not fire over a weekend a weekday schedule skips.
func TestScheduleInterval(t *testing.T) {
	from := time.Date(2026, 12, 3, 17, 0, 0, 0, time.UTC) // a Thursday
	for _, tc := range []struct {
		schedule string
		want     time.Duration
	}{
		{"@every 6h", 6 * time.Hour},
		{"@every 1s", time.Second},
		{"@hourly", time.Hour},
		{"0 2 * * *", 24 * time.Hour},
		{"0 2 * * 1-5", 72 * time.Hour},
		{"*/15 2 * * *", 24*time.Hour - 45*time.Minute},
		{"0 0 1 * *", 31 * 24 * time.Hour},
	} {
		sched, err := cron.ParseStandard(tc.schedule)
		if err != nil {
			t.Fatalf("%s: %v", tc.schedule, err)
		}
		if got := scheduleInterval(sched, from); got != tc.want {
			t.Errorf("%q: interval %v, want %v", tc.schedule, got, tc.want)
		}
	}
}
