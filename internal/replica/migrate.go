package replica

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"go.uber.org/zap"

	"github.com/vetcd/vetcd/internal/migrate"
)

// migrateAtFounding seeds the founding member's data dir from kine's
// SQLite file when migrateFrom names one, before etcd first starts, so the
// replica reports ready only with the migrated data. It runs only from
// bootstrap (an empty data dir, no founded cluster): a founded cluster
// never migrates again, and its etcd holds the "done" marker. A seed that
// fails leaves no data dir and keeps its work dir next to the data dir, so
// the retried bootstrap resumes it.
func (r *Replica) migrateAtFounding(ctx context.Context, token string) error {
	path, explicit := r.cfg.MigrateFrom.SQLiteSource()
	if path == "" {
		return nil
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		if _, merr := os.Stat(path + migrate.MigratedSuffix); merr == nil {
			r.lg.Warn("kine SQLite source was migrated already; founding without migrating",
				zap.String("source", path+migrate.MigratedSuffix))
			return nil
		}
		if !explicit {
			r.lg.Info("no kine database to migrate", zap.String("looked-for", path))
			return nil
		}
		return fmt.Errorf("migrateFrom.sqlite %s: %w", path, migrate.ErrSourceMissing)
	}
	r.lg.Info("founding the cluster from kine's SQLite database", zap.String("source", path))
	res, err := migrate.Seed(ctx, migrate.SeedOptions{
		Options: migrate.Options{Source: path, Logger: r.lg.Named("migrate")},
		DataDir: r.cfg.DataDir,
		WorkDir: filepath.Join(parentDir(r.cfg.DataDir), "migrate-sqlite"),
		Name:    r.cfg.Name,
		PeerURL: r.cfg.PeerURL,
		Token:   token,
	})
	if err != nil {
		return fmt.Errorf("migrate from %s: %w", path, err)
	}
	r.lg.Info("migrated kine's SQLite database into the founding member", zap.Int64("keys", res.Keys),
		zap.Int64("bytes", res.Bytes), zap.Int64("kine-revision", res.SourceRevision), zap.Int64("revision", res.Revision),
		zap.Bool("resumed", res.Resumed), zap.String("source-renamed-to", res.Renamed))
	return nil
}
