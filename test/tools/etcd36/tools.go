//go:build tools

// Package tools pins the stock etcd v3.6.16 server that vetcd's migration and
// upgrade tests run against. Nothing imports it; it exists so that go.mod and
// go.sum record the exact version and hack/tools/etcd36.sh can
// `go build go.etcd.io/etcd/server/v3` in this module (a plain `go install`
// of etcd's server fails: its go.mod carries replace directives). This is a
// module of its own so that the main module never depends on an old etcd.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
)
