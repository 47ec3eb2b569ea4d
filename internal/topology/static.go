package topology

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// ProcessState is what the local supervisor knows of a replica's process.
type ProcessState string

// Process states written by the local supervisor.
const (
	// StateRunning means a process is running (or being restarted).
	StateRunning ProcessState = "running"
	// StateStopping means the process was sent SIGTERM and has not exited.
	StateStopping ProcessState = "stopping"
	// StateStopped means no process runs and none will be restarted.
	StateStopped ProcessState = "stopped"
)

// File is the content of the static topology file. The local supervisor
// and `vetcd scale` write it; replicas read it and write only ClusterRecord.
type File struct {
	Desired int `json:"desired"`
	// Paused asks the supervisor to stop every replica and start none,
	// while `vetcd snapshot restore` replaces the data.
	Paused        bool                 `json:"paused,omitempty"`
	ClusterRecord string               `json:"clusterRecord,omitempty"`
	Replicas      []Replica            `json:"replicas"`
	Processes     map[int]ProcessState `json:"processes,omitempty"`
}

// Replica returns the replica with the given ordinal.
func (f *File) Replica(ordinal int) (Replica, bool) {
	for _, r := range f.Replicas {
		if r.Ordinal == ordinal {
			return r, true
		}
	}
	return Replica{}, false
}

// ReadFile reads a static topology file. A missing file is ErrNoTopology.
func ReadFile(path string) (File, error) {
	var f File
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return f, fmt.Errorf("%w: %s", ErrNoTopology, path)
	}
	if err != nil {
		return f, fmt.Errorf("topology: read %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return f, fmt.Errorf("topology: parse %s: %w", path, err)
	}
	if f.Desired < 0 {
		return f, fmt.Errorf("topology: %s: negative desired count %d", path, f.Desired)
	}
	return f, nil
}

// UpdateFile changes the topology file under an exclusive lock, so that the
// supervisor, `vetcd scale` and the replicas never lose each other's
// changes. The file is replaced atomically: readers that take no lock never
// see a partial file. A missing file starts from an empty File. When change
// leaves the content as it was, nothing is written: the supervisor calls
// this several times a second, and needless fsyncs would compete with
// etcd's own on the same disk.
func UpdateFile(path string, change func(*File) error) error {
	lock, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("topology: lock %s: %w", path, err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("topology: lock %s: %w", path, err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck // closing the file drops the lock anyway

	f, err := ReadFile(path)
	exists := err == nil
	if err != nil && !errors.Is(err, ErrNoTopology) {
		return err
	}
	before, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("topology: encode: %w", err)
	}
	if err := change(&f); err != nil {
		return err
	}
	if err := ValidateReplicas(f.Replicas); err != nil {
		return err
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("topology: encode: %w", err)
	}
	if exists && bytes.Equal(before, b) {
		return nil
	}
	return WriteAtomic(path, b, 0o600)
}

// WriteAtomic writes data to path through a temporary file in the same
// directory, fsync and rename, so that a crash leaves either the old or the
// new content under path, never a mix.
func WriteAtomic(path string, data []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	name := tmp.Name()
	defer os.Remove(name) // no-op after a successful rename
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(name, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // best effort: make the rename durable
		d.Close()
	}
	return nil
}

// Static is the Source read from a file that the local supervisor writes.
type Static struct {
	path string
	self Replica
}

var _ Source = (*Static)(nil)

// NewStatic returns a Source backed by the file at path, for the replica
// self.
func NewStatic(path string, self Replica) *Static {
	return &Static{path: path, self: self}
}

// Self implements Source.
func (s *Static) Self() Replica { return s.self }

// Desired implements Source.
func (s *Static) Desired(context.Context) (int, error) {
	f, err := ReadFile(s.path)
	if err != nil {
		return 0, err
	}
	return f.Desired, nil
}

// Lookup implements Source.
func (s *Static) Lookup(ctx context.Context, ordinal int) (Replica, bool, error) {
	if ordinal == s.self.Ordinal {
		return s.self, true, nil
	}
	f, err := ReadFile(s.path)
	if err != nil {
		return Replica{}, false, err
	}
	return staticSnapshot{self: s.self, f: f}.Lookup(ctx, ordinal)
}

// snapshot is the file as read now, for LookupAll.
func (s *Static) snapshot() (Lookuper, error) {
	f, err := ReadFile(s.path)
	if err != nil {
		return nil, err
	}
	return staticSnapshot{self: s.self, f: f}, nil
}

// staticSnapshot answers Lookup as Static does, from one read of the file.
type staticSnapshot struct {
	self Replica
	f    File
}

func (s staticSnapshot) Lookup(_ context.Context, ordinal int) (Replica, bool, error) {
	if ordinal == s.self.Ordinal {
		return s.self, true, nil
	}
	r, ok := s.f.Replica(ordinal)
	return r, ok, nil
}

// Gone implements Source: a replica is gone when the supervisor recorded
// its process as stopped, or never knew it.
func (s *Static) Gone(_ context.Context, ordinal int) (bool, error) {
	f, err := ReadFile(s.path)
	if err != nil {
		return false, err
	}
	st, ok := f.Processes[ordinal]
	return !ok || st == StateStopped, nil
}

// ClusterRecord implements Source.
func (s *Static) ClusterRecord(context.Context) (string, error) {
	f, err := ReadFile(s.path)
	if err != nil {
		return "", err
	}
	return f.ClusterRecord, nil
}

// SetClusterRecord stores the record unconditionally. Replicas never use it
// (they swap); it is for tests and tools that set a record up.
func (s *Static) SetClusterRecord(_ context.Context, record string) error {
	return UpdateFile(s.path, func(f *File) error {
		f.ClusterRecord = record
		return nil
	})
}

// SwapClusterRecord implements Source: it replaces the record only if it
// still is old, under the
// file's lock, and reports whether it did: two replicas requesting the same
// change at once cannot both win.
func (s *Static) SwapClusterRecord(_ context.Context, old, record string) (bool, error) {
	swapped := false
	err := UpdateFile(s.path, func(f *File) error {
		if f.ClusterRecord != old {
			return nil
		}
		f.ClusterRecord = record
		swapped = true
		return nil
	})
	return swapped, err
}
