package replica

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/vetcd/vetcd/internal/plan"
	"github.com/vetcd/vetcd/internal/topology"
)

// errRecordChanged means a compare-and-swap of the cluster record lost: the
// record moved since it was read, and the loop decides again on the new one.
var errRecordChanged = errors.New("replica: the cluster record changed meanwhile")

// readRecord reads the cluster record, typed, and the stored text it was
// read from (the "old" of a later swap).
func (r *Replica) readRecord(ctx context.Context) (plan.Record, string, error) {
	raw, err := r.topo.ClusterRecord(ctx)
	if err != nil {
		return plan.Record{}, "", err
	}
	rec, legacy, err := plan.ParseRecord(raw)
	if err != nil {
		return plan.Record{}, raw, err
	}
	if legacy {
		// A record of vetcd before generations: write it back typed,
		// once (whoever wins the swap). The converted form is what every
		// replica decides on either way.
		next := rec.Encode()
		ok, err := r.topo.SwapClusterRecord(ctx, raw, next)
		if err != nil {
			return plan.Record{}, raw, fmt.Errorf("convert the cluster record: %w", err)
		}
		if ok {
			r.lg.Info("converted the cluster record to the typed format", zap.String("was", raw), zap.Uint64("generation", rec.Generation))
			raw = next
		} else if raw, err = r.topo.ClusterRecord(ctx); err != nil {
			return plan.Record{}, "", err
		} else if rec, _, err = plan.ParseRecord(raw); err != nil {
			return plan.Record{}, raw, err
		}
	}
	return rec, raw, nil
}

// swapRecord replaces the record read as old with next, and returns
// errRecordChanged when another writer got there first.
func (r *Replica) swapRecord(ctx context.Context, old string, next plan.Record) error {
	ok, err := r.topo.SwapClusterRecord(ctx, old, next.Encode())
	if err != nil {
		return fmt.Errorf("write the cluster record: %w", err)
	}
	if !ok {
		return errRecordChanged
	}
	return nil
}

// claim takes an exclusive claim in the record read as old: the caller acts
// only if it returns nil.
func (r *Replica) claim(ctx context.Context, rec plan.Record, old string, c plan.Claim) (plan.Record, string, error) {
	c.Holder, c.HolderName = r.self.Ordinal, r.self.Name
	if c.At.IsZero() {
		c.At = time.Now().UTC()
	}
	next := rec
	next.Claim = &c
	if err := r.swapRecord(ctx, old, next); err != nil {
		return rec, old, fmt.Errorf("claim %s: %w", c.Kind, err)
	}
	r.lg.Info("claimed an exclusive change in the cluster record", zap.String("claim", string(c.Kind)), zap.Uint64("generation", rec.Generation))
	return next, next.Encode(), nil
}

// tendRecord completes or releases this replica's own claim when
// plan.FinishClaim says its work is done (a holder that crashed between
// acting and recording finishes here), raises the record's highest
// revision when this replica leads (plan.RaiseMaxRevision), and brings
// this member's generation marker up to the record (plan.MarkerGeneration).
func (r *Replica) tendRecord(ctx context.Context, obs plan.ReplicaObservation, raw string) error {
	if next, ok := plan.FinishClaim(obs, r.self.Name); ok {
		switch err := r.swapRecord(ctx, raw, next); {
		case errors.Is(err, errRecordChanged):
			// Finished already, and this replica read a record from
			// before (a Kubernetes informer's cache lags its own
			// writes): the next pass reads the new one.
			return nil
		case err != nil:
			return fmt.Errorf("finish the %s claim: %w", obs.Record.Claim.Kind, err)
		}
		r.lg.Warn("recorded the cluster's generation", zap.String("claim", string(obs.Record.Claim.Kind)),
			zap.Uint64("generation", next.Generation), zap.Stringer("cluster-id", next.ClusterID))
		obs.Record, raw = next, next.Encode()
	}
	if next, ok := plan.RaiseMaxRevision(obs); ok {
		switch err := r.swapRecord(ctx, raw, next); {
		case errors.Is(err, errRecordChanged):
			// Someone else wrote the record (a claim, a restore): the
			// next pass looks again.
		case err != nil:
			return fmt.Errorf("record the highest revision served: %w", err)
		default:
			r.lg.Debug("recorded the highest revision served", zap.Int64("revision", next.MaxRevision))
		}
	}
	if gen, ok := plan.MarkerGeneration(obs); ok {
		if err := r.markers.writeGeneration(obs.Local.MemberID, obs.Local.ClusterID, gen, time.Now()); err != nil {
			return err
		}
		r.lg.Info("marked this member's data with the cluster generation", zap.Uint64("generation", gen))
	}
	return nil
}

// generationMarker ties a member's data to the cluster generation it was
// made in. It lives beside the data dir, keyed by member ID: data moved
// aside or replaced by a new member's never matches it.
type generationMarker struct {
	MemberID   string    `json:"memberID"`
	ClusterID  string    `json:"clusterID"`
	Generation uint64    `json:"generation"`
	At         time.Time `json:"at"`
}

func (m markers) generationPath() string { return filepath.Join(m.dir, "generation.json") }

func (m markers) writeGeneration(memberID, clusterID, gen uint64, now time.Time) error {
	b, _ := json.Marshal(generationMarker{MemberID: fmt.Sprintf("%x", memberID), ClusterID: fmt.Sprintf("%x", clusterID), Generation: gen, At: now.UTC()})
	if err := topology.WriteAtomic(m.generationPath(), b, 0o600); err != nil {
		return fmt.Errorf("write generation marker: %w", err)
	}
	return nil
}

// generation returns the generation marked for this member's data, or 0.
func (m markers) generation(memberID, clusterID uint64) uint64 {
	b, err := os.ReadFile(m.generationPath())
	if errors.Is(err, fs.ErrNotExist) || err != nil {
		return 0
	}
	var gm generationMarker
	if json.Unmarshal(b, &gm) != nil || gm.MemberID != fmt.Sprintf("%x", memberID) || gm.ClusterID != fmt.Sprintf("%x", clusterID) {
		return 0
	}
	return gm.Generation
}
