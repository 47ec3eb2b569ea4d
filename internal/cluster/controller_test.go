package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.uber.org/zap/zaptest"
)

// hashPool is an in-memory Pool that answers HashKV from a script.
type hashPool struct {
	Pool
	mu      sync.Mutex
	members map[string]*fakeMember
	asked   []int64
}

type fakeMember struct {
	behind  int // answers ErrFutureRev this many times, then catches up
	hash    uint32
	compact int64
	dead    bool
}

func (p *hashPool) HashKV(_ context.Context, endpoint string, id uint64, rev int64) (*pb.HashKVResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.asked = append(p.asked, rev)
	m := p.members[endpoint]
	switch {
	case m.dead:
		return nil, errors.New("connection refused")
	case m.behind > 0:
		m.behind--
		return nil, fmt.Errorf("hash of %s: %w", endpoint, rpctypes.ErrFutureRev)
	}
	return &pb.HashKVResponse{Header: &pb.ResponseHeader{MemberId: id}, Hash: m.hash, CompactRevision: m.compact, HashRevision: rev}, nil
}

// TestHashRound: the controller's hash comparison asks again at the then
// current revision while a member is behind, and reports an incomplete
// round rather than guess.
func TestHashRound(t *testing.T) {
	targets := []hashTarget{{1, "a"}, {2, "b"}, {3, "c"}}
	tests := []struct {
		name     string
		members  map[string]*fakeMember
		complete bool
		hashes   int
		rounds   int // rounds of HashKV calls
	}{
		{"all answer at once", map[string]*fakeMember{"a": {hash: 7}, "b": {hash: 7}, "c": {hash: 9}}, true, 3, 1},
		{"a member behind: ask again at the newer revision", map[string]*fakeMember{"a": {hash: 7}, "b": {hash: 7}, "c": {behind: 2, hash: 7}}, true, 3, 3},
		{"a member always behind: give up after the attempts, incomplete", map[string]*fakeMember{"a": {hash: 7}, "b": {hash: 7}, "c": {behind: 99, hash: 7}}, false, 2, hashAttempts},
		{"compacted differently: ask again, then incomplete", map[string]*fakeMember{"a": {hash: 7, compact: 5}, "b": {hash: 7, compact: 5}, "c": {hash: 7, compact: 6}}, false, 3, hashAttempts},
		{"a dead member: no retries, incomplete", map[string]*fakeMember{"a": {hash: 7}, "b": {hash: 7}, "c": {dead: true}}, false, 2, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := &hashPool{members: tc.members}
			rev := int64(99)
			next := func() int64 { rev++; return rev } // the leader moves on
			hc, complete := hashRound(t.Context(), zaptest.NewLogger(t), p, targets, next, time.Millisecond)
			if complete != tc.complete || len(hc.Hashes) != tc.hashes || len(p.asked) != 3*tc.rounds {
				t.Fatalf("complete = %v with %d hashes after %d calls (%v); want %v, %d, %d rounds", complete, len(hc.Hashes), len(p.asked), p.asked, tc.complete, tc.hashes, tc.rounds)
			}
			if last := p.asked[len(p.asked)-1]; hc.Revision != last || last != 99+int64(tc.rounds) {
				t.Fatalf("hashes at revision %d, last asked at %d; want each round at a newer revision (%d)", hc.Revision, last, 99+tc.rounds)
			}
		})
	}
}
