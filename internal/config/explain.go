package config

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// explain turns the strict decoder's error into one naming the key path of
// each problem: yaml.v3 reports a line and the Go type, never the key.
func explain(doc *yaml.Node, err error) error {
	var ix index
	ix.walk(documentRoot(doc), "", reflect.TypeFor[Config](), -1)
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		// A merge key on a non-mapping stops yaml.v3 with a message
		// without a line; the walk found where.
		if len(ix.errs) > 0 {
			return errors.Join(ix.errs...)
		}
		return fmt.Errorf("parse: %w", err)
	}
	errs := ix.errs
	for _, msg := range te.Errors {
		errs = append(errs, ix.explain(msg)...)
	}
	var unique []error
	seen := make(map[string]bool)
	for _, e := range errs {
		if !seen[e.Error()] {
			seen[e.Error()] = true
			unique = append(unique, e)
		}
	}
	return errors.Join(unique...)
}

// documentRoot is the node a document holds.
func documentRoot(doc *yaml.Node) *yaml.Node {
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		return doc.Content[0]
	}
	return doc
}

// index locates the nodes yaml.v3's decoder visits when it decodes a
// document into a Config, with each one's key path and Go type.
type index struct {
	// values are the decoded values; keys the mapping keys.
	values, keys []located
	// errs are the misplaced merge keys found.
	errs []error
	// aliases are the aliases being followed, against cycles.
	aliases []*yaml.Node
	// visits counts the nodes walked, against alias bombs: yaml.v3 stops
	// those with "excessive aliasing", and explain then walks the same
	// document.
	visits int
}

// maxVisits bounds the nodes an index walks: far more than a config file
// holds, far fewer than an alias bomb expands to.
const maxVisits = 1 << 16

// located is a node with its key path (e.g. "extraArgs[1]", "" for the
// document) and the Go type it decodes into (nil: none).
type located struct {
	node *yaml.Node
	path string
	typ  reflect.Type
	// parent is the key path and type of a key's mapping.
	parent     string
	parentType reflect.Type
}

// walk indexes n, decoded at path into a value of type t, as yaml.v3
// decodes it: aliases followed, merge keys (<<) expanded into their
// mapping, and values descended into only where the type has a field for
// them (what yaml.v3 skips cannot hold a problem). depth limits the
// levels walked (-1: all).
func (ix *index) walk(n *yaml.Node, path string, t reflect.Type, depth int) {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil || slices.Contains(ix.aliases, n) {
			return
		}
		ix.aliases = append(ix.aliases, n)
		ix.walk(n.Alias, path, t, depth)
		ix.aliases = ix.aliases[:len(ix.aliases)-1]
		return
	}
	if ix.visits++; ix.visits > maxVisits {
		return
	}
	ix.values = append(ix.values, located{node: n, path: path, typ: t})
	if depth == 0 {
		return
	}
	switch n.Kind {
	case yaml.SequenceNode:
		if t == nil || t.Kind() != reflect.Slice {
			return
		}
		for i, item := range n.Content {
			ix.walk(item, fmt.Sprintf("%s[%d]", path, i), t.Elem(), depth-1)
		}
	case yaml.MappingNode:
		ix.walkMapping(n, path, t, depth)
	}
}

// walkMapping indexes the keys of the mapping n and walks the values of
// the known ones, explicit keys before merged ones.
func (ix *index) walkMapping(n *yaml.Node, path string, t reflect.Type, depth int) {
	if ix.visits++; ix.visits > maxVisits {
		return
	}
	fields := yamlFields(t)
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merges = append(merges, v)
			continue
		}
		ix.keys = append(ix.keys, located{node: k, path: joinPath(path, k.Value), parent: path, parentType: t})
		if ft, ok := fields[k.Value]; ok && k.Kind == yaml.ScalarNode {
			ix.walk(v, joinPath(path, k.Value), ft, depth-1)
		}
	}
	for _, m := range merges {
		sources := []*yaml.Node{m}
		if m.Kind == yaml.SequenceNode {
			sources = m.Content
		}
		for _, src := range sources {
			target := src
			if src.Kind == yaml.AliasNode && src.Alias != nil {
				target = src.Alias
			}
			if target.Kind != yaml.MappingNode {
				ix.errs = append(ix.errs, fmt.Errorf("line %d: %s: a merge key (<<) needs a mapping, not %s",
					target.Line, displayPath(path), describeNode(target)))
				continue
			}
			if slices.Contains(ix.aliases, src) {
				continue
			}
			ix.aliases = append(ix.aliases, src)
			ix.walkMapping(target, path, t, depth)
			ix.aliases = ix.aliases[:len(ix.aliases)-1]
		}
	}
}

// yamlFields maps the YAML key of each field of the struct type t to the
// field's type, as yaml.v3 names them; nil if t is not a struct.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	if t == nil || t.Kind() != reflect.Struct {
		return nil
	}
	fields := make(map[string]reflect.Type, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "-" || opts == "inline" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fields[name] = f.Type
	}
	return fields
}

// The problems yaml.v3's decoder reports in a *yaml.TypeError, one string
// each, as gopkg.in/yaml.v3 v3.0.1's decode.go writes them: mappingStruct
// (KnownFields), mapping (unique keys) and terror (a value of the wrong
// type, at most 7 characters of it then "..."). TestExplainYAMLMessages
// produces each and fails if yaml.v3 words them otherwise.
var (
	unknownFieldMsg = regexp.MustCompile(`^line (\d+): field (.*) not found in type (\S+)$`)
	duplicateMsg    = regexp.MustCompile(`^line (\d+): mapping key (".*") already defined at line (\d+)$`)
	wrongTypeMsg    = regexp.MustCompile("(?s)^line (\\d+): cannot unmarshal (\\S+)(?: `(.*)`)? into (\\S+)$")
)

// explain rewrites one of yaml.v3's problem messages to name the key path,
// found by the line, key or value and Go type it gives. A message it does
// not recognize is kept as it is (it starts with the line).
func (ix *index) explain(msg string) []error {
	var (
		errs []error
		// placed: the message was read and its key found, even if it
		// repeats one reported already.
		placed bool
	)
	if m := unknownFieldMsg.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		for _, k := range ix.keys {
			if k.node.Line == line && k.node.Value == m[2] && typeName(k.parentType) == m[3] {
				errs = append(errs, fmt.Errorf("line %d: unknown key %q", line, k.path))
			}
		}
	} else if m := duplicateMsg.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		key, _ := strconv.Unquote(m[2])
		first, _ := strconv.Atoi(m[3])
		for _, k := range ix.keys {
			if k.node.Line != line || k.node.Value != key {
				continue
			}
			// yaml.v3 reports a key written three times at its third
			// line twice: against the first and the second.
			if placed = true; ix.writtenBefore(k, first) {
				continue
			}
			errs = append(errs, fmt.Errorf("line %d: duplicate key %q (first at line %d)", line, k.path, first))
		}
	} else if m := wrongTypeMsg.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		tag, value, into := m[2], m[3], m[4]
		matches := func(n *yaml.Node) bool {
			return n.Line == line && (n.Tag == tag || n.ShortTag() == tag) &&
				(n.Kind != yaml.ScalarNode || truncated(n.Value) == value)
		}
		for _, v := range ix.values {
			if matches(v.node) && typeName(v.typ) == into {
				errs = append(errs, fmt.Errorf("line %d: %s: cannot use %s as %s", line, displayPath(v.path), describeNode(v.node), describeType(v.typ)))
			}
		}
		for _, k := range ix.keys {
			if k.node.Kind != yaml.ScalarNode && matches(k.node) {
				errs = append(errs, fmt.Errorf("line %d: %s: a key must be a string, not %s", line, displayPath(k.parent), describeNode(k.node)))
			}
		}
	}
	if len(errs) == 0 && !placed {
		return []error{errors.New(msg)}
	}
	return errs
}

// writtenBefore reports whether k's mapping has k's key at a line before
// line.
func (ix *index) writtenBefore(k located, line int) bool {
	return slices.ContainsFunc(ix.keys, func(o located) bool {
		return o.parent == k.parent && o.node.Value == k.node.Value && o.node.Line < line
	})
}

// truncated is a value as yaml.v3's terror quotes it.
func truncated(v string) string {
	if len(v) > 10 {
		return v[:7] + "..."
	}
	return v
}

// typeName names t as yaml.v3's messages do (reflect.Type's String).
func typeName(t reflect.Type) string {
	if t == nil {
		return ""
	}
	return t.String()
}

// joinPath appends key to the dotted key path.
func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// displayPath names a key path in a message; the document has none.
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
	case reflect.Struct:
		return "a mapping of keys"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			return "a list of strings"
		}
		return "a list"
	default:
		return t.String()
	}
}
