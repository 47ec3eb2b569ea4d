package replica

import (
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// quietCore drops two messages embedded etcd logs on every healthy start
// and stop ("setting up serving from embedded etcd failed" on Close, and
// "failed to update storage version" on start; see TESTING.md): left in,
// they teach operators to ignore errors.
type quietCore struct{ zapcore.Core }

func (c quietCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if strings.HasPrefix(e.Message, "setting up serving from embedded etcd failed") ||
		strings.HasPrefix(e.Message, "failed to update storage version") {
		return ce
	}
	return c.Core.Check(e, ce)
}

func (c quietCore) With(fs []zapcore.Field) zapcore.Core { return quietCore{c.Core.With(fs)} }

// etcdLogger is the logger handed to embedded etcd.
func etcdLogger(lg *zap.Logger) *zap.Logger {
	return lg.Named("etcd").WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core { return quietCore{c} }))
}
