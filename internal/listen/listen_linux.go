// Package listen owns the listening sockets narwhal binds once and keeps for its whole life:
// one per listener (inherit), or one SO_REUSEPORT group per TCP listener with a socket per slot
// and a BPF program steering new connections to the slots with a ready worker (balanced).
// Nothing here closes a socket before narwhal exits, so nothing queued on one is lost.
package listen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"

	"github.com/narwhal-init/narwhal/config"
	"github.com/narwhal-init/narwhal/internal/proc"
	"golang.org/x/sys/unix"
)

// Socket is a listener narwhal bound and keeps open for its whole life, so connections wait in
// its backlog while no worker accepts, and none is lost when a worker stops.
type Socket struct {
	config.Listener
	ln    net.Listener
	fd    int    // a close-on-exec duplicate that spawn hands to workers
	Inode uint64 // how /proc names it: socket:[Inode]

	closeOnce sync.Once
}

// Bind opens every listener with the given backlog. On error, those already open are closed.
func Bind(ls config.Listeners, backlog int) ([]*Socket, error) {
	var out []*Socket
	for _, l := range ls {
		s, err := bind(l, backlog, false)
		if err != nil {
			CloseAll(out)
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// bind opens one listener; with reuseport, as a member of the address's SO_REUSEPORT group.
func bind(l config.Listener, backlog int, reuseport bool) (*Socket, error) {
	if l.Network == "unix" && !strings.HasPrefix(l.Address, "@") {
		removeStaleSocket(l.Address)
	}
	// Plain TCP: Go listens with MPTCP by default where the kernel has it, and a worker that
	// reads the socket's protocol then sees 262, not TCP. asyncio, for one, leaves Nagle's
	// algorithm on for such connections (uvicorn --fd 3 answered keep-alive requests 40 ms late).
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	if reuseport {
		lc.Control = func(_, _ string, c syscall.RawConn) error {
			var opErr error
			err := c.Control(func(fd uintptr) { opErr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) })
			return errors.Join(err, opErr)
		}
	}
	ln, err := lc.Listen(context.Background(), l.Network, l.Address)
	if err != nil {
		return nil, fmt.Errorf("listener %s: %w", l.Name, err)
	}
	s := &Socket{Listener: l, ln: ln, fd: -1}
	rc, err := ln.(syscall.Conn).SyscallConn()
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("listener %s: %w", l.Name, err)
	}
	var opErr error
	err = rc.Control(func(fd uintptr) {
		// Go listens with the system's somaxconn; listen(2) again sets our backlog.
		if opErr = unix.Listen(int(fd), backlog); opErr != nil {
			return
		}
		var st unix.Stat_t
		if opErr = unix.Fstat(int(fd), &st); opErr != nil {
			return
		}
		s.Inode = st.Ino
		if s.fd, opErr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0); opErr != nil {
			return
		}
		// Workers get the socket blocking, as systemd passes it: O_NONBLOCK belongs to the
		// open file description that every duplicate shares, and Go set it. narwhal never
		// accepts on it; a worker that wants non-blocking sets it itself, as Go and libuv do.
		opErr = unix.SetNonblock(s.fd, false)
	})
	if err = errors.Join(err, opErr); err != nil {
		ln.Close()
		return nil, fmt.Errorf("listener %s (%s): %w", l.Name, l.Address, err)
	}
	if l.Network != "unix" && l.Port() == 0 {
		s.Address = ln.Addr().String()
	}
	return s, nil
}

// removeStaleSocket deletes a socket file left by an earlier run; it leaves any other file.
func removeStaleSocket(path string) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		os.Remove(path)
	}
}

// Close closes the listener; it is safe to call twice, and while the metrics read Queue.
// FD is the close-on-exec duplicate that a worker gets as one of its listeners.
func (s *Socket) FD() int { return s.fd }

func (s *Socket) Close() {
	s.closeOnce.Do(func() {
		unix.Close(s.fd)
		s.ln.Close()
	})
}

// CloseAll closes every socket.
func CloseAll(ss []*Socket) {
	for _, s := range ss {
		s.Close()
	}
}

// Queue reports the connections waiting in the socket's accept queue and the queue's size:
// for TCP from TCP_INFO (for a listening socket the kernel puts them in tcpi_unacked and
// tcpi_sacked), for a unix socket from sock_diag.
func (s *Socket) Queue() (queued, backlog int, ok bool) {
	if s.Network == "unix" {
		return proc.UnixListenQueue(s.Inode)
	}
	rc, err := s.ln.(syscall.Conn).SyscallConn()
	if err != nil {
		return 0, 0, false
	}
	var info *unix.TCPInfo
	rc.Control(func(fd uintptr) {
		info, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	})
	if err != nil || info == nil {
		return 0, 0, false
	}
	return int(info.Unacked), int(info.Sacked), true
}
