// Package control is narwhal's control socket and its client, used by --status, --drain and
// --healthcheck from inside the container. The socket is a unix stream socket, abstract by
// default and named after narwhal's PID namespace, so a client in the same container finds it
// with no configuration, on a read-only or empty filesystem, and two containers sharing a
// network namespace (a pod) each reach only their own. Only narwhal's uid and root are served.
//
// The protocol is one request line ("status", "drain" or "healthcheck") and JSON lines back.
package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/narwhal-init/narwhal/internal/board"
	"golang.org/x/sys/unix"
)

// DefaultName is the abstract socket named after the PID namespace that /proc/self shows:
// "@narwhal-4026532204". Without /proc it is "@narwhal".
func DefaultName() string {
	link, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return "@narwhal"
	}
	ino := strings.TrimSuffix(strings.TrimPrefix(link, "pid:["), "]")
	return "@narwhal-" + ino
}

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
}

// Worker is one entry of Status.Workers.
type Worker struct {
	board.Worker
	UptimeSeconds float64 `json:"uptime_seconds"`
	MemoryBytes   int64   `json:"memory_bytes"`
}

// StatusOf reads the board into a Status; memory is as of the supervisor's last scan.
func StatusOf(b *board.Board) Status {
	s := b.Snapshot()
	ready, _ := b.Ready()
	st := Status{Mode: s.Mode, Generation: s.Generation, Ready: ready, Draining: b.Draining(), Desired: s.Desired,
		Workers: []Worker{}}
	now := time.Now()
	for _, w := range s.Workers {
		st.Workers = append(st.Workers, Worker{
			Worker:        w,
			UptimeSeconds: now.Sub(w.Started).Seconds(),
			MemoryBytes:   w.Memory,
		})
	}
	return st
}

// Server answers the control socket.
type Server struct {
	ln  *net.UnixListener
	b   *board.Board
	log *slog.Logger
}

// Listen opens the control socket. A path left by an earlier run is replaced.
func Listen(name string, b *board.Board, log *slog.Logger) (*Server, error) {
	if !strings.HasPrefix(name, "@") {
		if fi, err := os.Lstat(name); err == nil && fi.Mode()&os.ModeSocket != 0 {
			os.Remove(name)
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: name, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", name, err)
	}
	return &Server{ln: ln, b: b, log: log}, nil
}

// Serve answers clients until ctx ends.
func (s *Server) Serve(ctx context.Context) {
	go func() {
		<-ctx.Done()
		s.ln.Close()
	}()
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		go s.handle(ctx, c)
	}
}

func (s *Server) handle(ctx context.Context, c *net.UnixConn) {
	defer c.Close()
	if uid, pid, err := peer(c); err != nil || (uid != 0 && uid != os.Getuid()) {
		s.log.Warn("control socket client refused: not narwhal's uid or root", "event", "control_refused",
			"uid", uid, "pid", pid, "error", err)
		json.NewEncoder(c).Encode(map[string]string{"error": "refused: not narwhal's uid or root"})
		return
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(io.LimitReader(c, 1024)).ReadString('\n')
	if err != nil {
		return
	}
	c.SetReadDeadline(time.Time{})
	enc := json.NewEncoder(c)
	switch strings.TrimSpace(line) {
	case "status":
		enc.Encode(StatusOf(s.b))
	case "healthcheck":
		ready, reason := s.b.Ready()
		enc.Encode(map[string]any{"ready": ready, "reason": reason})
	case "drain":
		if !s.b.Draining() {
			s.log.Info("draining: unready now, still serving", "event", "drain", "delay", s.b.DrainDelay.String())
		}
		s.b.Drain()
		enc.Encode(map[string]any{"draining": true, "delay_seconds": s.b.DrainDelay.Seconds()})
		select {
		case <-time.After(s.b.DrainDelay):
			enc.Encode(map[string]any{"drained": true})
		case <-ctx.Done():
		}
	default:
		enc.Encode(map[string]string{"error": fmt.Sprintf("unknown request %q", strings.TrimSpace(line))})
	}
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
