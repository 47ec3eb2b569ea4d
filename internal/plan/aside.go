package plan

import (
	"fmt"
	"slices"
	"strings"
)

// AsideCopy is one moved-aside copy of a replica's data dir (kept after a
// rejoin, a restore or a corruption, for a person to look at).
type AsideCopy struct {
	// Name sorts by the time the copy was made (its name carries the
	// timestamp), oldest first.
	Name  string
	Bytes int64
}

// Defaults of AsideLimits that a replica uses.
const (
	// DefaultAsideKeep is how many copies are kept at most.
	DefaultAsideKeep = 3
	// DefaultAsideShare is the share of the volume the copies may fill
	// together; the newest copy is kept even beyond it while the volume
	// has room, so that one full copy always fits.
	DefaultAsideShare = 0.25
	// DefaultAsideMinFree is the share of the volume that must stay free:
	// below it the volume runs short, and the copies, which nothing
	// needs, are deleted first (oldest first), newest included, before
	// etcd's own data runs out of room.
	DefaultAsideMinFree = 0.10
)

// AsideLimits bound the moved-aside copies of one data dir.
type AsideLimits struct {
	// Keep is the most copies kept (< 1: none).
	Keep int
	// Share is the share of VolumeBytes the copies may use together.
	Share float64
	// MinFree is the share of VolumeBytes that must stay free.
	MinFree float64
	// VolumeBytes and FreeBytes describe the volume the copies are on
	// (statfs); VolumeBytes 0 means unknown: only Keep applies.
	VolumeBytes, FreeBytes int64
}

// PruneAside decides which copies to delete: newest first, a copy is kept
// while at most Keep are kept, their bytes stay within Share of the volume
// (the newest alone may exceed it: a full copy fits), and the volume keeps
// MinFree of its bytes free (copies deleted count as freed). It returns the
// names to delete, oldest first, and why (empty when nothing goes). Only
// copies are ever named: the live data dir is not among them.
func PruneAside(copies []AsideCopy, l AsideLimits) (remove []string, why string) {
	sorted := slices.Clone(copies)
	slices.SortFunc(sorted, func(a, b AsideCopy) int { return strings.Compare(a.Name, b.Name) })
	budget := int64(l.Share * float64(l.VolumeBytes))
	minFree := int64(l.MinFree * float64(l.VolumeBytes))
	// Walking newest first, the free space the volume would have if every
	// older copy were deleted too: a copy is kept only if, with the
	// copies older than it gone, the volume would have MinFree left.
	var olderBytes int64
	for _, c := range sorted {
		olderBytes += c.Bytes
	}
	var kept, keptBytes int64
	full := false // once a copy is over a limit, every older one goes too
	var reasons []string
	note := func(r string) {
		if !slices.Contains(reasons, r) {
			reasons = append(reasons, r)
		}
	}
	drop := make([]bool, len(sorted))
	for i := len(sorted) - 1; i >= 0; i-- {
		c := sorted[i]
		olderBytes -= c.Bytes
		switch {
		case full:
			drop[i] = true
		case kept >= int64(l.Keep):
			drop[i] = true
			note(fmt.Sprintf("more than %d copies", max(l.Keep, 0)))
		case l.VolumeBytes > 0 && kept > 0 && keptBytes+c.Bytes > budget:
			drop[i] = true
			note(fmt.Sprintf("copies over %.0f%% of the volume (%d bytes)", 100*l.Share, budget))
		case l.VolumeBytes > 0 && l.FreeBytes+olderBytes < minFree:
			drop[i] = true
			note(fmt.Sprintf("volume short: %d bytes free, %d wanted", l.FreeBytes, minFree))
		}
		if drop[i] {
			full = true
		} else {
			kept++
			keptBytes += c.Bytes
		}
	}
	for i, c := range sorted {
		if drop[i] {
			remove = append(remove, c.Name)
		}
	}
	return remove, strings.Join(reasons, "; ")
}
