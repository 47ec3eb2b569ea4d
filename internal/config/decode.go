package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// embeddedPath is where a vCluster values file keeps the embedded etcd
// settings.
const embeddedPath = "controlPlane.backingStore.etcd.embedded"

// ControlPlane is the controlPlane section of a vCluster values file. vetcd
// reads only backingStore.etcd.embedded from it; every other key (distro,
// statefulSet, ...) belongs to vCluster and is ignored.
type ControlPlane struct {
	// BackingStore is controlPlane.backingStore.
	BackingStore *BackingStore `yaml:"backingStore,omitempty"`
	// VCluster takes vCluster's other keys here, so that strict decoding
	// accepts them. Parse leaves it nil: vetcd neither reads nor writes
	// them.
	VCluster map[string]yaml.Node `yaml:",inline"`
}

// BackingStore is controlPlane.backingStore of a vCluster values file.
type BackingStore struct {
	// Etcd is controlPlane.backingStore.etcd.
	Etcd *BackingStoreEtcd `yaml:"etcd,omitempty"`
	// VCluster takes vCluster's other keys (database, ...); Parse leaves
	// it nil.
	VCluster map[string]yaml.Node `yaml:",inline"`
}

// BackingStoreEtcd is controlPlane.backingStore.etcd of a vCluster values
// file.
type BackingStoreEtcd struct {
	// Embedded is the embedded etcd section vetcd implements.
	Embedded *Embedded `yaml:"embedded,omitempty"`
	// VCluster takes vCluster's other keys (deploy, ...); Parse leaves it
	// nil.
	VCluster map[string]yaml.Node `yaml:",inline"`
}

// Embedded is controlPlane.backingStore.etcd.embedded of a vCluster values
// file: the seed's keys with their names and meaning. It is decoded
// strictly, as vetcd owns every key in it. A nil field was not set; Parse
// copies the set ones into the Config fields of the same name.
type Embedded struct {
	// Enabled is Config.Enabled.
	Enabled *bool `yaml:"enabled,omitempty"`
	// MigrateFromDeployedEtcd is Config.MigrateFromDeployedEtcd.
	MigrateFromDeployedEtcd *bool `yaml:"migrateFromDeployedEtcd,omitempty"`
	// SnapshotCount is Config.SnapshotCount.
	SnapshotCount *int64 `yaml:"snapshotCount,omitempty"`
	// ExtraArgs is Config.ExtraArgs.
	ExtraArgs []string `yaml:"extraArgs,omitempty"`
}

// embedded returns the vCluster embedded section, or nil if absent.
func (c *Config) embedded() *Embedded {
	if c.ControlPlane == nil || c.ControlPlane.BackingStore == nil || c.ControlPlane.BackingStore.Etcd == nil {
		return nil
	}
	return c.ControlPlane.BackingStore.Etcd.Embedded
}

// dropVCluster empties the vCluster keys strict decoding had to keep.
func (c *Config) dropVCluster() {
	if cp := c.ControlPlane; cp != nil {
		cp.VCluster = nil
		if bs := cp.BackingStore; bs != nil {
			bs.VCluster = nil
			if bs.Etcd != nil {
				bs.Etcd.VCluster = nil
			}
		}
	}
}

// Parse decodes a config file on top of Default(). An empty document gives
// the defaults. Decoding is strict: an unknown key, a duplicate key or a
// value of the wrong type is an error naming the key and its line, e.g.
// `line 4: unknown key "snapshotCnt"`; all such problems are returned
// together, except that a mapping with a duplicate key is not checked
// further. Durations are strings such as "10s".
//
// A top-level controlPlane key holds a vCluster values section: its
// backingStore.etcd.embedded keys are merged into the top-level fields of
// the same name, and a key set in both places with different values is an
// error naming both.
//
// Parse does not validate; call Validate (or use Load).
func Parse(data []byte) (Config, error) {
	c := Default()
	// The document is read twice: as a node tree, which gives every key's
	// position, and by yaml.v3's strict decoder (KnownFields), which does
	// the decoding and finds the problems. The tree names the key of each
	// problem the decoder reports (explain).
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return c, nil
		}
		return Config{}, fmt.Errorf("parse: %w", err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return Config{}, fmt.Errorf("parse: %w", err)
	default:
		return Config{}, fmt.Errorf("line %d: a config file holds one YAML document", next.Line)
	}
	strict := yaml.NewDecoder(bytes.NewReader(data))
	strict.KnownFields(true)
	if err := strict.Decode(&c); err != nil {
		return Config{}, explain(&doc, err)
	}
	c.dropVCluster()
	if err := c.mergeEmbedded(topLevelKeys(&doc)); err != nil {
		return Config{}, err
	}
	return c, nil
}

// mergeEmbedded copies the keys set in the vCluster embedded section into
// the top-level fields. present maps the top-level keys found in the file
// to their lines; a key present in both places with different values is an
// error.
func (c *Config) mergeEmbedded(present map[string]int) error {
	e := c.embedded()
	if e == nil {
		return nil
	}
	var errs []error
	conflict := func(key string, top, emb any) {
		errs = append(errs, fmt.Errorf("line %d: %s %v differs from %s.%s %v: set it in one place",
			present[key], key, top, embeddedPath, key, emb))
	}
	_, topSet := present["enabled"]
	if e.Enabled != nil {
		if topSet && c.IsEnabled() != *e.Enabled {
			conflict("enabled", c.IsEnabled(), *e.Enabled)
		} else {
			v := *e.Enabled
			c.Enabled = &v
		}
	}
	_, topSet = present["migrateFromDeployedEtcd"]
	if e.MigrateFromDeployedEtcd != nil {
		if topSet && c.MigrateFromDeployedEtcd != *e.MigrateFromDeployedEtcd {
			conflict("migrateFromDeployedEtcd", c.MigrateFromDeployedEtcd, *e.MigrateFromDeployedEtcd)
		} else {
			c.MigrateFromDeployedEtcd = *e.MigrateFromDeployedEtcd
		}
	}
	_, topSet = present["snapshotCount"]
	if e.SnapshotCount != nil {
		if topSet && c.SnapshotCount != *e.SnapshotCount {
			conflict("snapshotCount", c.SnapshotCount, *e.SnapshotCount)
		} else {
			c.SnapshotCount = *e.SnapshotCount
		}
	}
	_, topSet = present["extraArgs"]
	if e.ExtraArgs != nil {
		if topSet && !slices.Equal(c.ExtraArgs, e.ExtraArgs) {
			conflict("extraArgs", quoteAll(c.ExtraArgs), quoteAll(e.ExtraArgs))
		} else {
			c.ExtraArgs = slices.Clone(e.ExtraArgs)
		}
	}
	return errors.Join(errs...)
}

// quoteAll formats a string list for an error message.
func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// topLevelKeys maps the document's top-level keys to their lines; a key
// written explicitly wins over one brought in by a merge key (<<), as in
// decoding.
func topLevelKeys(doc *yaml.Node) map[string]int {
	var ix index
	ix.walk(documentRoot(doc), "", reflect.TypeFor[Config](), 1)
	lines := make(map[string]int)
	for _, k := range ix.keys {
		if _, seen := lines[k.node.Value]; !seen && k.parent == "" {
			lines[k.node.Value] = k.node.Line
		}
	}
	return lines
}
