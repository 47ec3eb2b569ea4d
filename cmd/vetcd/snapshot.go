package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/vetcd/vetcd/internal/local"
	"github.com/vetcd/vetcd/internal/snapshot"
	"github.com/vetcd/vetcd/internal/storage"
)

func newSnapshotCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Create, list, delete and restore snapshots (file://, s3:// and oci:// URLs)",
		Long: `A vetcd snapshot is etcd's own snapshot db, zstd-compressed, optionally encrypted with age,
plus a JSON manifest (format, etcd version, cluster ID, revision, key count, time, sha256,
source replica). After decryption and decompression it restores with stock
'etcdutl snapshot restore'.

URLs: file:///path/NAME stores NAME and NAME.manifest.json in /path, written 0600 through
a temporary file, fsync and rename.

s3://BUCKET/PREFIX/NAME stores the keys PREFIX/NAME and PREFIX/NAME.manifest.json on AWS S3
or any S3-compatible service. Options: ?endpoint=HOST:PORT (default s3.amazonaws.com; other
endpoints use path-style requests, ?path-style=false to turn that off), ?region=R (default
AWS_REGION, else asked), ?insecure=true or ?tls=false for plain http, ?ca=FILE.pem (or
AWS_CA_BUNDLE) for a private CA. Credentials are never taken from the URL: they come from
AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN, then the shared AWS files
(AWS_PROFILE), then IAM (web identity, ECS/EKS, EC2). Large snapshots upload in 16 MiB
parts; an upload that fails is aborted, so no partial object is ever visible.

oci://REGISTRY[:PORT]/REPOSITORY:NAME stores one OCI artifact tagged NAME in an OCI registry
(distribution, Harbor, ghcr.io, ECR, ...): the data as its layer, the manifest as its config.
The tag is pushed last, so a tagged snapshot is complete. Without a tag
(oci://REGISTRY/REPOSITORY, or REPOSITORY:PREFIX for list) the URL names the repository.
Options: ?insecure=true for a plain-HTTP registry, ?ca=FILE.pem for a private CA,
?timeout=DURATION to reach it (default 15s). Credentials are never taken from the URL:
VETCD_OCI_USERNAME and VETCD_OCI_PASSWORD, else the docker config (DOCKER_CONFIG or
~/.docker/config.json, credential helpers included, as 'docker login' writes it). Deleting needs a registry that allows deletes; space is freed
by the registry's garbage collection.`,
	}
	cmd.AddCommand(newSnapshotCreateCmd(), newSnapshotListCmd(), newSnapshotDeleteCmd(), newSnapshotRestoreCmd())
	return cmd
}

// keyFlags are the age options shared by the snapshot commands.
func keyFlags(cmd *cobra.Command, k *snapshot.Keys, decrypt bool) {
	f := cmd.Flags()
	f.StringVar(&k.PassphraseFile, "age-passphrase-file", "", "encrypt/decrypt with the passphrase in this file")
	f.StringVar(&k.PassphraseEnv, "age-passphrase-env", "", "encrypt/decrypt with the passphrase in this environment variable")
	if decrypt {
		f.StringVar(&k.IdentityFile, "age-identity", "", "decrypt with the age X25519 identities in this file")
	} else {
		f.StringVar(&k.RecipientsFile, "age-recipients-file", "", "encrypt to the age X25519 recipients in this file")
	}
}

func openLocation(ctx context.Context, raw string) (storage.Location, storage.Backend, error) {
	loc, err := storage.Parse(raw)
	if err != nil {
		return loc, nil, usageError{err}
	}
	b, err := storage.Open(ctx, loc)
	if err != nil {
		return loc, nil, usageError{err}
	}
	return loc, b, nil
}

func newSnapshotCreateCmd() *cobra.Command {
	var (
		cf      clusterFlags
		keys    snapshot.Keys
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "create URL [--dir DIR | --endpoints URLS --cacert F --cert F --key F]",
		Short: "Take a snapshot of a running cluster and store it at URL",
		Long: `create streams a snapshot from the leader (or, without one, the member with the highest raft
index), spools it to a temporary file, reads its revision and key count, then stores it
compressed (and encrypted, with an --age-* option) at URL. The manifest is written last:
a snapshot that is listed is complete. Needs a reachable member.`,
		Example: `  vetcd snapshot create file:///backups/before-upgrade
  vetcd snapshot create file:///backups/nightly --age-passphrase-file /etc/vetcd/backup.pass
  vetcd snapshot create s3://my-bucket/vetcd/before-upgrade
  vetcd snapshot create 's3://backups/c1/nightly?endpoint=minio.local:9000&ca=/etc/ssl/minio-ca.pem'
  vetcd snapshot create oci://ghcr.io/acme/etcd-backups:before-upgrade
  vetcd snapshot create 'oci://127.0.0.1:5000/vetcd/snaps:nightly?insecure=true'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := envDefault(cmd); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			loc, b, err := openLocation(ctx, args[0])
			if err != nil {
				return err
			}
			if loc.Name == "" {
				return usagef("%s: the URL names no snapshot (it ends in /)", args[0])
			}
			if _, err := keys.Recipients(); err != nil {
				return usageError{err}
			}
			t, err := cf.resolve(cmd)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			start := time.Now()
			opts := snapshot.CreateOptions{Keys: keys}
			if f, ok := out.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
				last := time.Time{}
				opts.Progress = func(n int64) {
					if time.Since(last) > 200*time.Millisecond {
						last = time.Now()
						fmt.Fprintf(out, "\r  reading snapshot: %s", humanBytes(n))
					}
				}
			}
			m, err := snapshot.Create(ctx, snapshot.Source{Endpoints: t.endpoints, TLS: t.tls}, b, loc.Name, opts)
			if opts.Progress != nil {
				fmt.Fprint(out, "\r\033[K")
			}
			if err != nil {
				return err
			}
			enc := "not encrypted"
			if m.Encryption != "" {
				enc = "encrypted (" + m.Encryption + ")"
			}
			fmt.Fprintf(out, "snapshot %s: cluster %s, revision %d, %d keys, %s db from %s, %s, in %s\n",
				args[0], m.ClusterID, m.Revision, m.KeyCount, humanBytes(m.Size), m.Source, enc, time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	cf.register(cmd)
	keyFlags(cmd, &keys, false)
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Minute, "give up after this long")
	return cmd
}

func newSnapshotListCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "list URL-PREFIX [-o table|json]",
		Short: "List the snapshots under a URL prefix, newest first",
		Long:  `list reads the manifests under URL-PREFIX and prints name, time, revision, size, encryption. Works on the storage alone.`,
		Example: `  vetcd snapshot list file:///backups/
  vetcd snapshot list file:///backups/nightly- -o json
  vetcd snapshot list s3://my-bucket/vetcd/
  vetcd snapshot list oci://ghcr.io/acme/etcd-backups`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "table" && output != "json" {
				return usagef("-o %q: unknown output format (use table or json)", output)
			}
			ctx := cmd.Context()
			loc, b, err := openLocation(ctx, args[0])
			if err != nil {
				return err
			}
			entries, err := snapshot.List(ctx, b, loc.Name)
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if eerr := enc.Encode(entries); eerr != nil {
					return eerr
				}
				return err
			}
			printSnapshots(cmd.OutOrStdout(), entries)
			return err
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

func printSnapshots(w io.Writer, entries []snapshot.Entry) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tCREATED\tCLUSTER\tREVISION\tKEYS\tDB SIZE\tSTORED\tENCRYPTED")
	for _, e := range entries {
		encrypted := "no"
		if e.Manifest.Encryption != "" {
			encrypted = e.Manifest.Encryption
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", e.Name, e.Manifest.Created.Format(time.RFC3339), e.Manifest.ClusterID,
			e.Manifest.Revision, e.Manifest.KeyCount, humanBytes(e.Manifest.Size), humanBytes(e.Stored), encrypted)
	}
	tw.Flush()
}

func newSnapshotDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "delete URL",
		Short:   "Delete a snapshot (its manifest first, then its data)",
		Example: `  vetcd snapshot delete file:///backups/before-upgrade`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			loc, b, err := openLocation(ctx, args[0])
			if err != nil {
				return err
			}
			if loc.Name == "" || strings.HasSuffix(loc.Name, snapshot.ManifestSuffix) {
				return usagef("%s: name a snapshot, not a prefix or a manifest", args[0])
			}
			if err := snapshot.Delete(ctx, b, loc.Name); err != nil {
				if errors.Is(err, storage.ErrNotFound) {
					return usageError{err}
				}
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted %s\n", args[0])
			return nil
		},
	}
}

func newSnapshotRestoreCmd() *cobra.Command {
	var (
		dir  string
		keys snapshot.Keys
		wait time.Duration
	)
	cmd := &cobra.Command{
		Use:   "restore URL [--dir DIR] [--age-passphrase-file F | --age-passphrase-env VAR | --age-identity F]",
		Short: "Replace the local cluster in DIR with a snapshot",
		Long: `restore verifies the snapshot's manifest and the checksum of its whole db before touching
anything. Then it stops the replicas, moves every replica's data dir aside, restores the
snapshot into ordinal 0 with a revision bump of 1e9 and the old revisions marked compacted
(so Kubernetes watchers relist instead of seeing time go backwards), and the other replicas
rejoin as learners.

With 'vetcd up' running on DIR, restore coordinates with it: the replicas stop, the cluster
comes back under the same supervisor, and the old data is deleted once the restored
cluster is healthy. Without it, restore holds DIR's lock while it works, the next
'vetcd up' starts the restored cluster, and the old data is kept until you delete it.`,
		Example: `  vetcd snapshot restore file:///backups/nightly
  vetcd snapshot restore file:///backups/nightly --dir /tmp/c1 --age-passphrase-file backup.pass`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := envDefault(cmd); err != nil {
				return err
			}
			ctx := cmd.Context()
			loc, b, err := openLocation(ctx, args[0])
			if err != nil {
				return err
			}
			if loc.Name == "" {
				return usagef("%s: the URL names no snapshot", args[0])
			}
			l, err := localLayout(dir)
			if err != nil {
				return err
			}
			err = local.Restore(ctx, local.RestoreOptions{
				Dir: l.Dir, Backend: b, Name: loc.Name, Source: args[0], Keys: keys,
				Out: cmd.OutOrStdout(), Wait: wait,
			})
			if errors.Is(err, storage.ErrNotFound) || errors.Is(err, snapshot.ErrChecksum) ||
				errors.Is(err, snapshot.ErrKey) || errors.Is(err, snapshot.ErrManifest) {
				return usageError{fmt.Errorf("%w (nothing was changed)", err)}
			}
			return err
		},
	}
	cmd.Flags().StringVar(&dir, "dir", defaultDir, "cluster directory of the local cluster")
	keyFlags(cmd, &keys, true)
	cmd.Flags().DurationVar(&wait, "wait", 3*time.Minute, "how long the replicas may take to stop, and the restored cluster to become healthy")
	return cmd
}
