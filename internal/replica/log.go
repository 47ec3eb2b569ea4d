package replica

import (
	"runtime"
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

// etcdLogger is the logger handed to embedded etcd. dataLost is called,
// instead of exiting the process, when etcd's file purger finds the
// member's data dir gone (see purgeFatalHook).
func etcdLogger(lg *zap.Logger, dataLost func(why string)) *zap.Logger {
	return lg.Named("etcd").WithOptions(
		zap.WrapCore(func(c zapcore.Core) zapcore.Core { return quietCore{c} }),
		zap.WithFatalHook(purgeFatalHook{dataLost: dataLost}),
		zap.WithPanicHook(removedPanicHook{}),
	)
}

// removedPanicHook ends only the calling goroutine, not the process, on
// etcd's "failed to find local ID in cluster members" panic. etcd raises it
// from RaftCluster.IsLocalMemberLearner once this member's own removal is
// applied, and in etcd 3.7 only client requests get there: the gRPC
// interceptor, maintenance Status, and the HTTP health handler. etcd goes on
// serving clients for a second after it applied its removal, and a Status
// request in that window (a poller, a peer's controller) crashed a leaving
// replica's process (issue 15: 3 of 12 scale-downs). Ended, the request gets
// no answer until its deadline or until the member's client servers stop,
// which they do right after the removal (see leave). vetcd's own code asks votes
// instead, which never panics. Every other panic stays a panic.
type removedPanicHook struct{}

func (removedPanicHook) OnWrite(ce *zapcore.CheckedEntry, fields []zapcore.Field) {
	if ce.Message == "failed to find local ID in cluster members" {
		runtime.Goexit()
	}
	zapcore.WriteThenPanic.OnWrite(ce, fields)
}

// purgeFatalHook ends only the goroutine, not the process, on the Fatal
// calls of etcd's file purger: etcdserver.purgeFile runs them in a
// goroutine of its own, holding no lock, when it cannot list the WAL or
// snapshot dir, that is when the data dir was deleted under a running
// member. Ending that goroutine (its deferred WaitGroup.Done still runs, so
// the server can stop) and telling the replica lets the replica stop the
// member and rejoin inside the process, as the README promises, instead of
// the supervisor restarting the whole process.
//
// Every other Fatal exits the process as etcd expects: those run on
// etcd's raft, apply or backend goroutines, often holding locks, and a
// server that went on without them would hang or serve stale state.
type purgeFatalHook struct{ dataLost func(why string) }

// isPurgeFailure reports whether msg is one of etcdserver.purgeFile's
// Fatal messages.
func isPurgeFailure(msg string) bool {
	switch msg {
	case "failed to purge wal file", "failed to purge snap file", "failed to purge snap db file":
		return true
	}
	return false
}

func (h purgeFatalHook) OnWrite(ce *zapcore.CheckedEntry, fields []zapcore.Field) {
	if isPurgeFailure(ce.Message) {
		h.dataLost(ce.Message)
		runtime.Goexit()
	}
	zapcore.WriteThenFatal.OnWrite(ce, fields)
}
