package snapshot

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"filippo.io/age"
)

// Keys names where the age secrets come from. At most one of the
// passphrase sources and at most one of the X25519 sources may be set.
type Keys struct {
	// PassphraseFile holds a passphrase (trailing newline ignored).
	PassphraseFile string
	// PassphraseEnv names an environment variable holding a passphrase.
	PassphraseEnv string
	// RecipientsFile lists age X25519 recipients ("age1..."), one a line,
	// for encryption.
	RecipientsFile string
	// IdentityFile holds age X25519 identities ("AGE-SECRET-KEY-1..."),
	// for decryption.
	IdentityFile string
}

// Encrypting reports whether any key source is set.
func (k Keys) Encrypting() bool {
	return k.PassphraseFile != "" || k.PassphraseEnv != "" || k.RecipientsFile != ""
}

func (k Keys) passphrase() (string, error) {
	switch {
	case k.PassphraseFile != "" && k.PassphraseEnv != "":
		return "", errors.New("snapshot: give a passphrase file or an environment variable, not both")
	case k.PassphraseFile != "":
		b, err := os.ReadFile(k.PassphraseFile)
		if err != nil {
			return "", fmt.Errorf("snapshot: passphrase file: %w", err)
		}
		p := strings.TrimRight(string(b), "\r\n")
		if p == "" {
			return "", fmt.Errorf("snapshot: passphrase file %s is empty", k.PassphraseFile)
		}
		return p, nil
	case k.PassphraseEnv != "":
		p, ok := os.LookupEnv(k.PassphraseEnv)
		if !ok || p == "" {
			return "", fmt.Errorf("snapshot: environment variable %s is not set", k.PassphraseEnv)
		}
		return p, nil
	}
	return "", nil
}

// Recipients returns the age recipients to encrypt to (nil: no
// encryption).
func (k Keys) Recipients() ([]age.Recipient, error) {
	p, err := k.passphrase()
	if err != nil {
		return nil, err
	}
	if p != "" && k.RecipientsFile != "" {
		return nil, errors.New("snapshot: a passphrase and X25519 recipients cannot be combined (age allows one passphrase recipient alone)")
	}
	if p != "" {
		r, err := age.NewScryptRecipient(p)
		if err != nil {
			return nil, fmt.Errorf("snapshot: passphrase: %w", err)
		}
		return []age.Recipient{r}, nil
	}
	if k.RecipientsFile == "" {
		return nil, nil
	}
	f, err := os.Open(k.RecipientsFile)
	if err != nil {
		return nil, fmt.Errorf("snapshot: recipients file: %w", err)
	}
	defer f.Close()
	rs, err := age.ParseRecipients(f)
	if err != nil {
		return nil, fmt.Errorf("snapshot: recipients file %s: %w", k.RecipientsFile, err)
	}
	return rs, nil
}

// Identities returns the age identities to decrypt with.
func (k Keys) Identities() ([]age.Identity, error) {
	var ids []age.Identity
	p, err := k.passphrase()
	if err != nil {
		return nil, err
	}
	if p != "" {
		id, err := age.NewScryptIdentity(p)
		if err != nil {
			return nil, fmt.Errorf("snapshot: passphrase: %w", err)
		}
		ids = append(ids, id)
	}
	if k.IdentityFile != "" {
		f, err := os.Open(k.IdentityFile)
		if err != nil {
			return nil, fmt.Errorf("snapshot: identity file: %w", err)
		}
		defer f.Close()
		more, err := age.ParseIdentities(f)
		if err != nil {
			return nil, fmt.Errorf("snapshot: identity file %s: %w", k.IdentityFile, err)
		}
		ids = append(ids, more...)
	}
	return ids, nil
}
