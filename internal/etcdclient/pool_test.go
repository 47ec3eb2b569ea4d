package etcdclient

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/vetcd/vetcd/internal/testtools"
)

// TestMemberStatus: a URL answering as another member than the one asked
// about (a replica that rejoined under a new member ID) is not that
// member's health. status.Get and the controller once reported a dead
// voter healthy that way (docs/chaos-findings.md, finding 2).
func TestMemberStatus(t *testing.T) {
	e, url := testtools.StartEmbedded(t, t.TempDir())
	p := NewPool(nil, zap.NewNop())
	defer p.Close()
	id := uint64(e.Server.MemberID())
	tests := []struct {
		name    string
		id      uint64
		wantErr error
	}{
		{"the member asked about answers", id, nil},
		{"another member answers at its URL", id + 1, ErrOtherMember},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			st, err := p.MemberStatus(ctx, url, tt.id)
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("MemberStatus: %v", err)
			case tt.wantErr == nil && st.GetHeader().GetMemberId() != id:
				t.Fatalf("answered by %x, want %x", st.GetHeader().GetMemberId(), id)
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Fatalf("MemberStatus = %v, want %v", err, tt.wantErr)
			}
		})
	}
}
