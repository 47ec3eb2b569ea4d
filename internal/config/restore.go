package config

import (
	"errors"
	"fmt"

	"github.com/vetcd/vetcd/internal/storage/storageurl"
)

// Restore asks the replicas to found the cluster anew from a snapshot. It
// is for places where `vetcd snapshot restore` cannot reach the disks
// (Kubernetes): set it in every replica's config, and the replicas stop the
// old cluster, one of them restores the snapshot with a revision bump, and
// the others rejoin as learners. The cluster record remembers the URL, so
// the restore happens once however often the replicas restart with this
// config; restoring the same URL again needs a new snapshot name.
type Restore struct {
	// From is the snapshot URL (file://, s3:// or oci://), as given to
	// `vetcd snapshot restore`.
	From string `yaml:"from,omitempty"`
	// Decryption names the age key that opens an encrypted snapshot.
	Decryption RestoreDecryption `yaml:"decryption,omitempty"`
}

// RestoreDecryption names the age key sources for restore.from.
type RestoreDecryption struct {
	PassphraseFile string `yaml:"passphraseFile,omitempty"`
	PassphraseEnv  string `yaml:"passphraseEnv,omitempty"`
	IdentityFile   string `yaml:"identityFile,omitempty"`
}

// validate checks the URL's form and the key options; the snapshot itself
// is verified by the replica before anything changes.
func (r Restore) validate() []error {
	var errs []error
	d := r.Decryption
	if r.From == "" {
		if d != (RestoreDecryption{}) {
			errs = append(errs, errors.New("restore.decryption: set restore.from too, or remove it"))
		}
		return errs
	}
	switch loc, err := storageurl.Parse(r.From); {
	case err != nil:
		errs = append(errs, fmt.Errorf("restore.from: %w", err))
	case loc.Name == "":
		errs = append(errs, fmt.Errorf("restore.from %q: names a prefix, not a snapshot", r.From))
	}
	n := 0
	for _, s := range []string{d.PassphraseFile, d.PassphraseEnv, d.IdentityFile} {
		if s != "" {
			n++
		}
	}
	if n > 1 {
		errs = append(errs, errors.New("restore.decryption: passphraseFile, passphraseEnv and identityFile: use one"))
	}
	return errs
}
