// Package control is narwhal's control socket and its client, used by --status, --drain and
// --healthcheck from inside the container. The socket is a unix stream socket, abstract by
// default and named after narwhal's PID and mount namespaces, so a client in the same container
// finds it with no configuration, on a read-only or empty filesystem, and two containers sharing
// a network namespace (a pod), even with a PID namespace too (shareProcessNamespace), each reach
// only their own. Only narwhal's uid and root are served.
//
// The protocol is one request line ("status", "drain" or "healthcheck") and JSON lines back.
// No client can hold the server: the request must arrive within 5s and each reply line must be
// taken within 5s of being written (the drain reply's last line is written after the drain
// delay, and its 5s start then). At most MaxConns clients are served at once; one more gets
// the one line {"error":"busy: …"} at once and is closed, and its client exits 1 as when no
// narwhal answers. Refused clients (another uid) never take one of those places; each is
// counted for the metrics, and at most one per 10s is logged.
//
// Anyone in the network namespace can bind an abstract name first, so a client of the default
// name talks only to a process in its own PID and mount namespaces, the ones the name stands for.
package control

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/narwhal-init/narwhal/internal/proc"
	"github.com/narwhal-init/narwhal/internal/ratelog"
	"github.com/narwhal-init/narwhal/internal/status"
	"golang.org/x/sys/unix"
)

// DefaultName is the abstract socket named after the PID and mount namespaces that /proc/self
// shows: "@narwhal-4026532204-4026532205". Containers that share a PID namespace
// (shareProcessNamespace) and a network namespace (a pod) still each have their own mount
// namespace. Without /proc it is "@narwhal".
func DefaultName() string {
	return defaultName(proc.Host.Namespace("pid"), proc.Host.Namespace("mnt"))
}

// defaultName is the socket name for the texts of the /proc/self/ns/pid and /proc/self/ns/mnt
// links ("pid:[4026532204]"), and "@narwhal" when either is missing or malformed.
func defaultName(pidLink, mntLink string) string {
	pid, ok1 := proc.LinkInode(pidLink, "pid")
	mnt, ok2 := proc.LinkInode(mntLink, "mnt")
	if !ok1 || !ok2 {
		return bareName
	}
	return fmt.Sprintf("@narwhal-%d-%d", pid, mnt)
}

// bareName is the default without /proc: it stands for no namespaces in particular.
const bareName = "@narwhal"

// Name is NARWHAL_CONTROL_SOCKET, or the default.
func Name(configured string) string {
	if configured != "" {
		return configured
	}
	return DefaultName()
}

// Status is what --status prints.
type Status struct {
	Mode       string   `json:"mode"`
	Generation int      `json:"generation"`
	Ready      bool     `json:"ready"`
	Draining   bool     `json:"draining"`
	Desired    int      `json:"desired"`
	Workers    []Worker `json:"workers"`
	// Templates are listed with NARWHAL_PRELOAD only.
	Templates []Template `json:"templates,omitempty"`
}

// Template is one entry of Status.Templates.
type Template struct {
	status.Template
	UptimeSeconds float64 `json:"uptime_seconds"`
	MemoryBytes   int64   `json:"memory_bytes"`
}

// Worker is one entry of Status.Workers.
type Worker struct {
	status.Worker
	UptimeSeconds float64 `json:"uptime_seconds"`
	MemoryBytes   int64   `json:"memory_bytes"`
}

// StatusOf reads the board into a Status, with memory figures the loop has just read.
func StatusOf(b *status.Board) Status {
	fresh, cancel := context.WithTimeout(context.Background(), refreshTimeout)
	b.Refresh(fresh) // without an answer (no loop yet), the last figures do
	cancel()
	s := b.Snapshot()
	ready, _ := b.Ready()
	st := Status{Mode: s.Mode, Generation: s.Generation, Ready: ready, Draining: b.Draining(), Desired: s.Desired,
		Workers: []Worker{}}
	now := time.Now()
	for _, w := range s.Workers {
		st.Workers = append(st.Workers, Worker{
			Worker:        w,
			UptimeSeconds: now.Sub(w.Started).Seconds(),
			MemoryBytes:   cmp.Or(w.Proportional, w.Resident),
		})
	}
	for _, t := range s.Templates {
		st.Templates = append(st.Templates, Template{Template: t, UptimeSeconds: now.Sub(t.Started).Seconds(),
			MemoryBytes: t.Proportional})
	}
	return st
}

// refreshTimeout bounds the wait for the loop to read fresh memory figures for --status.
const refreshTimeout = 500 * time.Millisecond

// MaxConns is how many control connections are served at once.
const MaxConns = 16

const (
	// ioTimeout bounds the wait for the request and for each reply line to be taken.
	ioTimeout = 5 * time.Second
	// rejectTimeout bounds the one-line answer to a refused or surplus client, written from the
	// accept loop. A fresh connection's buffer is empty, so that write does not wait; the
	// deadline only keeps the loop from ever being held.
	rejectTimeout = 100 * time.Millisecond
)

// Server answers the control socket.
type Server struct {
	ln  *net.UnixListener
	b   *status.Board
	log *slog.Logger

	status  func() Status                                 // StatusOf(b); tests make it large
	timeout time.Duration                                 // ioTimeout; tests shorten it
	slots   chan struct{}                                 // one token per connection being served
	cred    func(*net.UnixConn) (uid, pid int, err error) // peer; tests make strangers
	now     func() time.Time                              // time.Now; tests move it

	refusals ratelog.Limiter // Serve's own
}

// Listen opens the control socket. A path left by an earlier run is replaced.
func Listen(name string, b *status.Board, log *slog.Logger) (*Server, error) {
	if !strings.HasPrefix(name, "@") {
		if fi, err := os.Lstat(name); err == nil && fi.Mode()&os.ModeSocket != 0 {
			os.Remove(name)
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: name, Net: "unix"})
	if strings.HasPrefix(name, "@") && errors.Is(err, unix.EADDRINUSE) {
		return nil, fmt.Errorf("%w %s (%s): %w", ErrNameTaken, name, holder(name), err)
	}
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", name, err)
	}
	return &Server{ln: ln, b: b, log: log, status: func() Status { return StatusOf(b) },
		timeout: ioTimeout, slots: make(chan struct{}, MaxConns), cred: peer, now: time.Now,
		refusals: ratelog.Limiter{Every: refusedLogEvery}}, nil
}

// holder says which process holds an abstract socket name, as SO_PEERCRED tells a client.
func holder(name string) string {
	c, err := net.DialTimeout("unix", name, time.Second)
	if err != nil {
		return "unknown: " + err.Error()
	}
	defer c.Close()
	switch _, pid, err := peer(c.(*net.UnixConn)); {
	case err != nil:
		return "unknown: " + err.Error()
	case pid == 0:
		return "outside this PID namespace"
	default:
		return fmt.Sprintf("pid %d", pid)
	}
}

// Serve answers clients until ctx ends, and returns once every client it took is done: a
// connection being served when ctx ends is cut at once (a drain in progress without its last
// line).
func (s *Server) Serve(ctx context.Context) error {
	var clients sync.WaitGroup
	defer clients.Wait()
	stop := context.AfterFunc(ctx, func() { s.ln.Close() })
	defer stop()
	var delay time.Duration // after a failed accept (out of file descriptors), doubling to 1s
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("control socket: %w", err)
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("control socket cannot accept; retrying", "event", "control", "error", err, "retry", delay.String())
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		delay = 0
		if uid, pid, err := s.cred(c); err != nil || (uid != 0 && uid != os.Getuid()) {
			// Anyone in the network namespace can connect: the metric counts every refusal,
			// the log only samples them.
			s.b.CountControlRefused()
			s.refusals.Warn(s.now(), s.log, "control socket client refused: not narwhal's uid or root",
				"event", "control_refused", "uid", uid, "pid", pid, "error", err)
			reject(c, "refused: not narwhal's uid or root")
			continue
		}
		select {
		case s.slots <- struct{}{}:
		default:
			s.log.Warn("control socket client turned away: too many connections", "event", "control_busy",
				"max", MaxConns)
			reject(c, fmt.Sprintf("busy: %d control connections open, try again", MaxConns))
			continue
		}
		clients.Go(func() {
			defer func() { <-s.slots }()
			s.handle(ctx, c)
		})
	}
}

// refusedLogEvery bounds the warnings about refused clients to one per period, as pool does for
// notify messages from strangers.
const refusedLogEvery = 10 * time.Second

// reject answers a client that is not served with one error line, and closes it.
func reject(c *net.UnixConn, msg string) {
	c.SetWriteDeadline(time.Now().Add(rejectTimeout))
	json.NewEncoder(c).Encode(map[string]string{"error": msg})
	c.Close()
}

func (s *Server) handle(ctx context.Context, c *net.UnixConn) {
	defer c.Close()
	wake := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) }) // a blocked read or write ends now
	defer wake()
	c.SetReadDeadline(time.Now().Add(s.timeout))
	if ctx.Err() != nil {
		return // ended before the deadline above: wake may have come first
	}
	line, err := bufio.NewReader(io.LimitReader(c, 1024)).ReadString('\n')
	if err != nil {
		return
	}
	switch strings.TrimSpace(line) {
	case "status":
		s.reply(c, s.status())
	case "healthcheck":
		ready, reason := s.b.Ready()
		s.reply(c, map[string]any{"ready": ready, "reason": reason})
	case "drain":
		// A second --drain (a preStop hook after a drain by hand) waits only what is left of
		// the first one's delay: the endpoints have been told since the first.
		now := time.Now()
		since, first := s.b.Drain(now)
		left := max(since.Add(s.b.DrainDelay).Sub(now), 0)
		if first {
			s.log.Info("draining: unready now, still serving", "event", "drain", "delay", s.b.DrainDelay.String())
		} else {
			s.log.Info("already draining", "event", "drain", "since_seconds", now.Sub(since).Seconds(), "left", left.String())
		}
		answer := map[string]any{"draining": true, "delay_seconds": left.Seconds(), "already": !first,
			"since_seconds": now.Sub(since).Seconds()}
		if s.reply(c, answer) != nil {
			return
		}
		t := time.NewTimer(left)
		defer t.Stop()
		select {
		case <-t.C:
			s.reply(c, map[string]any{"drained": true})
		case <-ctx.Done():
		}
	default:
		s.reply(c, map[string]string{"error": fmt.Sprintf("unknown request %q", strings.TrimSpace(line))})
	}
}

// reply writes one JSON line, which the client must take within the server's timeout.
func (s *Server) reply(c *net.UnixConn, v any) error {
	c.SetWriteDeadline(time.Now().Add(s.timeout))
	return json.NewEncoder(c).Encode(v)
}

// peer is the uid and pid of the client, from SO_PEERCRED.
func peer(c *net.UnixConn) (uid, pid int, err error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, 0, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := rc.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return -1, 0, err
	}
	if credErr != nil {
		return -1, 0, credErr
	}
	return int(cred.Uid), int(cred.Pid), nil
}

// Close stops accepting; it is safe to call twice.
func (s *Server) Close() { s.ln.Close() }
