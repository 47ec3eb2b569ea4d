package plan

import (
	"slices"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	b := Backoff{Initial: time.Second, Max: 5 * time.Second}
	var got []time.Duration
	for range 5 {
		got = append(got, b.Failed())
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	if !slices.Equal(got, want) {
		t.Fatalf("waits %v, want %v", got, want)
	}
	b.Succeeded()
	if b.Current() != 0 || b.Failed() != time.Second {
		t.Fatalf("after a success the next failure waits %v, want the initial 1s", b.Current())
	}
}
