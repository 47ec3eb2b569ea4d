//go:build tools

// Package tools pins the etcd programs the benchmark harness builds: the
// stock etcd server, etcdctl, etcdutl and etcd's own load generator
// (tools/benchmark). Nothing imports this package; it only exists so that
// go.mod and go.sum record the exact versions, and `go build PKG` in this
// module builds them (a plain `go install` of these fails: their own go.mod
// files carry replace directives).
package tools

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/etcdutl/v3"
	_ "go.etcd.io/etcd/server/v3"
	_ "go.etcd.io/etcd/v3/tools/benchmark"
)
