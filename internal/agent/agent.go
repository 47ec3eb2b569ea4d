// Package agent is the replica's small mTLS endpoint that answers even
// while its etcd member is down. Peers read it to decide safely: whether a
// replica holds data (the bootstrap guard), and which survivor is the most
// up to date (the rebuild rule).
package agent

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Path is the HTTP path of the state document.
const Path = "/v1/state"

// State is what a replica reports about itself.
type State struct {
	Name    string `json:"name"`
	Ordinal int    `json:"ordinal"`
	// Data is the data dir state: empty, valid, corrupt, left.
	Data      string `json:"data"`
	ClusterID ID     `json:"clusterID,omitempty"`
	MemberID  ID     `json:"memberID,omitempty"`
	// AppliedIndex comes from the running member, or from the data dir's
	// backend when etcd is down.
	AppliedIndex uint64 `json:"appliedIndex"`
	// AppliedStableMs is how long, in milliseconds, the running member's
	// applied index has not moved (0 while it moves). Survivors that
	// lost quorum compare indices only once they settled.
	AppliedStableMs int64  `json:"appliedStableMs,omitempty"`
	EtcdRunning     bool   `json:"etcdRunning"`
	Leader          ID     `json:"leader,omitempty"`
	EtcdVersion     string `json:"etcdVersion"`
	// Mode and Reason are the replica's last decision.
	Mode   string `json:"mode"`
	Reason string `json:"reason,omitempty"`
	// Controller is set on the leader: its last action and the members
	// its health monitor watches.
	Controller *ControllerState `json:"controller,omitempty"`
}

// ControllerState is the leader's controller as `vetcd status` shows it.
type ControllerState struct {
	LastAction string    `json:"lastAction,omitempty"`
	LastReason string    `json:"lastReason,omitempty"`
	LastAt     time.Time `json:"lastAt,omitzero"`
	Watching   []Watch   `json:"watching,omitempty"`
	// Snapshot is the last scheduled snapshot taken by this leader.
	Snapshot *SnapshotState `json:"snapshot,omitempty"`
}

// SnapshotState is the outcome of scheduled snapshots.
type SnapshotState struct {
	Last      string    `json:"last,omitempty"`
	LastAt    time.Time `json:"lastAt,omitzero"`
	LastSize  int64     `json:"lastSize,omitempty"`
	Failures  int       `json:"failures,omitempty"`
	LastError string    `json:"lastError,omitempty"`
}

// Watch is a member under watch and why.
type Watch struct {
	Member string `json:"member"`
	Reason string `json:"reason"`
	For    string `json:"for,omitempty"`
}

// ID is an etcd member or cluster ID, written in hex as etcd prints it.
type ID uint64

// MarshalJSON writes the ID as a hex string.
func (id ID) MarshalJSON() ([]byte, error) {
	return json.Marshal(strconv.FormatUint(uint64(id), 16))
}

// UnmarshalJSON reads a hex string.
func (id *ID) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		return fmt.Errorf("agent: bad ID %q: %w", s, err)
	}
	*id = ID(v)
	return nil
}

// Handler serves the state document from a callback that must be safe for
// concurrent use.
func Handler(state func() State) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+Path, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(state())
	})
	return mux
}

// Server is a running agent endpoint.
type Server struct {
	srv  *http.Server
	done chan error
}

// Serve starts the agent on ln with the server TLS config (which must
// require client certificates). It runs until Shutdown.
func Serve(ln net.Listener, tlsConfig *tls.Config, state func() State) *Server {
	s := &Server{
		srv: &http.Server{
			Handler:           Handler(state),
			TLSConfig:         tlsConfig,
			ReadHeaderTimeout: 5 * time.Second,
		},
		done: make(chan error, 1),
	}
	go func() {
		err := s.srv.ServeTLS(ln, "", "")
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	return s
}

// Shutdown stops the server and waits for it.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if serr := <-s.done; err == nil {
		err = serr
	}
	return err
}

// Client reads peers' agents.
type Client struct {
	http *http.Client
}

// NewClient returns a client presenting the replica's certificate.
func NewClient(tlsConfig *tls.Config) *Client {
	return &Client{http: &http.Client{
		Transport: &http.Transport{TLSClientConfig: tlsConfig, MaxIdleConnsPerHost: 2},
		Timeout:   3 * time.Second,
	}}
}

// Fetch reads the state of the agent at baseURL (https://host:port).
func (c *Client) Fetch(ctx context.Context, baseURL string) (State, error) {
	var st State
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+Path, nil)
	if err != nil {
		return st, fmt.Errorf("agent %s: %w", baseURL, err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return st, fmt.Errorf("agent %s: %w", baseURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("agent %s: status %s", baseURL, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("agent %s: decode: %w", baseURL, err)
	}
	return st, nil
}

// CloseIdle releases idle connections.
func (c *Client) CloseIdle() { c.http.CloseIdleConnections() }
