package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"go.etcd.io/etcd/api/v3/version"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/pkg/v3/featuregate"
	"go.etcd.io/etcd/pkg/v3/flags"
	"go.etcd.io/etcd/server/v3/embed"
)

// Kinds of extraArgs problems, for errors.Is on an *ArgError.
var (
	// ErrArgSyntax: the entry is not one "--flag=value" or "--bool-flag"
	// (a positional argument, or a value left for the next entry).
	ErrArgSyntax = errors.New("config: extraArgs entry is not one --flag=value")
	// ErrUnknownFlag: this etcd version has no such server flag.
	ErrUnknownFlag = errors.New("config: unknown etcd flag")
	// ErrForbiddenFlag: the flag is owned by vetcd or not supported.
	ErrForbiddenFlag = errors.New("config: etcd flag not allowed in extraArgs")
	// ErrFlagValue: etcd refused the flag's value.
	ErrFlagValue = errors.New("config: invalid etcd flag value")
)

// ArgError is a problem with one entry of extraArgs. Its message names the
// entry by index and text, e.g.
// `extraArgs[2] "--quota-bytes=1": etcd 3.7 has no flag "quota-bytes"`.
type ArgError struct {
	// Index is the entry's position in extraArgs.
	Index int
	// Arg is the entry as written.
	Arg string
	// Kind is ErrArgSyntax, ErrUnknownFlag, ErrForbiddenFlag or
	// ErrFlagValue; Unwrap returns it.
	Kind error
	// Reason says what is wrong and what to do instead.
	Reason string
}

// Error implements error.
func (e *ArgError) Error() string {
	return fmt.Sprintf("extraArgs[%d] %q: %s", e.Index, e.Arg, e.Reason)
}

// Unwrap returns Kind, so that errors.Is(err, ErrForbiddenFlag) works.
func (e *ArgError) Unwrap() error { return e.Kind }

// ValidateExtraArgs checks extraArgs without applying them: every entry
// must be one etcd server flag of this etcd version, written as
// "--flag=value" ("--bool-flag" alone is fine; a value in the next entry is
// not), that vetcd does not own, with a value etcd accepts. It returns
// every problem as an *ArgError, joined.
//
// Like ApplyExtraArgs, when args is not empty it writes etcd's
// process-wide rafthttp.ConnReadTimeout and ConnWriteTimeout (their
// defaults, through embed.Config.AddFlags); the race detector reports that
// if an etcd member runs in the same process. With no args it does nothing.
func ValidateExtraArgs(args []string) error {
	if len(args) == 0 {
		return nil
	}
	_, err := parseExtraArgs(embed.NewConfig(), args)
	return err
}

// ApplyExtraArgs sets the etcd server flags in args on ec, as etcd's own
// command line would, and marks each in ec.FlagsExplicitlySet. Call it
// after filling ec with vetcd's defaults (so that the user's flags win) and
// before setting what vetcd owns. ec must come from embed.NewConfig.
//
// The args are checked first (ValidateExtraArgs) against a scratch config:
// if any is wrong, ec is not modified. Only the flags named in args change
// ec; every other field keeps its value.
//
// Not safe for concurrent use with anything reading etcd's rafthttp
// ConnReadTimeout and ConnWriteTimeout, such as a running etcd member in
// the same process: embed.Config.AddFlags binds those process-wide
// variables and so writes their defaults into them. It does so only when
// args is not empty; the raft-*-timeout flags themselves are refused
// because setting them would change every member in the process.
func ApplyExtraArgs(ec *embed.Config, args []string) error {
	if len(args) == 0 {
		return nil
	}
	if err := ValidateExtraArgs(args); err != nil {
		return err
	}
	if _, ok := ec.ServerFeatureGate.(featuregate.MutableFeatureGate); !ok {
		return errors.New("config: apply extraArgs: embed.Config has no mutable feature gate; build it with embed.NewConfig")
	}
	if ec.FlagsExplicitlySet == nil {
		ec.FlagsExplicitlySet = make(map[string]bool)
	}
	set, err := parseExtraArgs(ec, args)
	if err != nil {
		// Not reached: the same args just parsed on a scratch config.
		return fmt.Errorf("config: apply extraArgs: %w", err)
	}
	for _, name := range set {
		ec.FlagsExplicitlySet[name] = true
	}
	return nil
}

// parseExtraArgs sets args on ec, then does etcdmain's post-processing for
// the flags that need it (lists, URL sets), and returns the names of the
// flags set. On error ec may be partly modified: callers pass a scratch
// config first.
func parseExtraArgs(ec *embed.Config, args []string) ([]string, error) {
	fs := newFlagSet(ec)
	var (
		errs []error
		set  []string
	)
	for i, arg := range args {
		name, value, err := checkArg(fs, arg)
		if err == nil {
			if serr := fs.Set(name, value); serr != nil {
				err = &ArgError{Kind: ErrFlagValue, Reason: fmt.Sprintf("invalid value %q for --%s: %v", value, name, serr)}
			}
		}
		if err != nil {
			err.Index, err.Arg = i, arg
			errs = append(errs, err)
			continue
		}
		set = append(set, name)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	postProcessFlags(ec, fs)
	return set, nil
}

// checkArg splits one entry into flag name and value, and refuses it if it
// is not one flag, is unknown, or is forbidden. The returned error lacks
// Index and Arg.
func checkArg(fs *flag.FlagSet, arg string) (name, value string, _ *ArgError) {
	if !strings.HasPrefix(arg, "-") || arg == "-" || arg == "--" {
		return "", "", &ArgError{Kind: ErrArgSyntax, Reason: `not a flag: each entry must be one "--flag=value" (positional arguments are not accepted)`}
	}
	body := strings.TrimPrefix(strings.TrimPrefix(arg, "-"), "-")
	name, value, hasValue := strings.Cut(body, "=")
	if name == "" || strings.HasPrefix(name, "-") {
		return "", "", &ArgError{Kind: ErrArgSyntax, Reason: `bad flag syntax: write "--flag=value"`}
	}
	if reason, forbidden := forbiddenFlag(name); forbidden {
		return "", "", &ArgError{Kind: ErrForbiddenFlag, Reason: fmt.Sprintf("--%s is %s", name, reason)}
	}
	f := fs.Lookup(name)
	if f == nil {
		return "", "", &ArgError{Kind: ErrUnknownFlag, Reason: fmt.Sprintf("etcd %s has no flag %q", etcdVersion(), name)}
	}
	if !hasValue {
		if !isBoolFlag(f) {
			return "", "", &ArgError{Kind: ErrArgSyntax, Reason: fmt.Sprintf(
				"--%s needs a value in the same entry: write \"--%s=VALUE\" (a value in the next entry is not accepted)", name, name)}
		}
		value = "true"
	}
	return name, value, nil
}

// isBoolFlag reports whether f may be given without a value, as the flag
// package decides it.
func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// etcdVersion is the etcd minor version these flags come from, e.g. "3.7".
func etcdVersion() string {
	return version.Cluster(version.Version)
}

// newFlagSet returns a flag set holding every etcd server flag bound to
// ec's fields, plus etcdmain's own flags (so that they are refused as
// forbidden rather than unknown). Parsing into it changes only the fields
// of the flags set.
//
// embed.Config.AddFlags registers each flag with a default and so writes
// that default into ec; ec is restored right after. It also writes through
// the discovery client config's pointers, so ec gets throwaway ones while
// registering (the discovery flags are forbidden anyway).
func newFlagSet(ec *embed.Config) *flag.FlagSet {
	fs := flag.NewFlagSet("extraArgs", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	saved := *ec
	ec.DiscoveryCfg.Secure = &clientv3.SecureConfig{}
	ec.DiscoveryCfg.Auth = &clientv3.AuthConfig{}
	ec.AddFlags(fs)
	*ec = saved
	// etcdmain's flags (etcdmain/config.go newConfig); their values are
	// never used.
	for _, name := range []string{"initial-cluster-state", "config-file", "v2-deprecation", "discovery-fallback"} {
		fs.String(name, "", "")
	}
	fs.Bool("version", false, "")
	return fs
}

// postProcessFlags copies the flags that etcdmain post-processes
// (etcdmain/config.go configFromCmdLine) from their flag values into ec,
// for those set only: an unset flag keeps ec's value rather than the flag
// default. The other post-processed flags are forbidden.
func postProcessFlags(ec *embed.Config, fs *flag.FlagSet) {
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "cors":
			ec.CORS = flags.UniqueURLsMapFromFlag(fs, f.Name)
		case "host-whitelist":
			ec.HostWhitelist = flags.UniqueStringsMapFromFlag(fs, f.Name)
		case "client-cert-allowed-hostname":
			ec.ClientTLSInfo.AllowedHostnames = flags.StringsFromFlag(fs, f.Name)
		case "peer-cert-allowed-cn":
			ec.PeerTLSInfo.AllowedCNs = flags.StringsFromFlag(fs, f.Name)
		case "peer-cert-allowed-hostname":
			ec.PeerTLSInfo.AllowedHostnames = flags.StringsFromFlag(fs, f.Name)
		case "cipher-suites":
			ec.CipherSuites = flags.StringsFromFlag(fs, f.Name)
		case "max-concurrent-streams":
			ec.MaxConcurrentStreams = flags.Uint32FromFlag(fs, f.Name)
		case "listen-metrics-urls":
			ec.ListenMetricsUrls = flags.UniqueURLsFromFlag(fs, f.Name)
		case "listen-client-http-urls":
			ec.ListenClientHttpUrls = flags.UniqueURLsFromFlag(fs, f.Name)
		}
	})
}

// Reasons for refusing a flag, shared by the flags of one kind.
const (
	reasonDataLayout = "owned by vetcd: it manages the data layout (moving data aside and rejoining need one directory); use dataDir"
	reasonMembership = "owned by vetcd: it decides membership and the start mode from the topology"
	reasonURLs       = "owned by vetcd: use the clientURL, peerURL, listenClientURL and listenPeerURL keys"
	reasonDiscovery  = "owned by vetcd: membership comes from the topology, not from etcd discovery"
	reasonTLS        = "owned by vetcd: use the tls key; vetcd runs mTLS on every port with one certificate"
	reasonLogging    = "owned by vetcd: use log.level; vetcd logs through its own zap logger"
	reasonRaftGlobal = "not supported: etcd keeps it in a process-wide variable, so it would change every member in the process"
)

// forbiddenFlag says whether vetcd refuses the etcd flag name in extraArgs,
// and why.
func forbiddenFlag(name string) (reason string, forbidden bool) {
	switch name {
	case "name":
		return "owned by vetcd: use the name key", true
	case "data-dir", "wal-dir":
		return reasonDataLayout, true
	case "initial-cluster", "initial-cluster-state", "initial-cluster-token":
		return reasonMembership, true
	case "initial-advertise-peer-urls", "advertise-client-urls", "listen-peer-urls", "listen-client-urls":
		return reasonURLs, true
	case "force-new-cluster":
		return "owned by vetcd: it applies it itself, once, under a marker, only on a rebuild", true
	case "cert-file", "key-file", "trusted-ca-file", "client-cert-auth",
		"peer-cert-file", "peer-key-file", "peer-trusted-ca-file", "peer-client-cert-auth",
		"auto-tls", "peer-auto-tls",
		"client-cert-file", "client-key-file", "peer-client-cert-file", "peer-client-key-file":
		return reasonTLS, true
	case "logger", "log-outputs", "log-format", "log-level", "enable-log-rotation", "log-rotation-config-json":
		return reasonLogging, true
	case "raft-read-timeout", "raft-write-timeout":
		return reasonRaftGlobal, true
	case "unsafe-no-fsync":
		return "refused: without fsync a power loss can lose acknowledged writes, which vetcd promises never to do", true
	case "config-file":
		return "not supported: vetcd's config file replaces etcd's", true
	case "version":
		return "not supported: it prints the version and exits", true
	case "v2-deprecation":
		return "not supported: deprecated, and etcd ignores it", true
	}
	if strings.HasPrefix(name, "discovery") {
		return reasonDiscovery, true
	}
	return "", false
}
