// Package migrate moves the data of another Kubernetes store into vetcd's
// embedded etcd: kine's SQLite file (sqlite.go, seed.go, online.go) and a
// deployed (external) etcd (etcd*.go, kept by the external-etcd work).
//
// # kine SQLite
//
// kine keeps every revision of every key as a row of its `kine` table; the
// row id is the revision. A migration reads the newest row per key, keeps
// the live ones (deleted = 0), skips kine's own bookkeeping rows
// (compact_rev_key, compact_rev_key_apiserver, gap-*), and writes them in
// batched txns. A row with lease > 0 (kine's lease ID is its TTL in
// seconds) is attached to an etcd lease with that TTL, so Events still
// expire. Afterwards the etcd revision is above kine's highest revision, so
// Kubernetes resourceVersions never go backwards, and the revisions before
// it are marked compacted, so watchers relist.
//
// Two targets share the reader, the writer, the verification and the
// marker:
//
//   - Seed (first start): the keys are written straight into an etcd
//     backend file in the work dir, in etcd's mvcc layout (stagedb.go: no
//     raft log, no gRPC), one bbolt transaction and one revision per
//     batch, and etcdutl's restore turns that file into the new member's
//     data dir with RevisionBump and MarkCompacted. The revision bump
//     costs nothing however large kine's revision is. The restored file is
//     read back and verified before the final rename makes the data dir
//     appear, so a crash leaves either no data dir (the next start
//     migrates again, resuming the work dir) or a complete one.
//   - Into (vetcd migrate against a running cluster): the same batched
//     writes through a client; the revision is raised with a loop of
//     small concurrent txns (etcd has no "set revision" call), then the
//     history is compacted.
//
// A migration is resumable: each written batch is recorded in the marker
// key MarkerKey in the target (for Seed, in the same bbolt transaction as
// the batch), and a rerun continues after the last recorded key; a Put of
// the same value and lease is idempotent, so re-writing a batch gives the
// same result. The marker's final state, "done", is what makes a
// migration never run twice. The key count and a content hash (SHA-256
// over the SHA-256 of each key's key, value and TTL, in key order; see
// Stats) are checked against the source before the source is renamed to
// *.migrated; it is never deleted. Seed hashes the source as it reads it
// and the new member's data dir by reading its bbolt file; Into reads
// the cluster back through the client.
//
// The source is read in one pass: the newest row of every key through
// kine's name index, memory-mapped. SQLite checks each page it reads; its
// quick_check of the whole file (Source.Check) runs beside Seed's copy
// and before Into writes anything, so a damaged file is refused before
// any result becomes visible.
//
// The source is opened read-only; a database kine still has open in WAL
// mode is read consistently through the WAL. A source whose revision moves
// while it is read (kine still writing) is refused with ErrSourceBusy.
package migrate
