package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/vetcd/vetcd/internal/config"
	"github.com/vetcd/vetcd/internal/pki"
	"github.com/vetcd/vetcd/internal/plan"
	"github.com/vetcd/vetcd/internal/status"
	"github.com/vetcd/vetcd/internal/topology"
)

// Options configures `vetcd up`.
type Options struct {
	Dir string
	// Replicas is the desired count; 0 keeps the DIR's count (3 for a new
	// DIR).
	Replicas int
	// BasePort is vetcd-0's client port; each replica uses 4 ports from
	// BasePort+10*ordinal. 0 keeps the DIR's (2379 for a new DIR).
	BasePort int
	// Base holds the settings from --config that apply to every replica.
	Base config.Config
	// Binary is the vetcd executable to run as `vetcd serve`.
	Binary string
	// Out receives the human-readable progress lines.
	Out    io.Writer
	Logger *zap.Logger
	// TermGrace is how long a surplus replica may take to leave before it
	// is killed, like a pod's terminationGracePeriodSeconds.
	TermGrace time.Duration
}

type proc struct {
	cmd      *exec.Cmd
	started  time.Time
	stopping bool
	killAt   time.Time
}

type exit struct {
	ordinal int
	err     error
}

// Supervisor runs the replicas of one local cluster.
type Supervisor struct {
	opts     Options
	layout   Layout
	settings Settings
	lg       *zap.Logger

	procs     map[int]*proc
	nextStart map[int]time.Time
	backoff   map[int]*plan.Backoff
	restarts  map[int]int
	exits     chan exit
	announced int
	lastCheck time.Time
	// unlock releases DIR's supervisor lock, taken by Prepare; nil once
	// released.
	unlock func()
}

// Prepare validates everything, takes DIR's supervisor lock and sets up DIR
// (settings, certificates, topology) without starting a process. Bad input,
// and a DIR that a running `vetcd up` or an offline restore holds
// (*LockedError), return an error before anything is written: a refused
// command changes nothing (DESIGN.md safety rule 6). The Supervisor holds
// the lock until Run returns or Close is called.
func Prepare(opts Options) (_ *Supervisor, err error) {
	if opts.Dir == "" {
		return nil, errors.New("--dir: required")
	}
	if opts.Replicas < 0 || opts.Replicas > MaxReplicas {
		return nil, fmt.Errorf("--replicas %d: must be between 1 and %d", opts.Replicas, MaxReplicas)
	}
	if opts.BasePort < 0 || opts.BasePort > 65535-10*MaxReplicas {
		return nil, fmt.Errorf("--base-port %d: must leave room for %d replicas below 65536", opts.BasePort, MaxReplicas)
	}
	if err := checkBase(opts.Base); err != nil {
		return nil, err
	}
	if err := CheckDir(opts.Dir); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("--dir %s: %w", opts.Dir, err)
	}
	opts.Dir = abs
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	if opts.TermGrace == 0 {
		opts.TermGrace = opts.Base.Shutdown.LeaveTimeout + 15*time.Second
	}
	// Check the input against what DIR holds, reading only: bad input is
	// refused without taking the lock, which may create up.lock.
	if _, _, err := resolve(opts); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", abs, err)
	}
	// The lock comes before the first write: a `vetcd up` already running
	// on DIR owns its topology, and a second one that rewrote the desired
	// count before finding the lock would scale the running cluster.
	unlock, err := Lock(abs)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			unlock()
		}
	}()
	// Again under the lock: a `vetcd up` that held it may have created the
	// cluster meanwhile.
	sup, exists, err := resolve(opts)
	if err != nil {
		return nil, err
	}
	sup.unlock = unlock
	l := sup.layout
	if !exists {
		if err := l.writeSettings(sup.settings); err != nil {
			return nil, err
		}
	}
	if _, err := pki.Ensure(l.PKIDir(), pki.LocalOptions()); err != nil {
		return nil, fmt.Errorf("certificates: %w", err)
	}
	if err := topology.UpdateFile(l.TopologyPath(), sup.resumeTopology); err != nil {
		return nil, err
	}
	return sup, nil
}

// resolve reads DIR's settings and topology, without writing, and checks
// opts against them: the supervisor it returns is ready to write DIR.
// exists is false for a new DIR.
func resolve(opts Options) (sup *Supervisor, exists bool, err error) {
	l := Layout{Dir: opts.Dir}
	s, exists, err := l.ReadSettings()
	if err != nil {
		return nil, false, err
	}
	if exists && opts.BasePort != 0 && opts.BasePort != s.BasePort {
		return nil, false, fmt.Errorf("--base-port %d: %s was created with base port %d", opts.BasePort, opts.Dir, s.BasePort)
	}
	if !exists {
		s = Settings{Host: "127.0.0.1", BasePort: cmpOr(opts.BasePort, DefaultBasePort)}
	}
	sup = &Supervisor{
		opts: opts, layout: l, settings: s, lg: opts.Logger,
		procs: map[int]*proc{}, nextStart: map[int]time.Time{}, backoff: map[int]*plan.Backoff{},
		restarts: map[int]int{}, exits: make(chan exit, MaxReplicas),
	}
	// A replica's full config is valid.
	if _, err := sup.replicaConfig(0); err != nil {
		return nil, false, err
	}
	// The topology file parses, and what Prepare would write is valid.
	f, err := topology.ReadFile(l.TopologyPath())
	if err != nil && !errors.Is(err, topology.ErrNoTopology) {
		return nil, false, err
	}
	if err := sup.resumeTopology(&f); err != nil {
		return nil, false, err
	}
	if err := topology.ValidateReplicas(f.Replicas); err != nil {
		return nil, false, fmt.Errorf("%s: %w", l.TopologyPath(), err)
	}
	return sup, exists, nil
}

// resumeTopology is Prepare's change to the topology file: the desired
// count from --replicas (the file's own when not given, 3 for a new DIR),
// every desired replica listed, and no process running yet.
func (s *Supervisor) resumeTopology(f *topology.File) error {
	switch {
	case s.opts.Replicas > 0:
		f.Desired = s.opts.Replicas
	case f.Desired == 0:
		f.Desired = 3
	}
	if f.Desired > MaxReplicas {
		return fmt.Errorf("%s: desired %d above the local limit %d; set a count with --replicas", s.layout.TopologyPath(), f.Desired, MaxReplicas)
	}
	f.Processes = map[int]topology.ProcessState{} // nothing runs yet
	s.ensureReplicas(f)
	return nil
}

func cmpOr(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}

// checkBase refuses --config keys that `vetcd up` fills in per replica.
func checkBase(c config.Config) error {
	var set []string
	if c.Name != "" {
		set = append(set, "name")
	}
	if c.Ordinal != nil {
		set = append(set, "ordinal")
	}
	if c.DataDir != "" {
		set = append(set, "dataDir")
	}
	for k, v := range map[string]string{
		"clientURL": c.ClientURL, "peerURL": c.PeerURL, "listenClientURL": c.ListenClientURL,
		"listenPeerURL": c.ListenPeerURL, "agentURL": c.AgentURL, "metricsURL": c.MetricsURL,
		"tls.caFile": c.TLS.CAFile, "tls.certFile": c.TLS.CertFile, "tls.keyFile": c.TLS.KeyFile,
		"topology.file": c.Topology.File,
	} {
		if v != "" {
			set = append(set, k)
		}
	}
	if len(set) > 0 {
		return fmt.Errorf("--config sets %s: vetcd up fills in each replica's identity, ports, dirs and TLS; remove them", strings.Join(set, ", "))
	}
	return nil
}

// ensureReplicas lists every desired ordinal in the topology file.
func (s *Supervisor) ensureReplicas(f *topology.File) {
	for i := 0; i < f.Desired; i++ {
		if _, ok := f.Replica(i); !ok {
			f.Replicas = append(f.Replicas, s.settings.Replica(i))
		}
	}
}

// replicaConfig is the base config with ordinal i's identity filled in.
func (s *Supervisor) replicaConfig(i int) (config.Config, error) {
	c := s.opts.Base
	r := s.settings.Replica(i)
	files := s.layout.PKI()
	ord := i
	c.Name, c.Ordinal = r.Name, &ord
	c.DataDir = s.layout.DataDir(i)
	c.ClientURL, c.PeerURL, c.AgentURL, c.MetricsURL = r.ClientURL, r.PeerURL, r.AgentURL, r.MetricsURL
	if s.settings.PeerProxy {
		c.ListenPeerURL = fmt.Sprintf("https://%s:%d", s.settings.Host, s.settings.BasePort+10*i+PeerProxyPortOffset)
	}
	c.TLS = config.TLS{CAFile: files.CA, CertFile: files.MemberCert, KeyFile: files.MemberKey}
	c.Topology = config.Topology{Source: "static", File: s.layout.TopologyPath()}
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("config for %s: %w", r.Name, err)
	}
	return c, nil
}

// Run supervises until ctx ends, then stops every replica (desired ones
// keep their membership) and returns.
func (s *Supervisor) Run(ctx context.Context) error {
	if s.unlock == nil {
		return fmt.Errorf("supervise %s: the supervisor was closed; prepare it again", s.layout.Dir)
	}
	defer s.Close()
	f, err := topology.ReadFile(s.layout.TopologyPath())
	if err != nil {
		return err
	}
	fmt.Fprintf(s.opts.Out, "vetcd up: %d replicas in %s\n", f.Desired, s.layout.Dir)
	for i := 0; i < f.Desired; i++ {
		r := s.settings.Replica(i)
		fmt.Fprintf(s.opts.Out, "  %s  client %s  metrics %s/metrics\n", r.Name, r.ClientURL, r.MetricsURL)
	}
	fmt.Fprintf(s.opts.Out, "  etcdctl: eval \"$(vetcd env --dir %s)\"\n", s.layout.Dir)

	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return s.stopAll()
		case e := <-s.exits:
			s.onExit(e)
		case <-tick.C:
		}
		if err := s.reconcile(ctx); err != nil {
			s.lg.Warn("supervisor pass failed", zap.Error(err))
		}
	}
}

// reconcile makes the processes match the desired count.
func (s *Supervisor) reconcile(ctx context.Context) error {
	var desired int
	err := topology.UpdateFile(s.layout.TopologyPath(), func(f *topology.File) error {
		if f.Desired > MaxReplicas {
			return fmt.Errorf("desired %d above the local limit %d", f.Desired, MaxReplicas)
		}
		desired = f.Desired
		s.ensureReplicas(f)
		now := time.Now()
		if f.Paused {
			// A restore is replacing the data: every replica stops, none
			// starts, and desired ones keep their membership.
			desired = 0
		}
		for i := 0; i < desired; i++ {
			if s.procs[i] == nil && !now.Before(s.nextStart[i]) {
				if err := s.start(i); err != nil {
					s.lg.Error("cannot start replica", zap.Int("ordinal", i), zap.Error(err))
					s.nextStart[i] = now.Add(5 * time.Second)
				}
			}
		}
		for i, p := range s.procs {
			if i < desired {
				if p.stopping { // scaled back up while it was leaving
					s.lg.Info("replica is desired again while stopping; it restarts after it exits", zap.Int("ordinal", i))
				}
				continue
			}
			if !p.stopping {
				// Every surplus replica gets SIGTERM in the same pass.
				s.lg.Info("stopping replica", zap.Int("ordinal", i), zap.Int("desired", desired), zap.Bool("paused", f.Paused))
				_ = p.cmd.Process.Signal(syscall.SIGTERM)
				p.stopping = true
				p.killAt = now.Add(s.opts.TermGrace)
			} else if now.After(p.killAt) {
				s.lg.Warn("surplus replica did not stop in time; killing it", zap.Int("ordinal", i))
				_ = p.cmd.Process.Kill()
			}
		}
		states := map[int]topology.ProcessState{}
		for i := range f.Replicas {
			ord := f.Replicas[i].Ordinal
			switch p := s.procs[ord]; {
			case p != nil && p.stopping:
				states[ord] = topology.StateStopping
			case p != nil, ord < desired:
				states[ord] = topology.StateRunning // running, or about to be restarted
			default:
				states[ord] = topology.StateStopped
			}
		}
		f.Processes = states
		return nil
	})
	if err != nil {
		return err
	}
	if desired > 0 {
		s.announce(ctx, desired)
	} else {
		s.announced = 0
	}
	return nil
}

// announce prints one line when the cluster settles at a new count.
func (s *Supervisor) announce(ctx context.Context, desired int) {
	if s.announced == desired || time.Since(s.lastCheck) < time.Second {
		return
	}
	s.lastCheck = time.Now()
	tlsConfig, err := pki.ClientConfig(s.layout.PKI().CA, s.layout.PKI().ClientCert, s.layout.PKI().ClientKey)
	if err != nil {
		return
	}
	var eps []string
	for i := 0; i < desired; i++ {
		eps = append(eps, s.settings.Replica(i).ClientURL)
	}
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c, err := status.Get(cctx, eps, tlsConfig)
	if err != nil {
		return
	}
	if ok, _ := c.Settled(desired); ok {
		s.announced = desired
		fmt.Fprintf(s.opts.Out, "vetcd up: cluster is ready: %d voters, cluster ID %s, endpoints %s\n",
			desired, c.ClusterID, strings.Join(eps, ","))
	}
}

// start launches `vetcd serve` for ordinal i.
func (s *Supervisor) start(i int) error {
	c, err := s.replicaConfig(i)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.layout.ReplicaDir(i), 0o700); err != nil {
		return err
	}
	b, err := c.Marshal()
	if err != nil {
		return err
	}
	if err := topology.WriteAtomic(s.layout.ConfigPath(i), b, 0o600); err != nil {
		return err
	}
	logf, err := os.OpenFile(s.layout.LogPath(i), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.opts.Binary, "serve", "--config", s.layout.ConfigPath(i))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true,            // Ctrl-C reaches the supervisor, which stops replicas in order
		Pdeathsig: syscall.SIGTERM, // a supervisor killed with -9 does not leave replicas behind
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", s.opts.Binary, err)
	}
	logf.Close()
	if err := topology.WriteAtomic(s.layout.PIDPath(i), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o600); err != nil {
		s.lg.Warn("cannot write pid file", zap.Error(err))
	}
	s.procs[i] = &proc{cmd: cmd, started: time.Now()}
	s.lg.Info("replica started", zap.Int("ordinal", i), zap.Int("pid", cmd.Process.Pid))
	go func() { s.exits <- exit{ordinal: i, err: cmd.Wait()} }()
	return nil
}

// onExit records a replica process's exit and schedules its restart when
// it is still desired, with back-off like a kubelet's.
func (s *Supervisor) onExit(e exit) {
	p := s.procs[e.ordinal]
	delete(s.procs, e.ordinal)
	_ = os.Remove(s.layout.PIDPath(e.ordinal))
	if p != nil && p.stopping {
		s.lg.Info("surplus replica stopped", zap.Int("ordinal", e.ordinal), zap.Error(e.err))
		return
	}
	back := s.backoff[e.ordinal]
	if back == nil {
		back = &plan.Backoff{Initial: time.Second, Max: 30 * time.Second}
		s.backoff[e.ordinal] = back
	}
	// A replica that ran for a while is restarted at once (a kill -9
	// costs no extra second: the crash-restart benchmark measured the 1 s
	// floor as most of a 10 MB restart); one that keeps exiting soon after
	// its start waits 1 s, 2 s, … up to 30 s, as a kubelet backs off a
	// crash loop.
	var b time.Duration
	if p != nil && time.Since(p.started) > time.Minute {
		back.Succeeded()
	} else {
		b = back.Failed()
	}
	s.nextStart[e.ordinal] = time.Now().Add(b)
	s.restarts[e.ordinal]++
	_ = topology.WriteAtomic(s.layout.RestartsPath(e.ordinal), []byte(strconv.Itoa(s.restarts[e.ordinal])+"\n"), 0o600)
	s.lg.Warn("replica exited; restarting", zap.Int("ordinal", e.ordinal), zap.Error(e.err), zap.Duration("in", b))
}

// stopAll sends SIGTERM to every replica at once and waits; a replica that
// outlives the grace is killed.
func (s *Supervisor) stopAll() error {
	fmt.Fprintln(s.opts.Out, "vetcd up: stopping replicas")
	for _, p := range s.procs {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.NewTimer(s.opts.TermGrace)
	defer deadline.Stop()
	for len(s.procs) > 0 {
		select {
		case e := <-s.exits:
			delete(s.procs, e.ordinal)
			_ = os.Remove(s.layout.PIDPath(e.ordinal))
		case <-deadline.C:
			for i, p := range s.procs {
				s.lg.Warn("replica did not stop in time; killing it", zap.Int("ordinal", i))
				_ = p.cmd.Process.Kill()
			}
			deadline.Reset(10 * time.Second)
		}
	}
	err := topology.UpdateFile(s.layout.TopologyPath(), func(f *topology.File) error {
		f.Processes = map[int]topology.ProcessState{}
		return nil
	})
	fmt.Fprintln(s.opts.Out, "vetcd up: stopped")
	return err
}

// Close releases DIR's supervisor lock without running: for a caller that
// prepared a supervisor and then decided not to run it. Run closes by
// itself; Close is safe to call again.
func (s *Supervisor) Close() {
	if s.unlock != nil {
		s.unlock()
		s.unlock = nil
	}
}

// LockedError says that another process holds DIR's supervisor lock: a
// running `vetcd up`, or an offline `vetcd snapshot restore`.
type LockedError struct {
	Dir string
	// PID is the holder's process id, as it wrote it into DIR/up.lock; 0
	// when unknown.
	PID int
	// Holder names the holder's command: "vetcd up" or "vetcd snapshot restore".
	Holder string
}

func (e *LockedError) Error() string {
	pid := "pid unknown"
	if e.PID > 0 {
		pid = "pid " + strconv.Itoa(e.PID)
	}
	return fmt.Sprintf("another %s (%s) is running on %s", e.Holder, pid, e.Dir)
}

// lockRetry is how long Lock keeps trying a held lock: Running takes it for
// an instant to probe, and that probe must not refuse a `vetcd up`.
const lockRetry = 500 * time.Millisecond

// Lock takes DIR's supervisor lock: held by `vetcd up` while it runs, and
// by an offline restore so that no `vetcd up` starts meanwhile. A held lock
// is a *LockedError naming the holder.
func Lock(dir string) (func(), error) {
	l := Layout{Dir: dir}
	f, err := os.OpenFile(l.lockPath(), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	deadline := time.Now().Add(lockRetry)
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if errors.Is(err, syscall.EWOULDBLOCK) {
		f.Close()
		return nil, lockHolder(l)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() { f.Close() }, nil
}

// lockHolder describes the process holding DIR's lock from the pid it
// wrote and its command line.
func lockHolder(l Layout) *LockedError {
	e := &LockedError{Dir: l.Dir, Holder: "vetcd up"}
	b, _ := os.ReadFile(l.lockPath())
	e.PID, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	if e.PID <= 0 {
		e.PID = 0
		return e
	}
	cmdline, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(e.PID), "cmdline"))
	args := strings.Split(string(cmdline), "\x00")
	if slices.Contains(args, "snapshot") && slices.Contains(args, "restore") {
		e.Holder = "vetcd snapshot restore"
	}
	return e
}

// Running reports whether a `vetcd up` holds DIR's lock.
func Running(dir string) bool {
	f, err := os.OpenFile(Layout{Dir: dir}.lockPath(), os.O_RDWR, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return true
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}
