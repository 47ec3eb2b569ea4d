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
	"time"

	"gopkg.in/yaml.v3"
)

// embeddedPath is where a vCluster values file keeps the embedded etcd
// settings.
const embeddedPath = "controlPlane.backingStore.etcd.embedded"

// ControlPlane is the controlPlane section of a vCluster values file. vetcd
// reads only backingStore.etcd.embedded from it; every other key (distro,
// statefulSet, ...) belongs to vCluster and is ignored. It is only ever
// decoded as Config.ControlPlane, so its errors name the key path from
// there.
type ControlPlane struct {
	// BackingStore is controlPlane.backingStore.
	BackingStore *BackingStore `yaml:"backingStore,omitempty"`
}

// UnmarshalYAML decodes backingStore and skips vCluster's other keys.
func (cp *ControlPlane) UnmarshalYAML(n *yaml.Node) error {
	return decodeMapping(n, "controlPlane", reflect.ValueOf(cp).Elem(), false, nil)
}

// BackingStore is controlPlane.backingStore of a vCluster values file;
// vCluster's other keys (database, ...) are ignored.
type BackingStore struct {
	// Etcd is controlPlane.backingStore.etcd.
	Etcd *BackingStoreEtcd `yaml:"etcd,omitempty"`
}

// UnmarshalYAML decodes etcd and skips vCluster's other keys.
func (bs *BackingStore) UnmarshalYAML(n *yaml.Node) error {
	return decodeMapping(n, "controlPlane.backingStore", reflect.ValueOf(bs).Elem(), false, nil)
}

// BackingStoreEtcd is controlPlane.backingStore.etcd of a vCluster values
// file; vCluster's other keys (deploy, ...) are ignored.
type BackingStoreEtcd struct {
	// Embedded is the embedded etcd section vetcd implements.
	Embedded *Embedded `yaml:"embedded,omitempty"`
}

// UnmarshalYAML decodes embedded and skips vCluster's other keys.
func (e *BackingStoreEtcd) UnmarshalYAML(n *yaml.Node) error {
	return decodeMapping(n, "controlPlane.backingStore.etcd", reflect.ValueOf(e).Elem(), false, nil)
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

// UnmarshalYAML decodes the section strictly: an unknown key is an error.
func (e *Embedded) UnmarshalYAML(n *yaml.Node) error {
	return decodeMapping(n, embeddedPath, reflect.ValueOf(e).Elem(), true, nil)
}

// embedded returns the vCluster embedded section, or nil if absent.
func (c *Config) embedded() *Embedded {
	if c.ControlPlane == nil || c.ControlPlane.BackingStore == nil || c.ControlPlane.BackingStore.Etcd == nil {
		return nil
	}
	return c.ControlPlane.BackingStore.Etcd.Embedded
}

// Parse decodes a config file on top of Default(). An empty document gives
// the defaults. Decoding is strict: an unknown key, a duplicate key or a
// value of the wrong type is an error naming the key and its line, e.g.
// `line 4: unknown key "snapshotCnt"`; all such problems are returned
// together. Durations are strings such as "10s".
//
// A top-level controlPlane key holds a vCluster values section: its
// backingStore.etcd.embedded keys are merged into the top-level fields of
// the same name, and a key set in both places with different values is an
// error naming both.
//
// Parse does not validate; call Validate (or use Load).
func Parse(data []byte) (Config, error) {
	c := Default()
	// The document is read as a node tree and decoded by decodeMapping
	// rather than by yaml.v3's KnownFields(true): that mode reports an
	// unknown key with the line but a type mismatch without the key, and
	// its messages would have to be parsed to be rewritten.
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
	root := &doc
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		root = doc.Content[0]
	}
	present := make(map[string]int)
	if err := decodeMapping(root, "", reflect.ValueOf(&c).Elem(), true, present); err != nil {
		return Config{}, err
	}
	if err := c.mergeEmbedded(present); err != nil {
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

// decodeMapping decodes the YAML mapping n into the struct v, key by key,
// so that every problem names its key path and line (yaml.v3's own errors
// name neither for a type mismatch). path is n's dotted key path, "" for
// the document. With strict, an unknown key is an error; without, it is
// skipped (vCluster's keys). present, if not nil, records the line of
// every key decoded, by path. All problems are returned joined.
func decodeMapping(n *yaml.Node, path string, v reflect.Value, strict bool, present map[string]int) error {
	n = resolveAlias(n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: %s: cannot use %s as a mapping of keys", n.Line, displayPath(path), describeNode(n))
	}
	pairs, errs := mappingPairs(n, path)
	fields := yamlFields(v.Type())
	firstLine := make(map[string]int)
	for _, p := range pairs {
		key := joinPath(path, p.key.Value)
		idx, known := fields[p.key.Value]
		if !known {
			if strict {
				errs = append(errs, fmt.Errorf("line %d: unknown key %q", p.key.Line, key))
			}
			continue
		}
		if line, dup := firstLine[p.key.Value]; dup {
			errs = append(errs, fmt.Errorf("line %d: duplicate key %q (first at line %d)", p.key.Line, key, line))
			continue
		}
		firstLine[p.key.Value] = p.key.Line
		if present != nil {
			present[key] = p.key.Line
		}
		if err := decodeValue(p.value, key, v.Field(idx), present); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// pair is one key and value of a YAML mapping.
type pair struct{ key, value *yaml.Node }

// mappingPairs returns the entries of the mapping n with YAML merge keys
// ("<<: *anchor") expanded: explicit keys win over merged ones, and earlier
// merge sources over later ones, as the merge key spec says.
func mappingPairs(n *yaml.Node, path string) ([]pair, []error) {
	var (
		pairs  []pair
		merged []pair
		errs   []error
	)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			errs = append(errs, fmt.Errorf("line %d: %s: a key must be a string, not %s", k.Line, displayPath(path), describeNode(k)))
			continue
		}
		if k.Tag != "!!merge" {
			pairs = append(pairs, pair{k, val})
			continue
		}
		sources := []*yaml.Node{resolveAlias(val)}
		if sources[0].Kind == yaml.SequenceNode {
			sources = sources[0].Content
		}
		for _, src := range sources {
			src = resolveAlias(src)
			if src.Kind != yaml.MappingNode {
				errs = append(errs, fmt.Errorf("line %d: %s: a merge key (<<) needs a mapping, not %s", k.Line, displayPath(path), describeNode(src)))
				continue
			}
			sub, subErrs := mappingPairs(src, path)
			merged = append(merged, sub...)
			errs = append(errs, subErrs...)
		}
	}
	seen := make(map[string]bool, len(pairs))
	for _, p := range pairs {
		seen[p.key.Value] = true
	}
	for _, p := range merged {
		if !seen[p.key.Value] {
			seen[p.key.Value] = true
			pairs = append(pairs, p)
		}
	}
	return pairs, errs
}

// decodeValue decodes n into v, whose key path is path.
func decodeValue(n *yaml.Node, path string, v reflect.Value, present map[string]int) error {
	if u, ok := v.Addr().Interface().(yaml.Unmarshaler); ok {
		return u.UnmarshalYAML(n)
	}
	switch v.Kind() {
	case reflect.Pointer:
		if isNull(resolveAlias(n)) {
			v.SetZero()
			return nil
		}
		p := reflect.New(v.Type().Elem())
		if err := decodeValue(n, path, p.Elem(), present); err != nil {
			return err
		}
		v.Set(p)
		return nil
	case reflect.Struct:
		return decodeMapping(n, path, v, true, present)
	case reflect.Slice:
		n = resolveAlias(n)
		if isNull(n) {
			v.SetZero()
			return nil
		}
		if n.Kind != yaml.SequenceNode {
			return fmt.Errorf("line %d: %s: cannot use %s as %s", n.Line, displayPath(path), describeNode(n), describeType(v.Type()))
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		var errs []error
		for i, item := range n.Content {
			if err := decodeValue(item, fmt.Sprintf("%s[%d]", path, i), s.Index(i), present); err != nil {
				errs = append(errs, err)
			}
		}
		if len(errs) > 0 {
			return errors.Join(errs...)
		}
		v.Set(s)
		return nil
	}
	// A scalar: yaml.v3 knows how to decode it (durations from strings
	// only, since v3). Its message names neither key nor a useful type,
	// so it is replaced rather than wrapped.
	if err := n.Decode(v.Addr().Interface()); err != nil {
		r := resolveAlias(n)
		return fmt.Errorf("line %d: %s: cannot use %s as %s", r.Line, displayPath(path), describeNode(r), describeType(v.Type()))
	}
	return nil
}

// yamlFields maps the YAML key of each field of the struct type t to the
// field's index.
func yamlFields(t reflect.Type) map[string]int {
	fields := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = strings.ToLower(f.Name)
		}
		fields[name] = i
	}
	return fields
}

// resolveAlias follows an alias (*anchor) to the node it names.
func resolveAlias(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// isNull reports whether n is empty or a YAML null (`key:` or `key: ~`).
func isNull(n *yaml.Node) bool {
	return n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// joinPath appends key to the dotted key path.
func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// displayPath names a key path in a message; the document has none. The
// path is made of known keys only, so it needs no quoting.
func displayPath(path string) string {
	if path == "" {
		return "document"
	}
	return path
}

// describeNode says what a node holds, for an error message.
func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return strconv.Quote(n.Value)
	default:
		return "this value"
	}
}

// describeType says what a Go type accepts, in YAML terms.
func describeType(t reflect.Type) string {
	if t == reflect.TypeFor[time.Duration]() {
		return `a duration such as "10s" or "2m"`
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.String:
		return "a string"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			return "a list of strings"
		}
		return "a list"
	default:
		return t.String()
	}
}
