package plan

import "time"

// Backoff is the wait between attempts at something that keeps failing:
// Initial after the first failure, doubling with every further one up to
// Max, and back to Initial once an attempt succeeds. Every retry loop in
// vetcd paces itself with one, so "how fast does vetcd retry" has one
// answer. The zero value never waits; it is not safe for concurrent use.
type Backoff struct {
	Initial, Max time.Duration
	cur          time.Duration
}

// Failed records a failed attempt and returns the wait before the next.
func (b *Backoff) Failed() time.Duration {
	if b.cur == 0 {
		b.cur = b.Initial
	} else {
		b.cur = min(2*b.cur, b.Max)
	}
	return b.cur
}

// Succeeded records a successful attempt: the next failure waits Initial.
func (b *Backoff) Succeeded() { b.cur = 0 }

// Current is the wait Failed last returned (0 after a success).
func (b *Backoff) Current() time.Duration { return b.cur }
