package worker

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// Message is one message from a worker: over NOTIFY_SOCKET, Sender is the PID the kernel
// vouches for (SCM_CREDENTIALS); over a worker's pipe, Sender is that worker.
type Message struct {
	Sender   int
	FromPipe bool
	Text     string
}

// NotifySocket receives sd_notify datagrams on an abstract unix socket. Abstract names live in
// the network namespace, which a pod's containers share, so the name is random and every
// message is checked against its sender's PID.
type NotifySocket struct {
	conn *net.UnixConn
	Addr string // "@narwhal-notify-…", the value of NOTIFY_SOCKET
}

func ListenNotify() (*NotifySocket, error) {
	var b [8]byte
	rand.Read(b[:])
	addr := fmt.Sprintf("@narwhal-notify-%d-%s", os.Getpid(), hex.EncodeToString(b[:]))
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("notify socket: %w", err)
	}
	rc, err := conn.SyscallConn()
	if err == nil {
		var opErr error
		err = rc.Control(func(fd uintptr) {
			opErr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1)
		})
		err = errors.Join(err, opErr)
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("notify socket: SO_PASSCRED: %w", err)
	}
	return &NotifySocket{conn: conn, Addr: addr}, nil
}

// Run reads datagrams until the socket is closed. A datagram without credentials has sender 0,
// which matches no worker.
//
// It returns nil once the socket is closed or done is, and the error of a read that failed
// otherwise: a socket that cannot be read is a part of narwhal that failed.
func (n *NotifySocket) Run(done <-chan struct{}, out chan<- any) error {
	buf := make([]byte, MaxNotify+1)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred))
	for {
		nb, noob, _, _, err := n.conn.ReadMsgUnix(buf, oob)
		switch {
		case errors.Is(err, net.ErrClosed):
			return nil
		case err != nil:
			return fmt.Errorf("notify socket: %w", err)
		}
		select {
		case out <- Message{Sender: credPID(oob[:noob]), Text: string(buf[:nb])}:
		case <-done:
			return nil
		}
	}
}

func credPID(oob []byte) int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0
	}
	for i := range msgs {
		if c, err := unix.ParseUnixCredentials(&msgs[i]); err == nil {
			return int(c.Pid)
		}
	}
	return 0
}

func (n *NotifySocket) Close() { n.conn.Close() }

// ReadPipe forwards each line a worker writes to its NARWHAL_NOTIFY_FD, until every holder of
// the write end has closed it (the worker and its descendants have exited). The pipe stays open
// whatever the worker writes: closing it early would kill the worker with SIGPIPE at its next
// message. A line over MaxNotify is dropped, as an over-long datagram is. Once done is closed
// nothing more is sent.
func ReadPipe(r *os.File, worker int, done <-chan struct{}, out chan<- any) {
	defer r.Close()
	send := func(line []byte) bool {
		select {
		case out <- Message{Sender: worker, FromPipe: true, Text: string(line)}:
			return true
		case <-done:
			return false
		}
	}
	// One byte more than a message, so that a full buffer without a newline means too long.
	br := bufio.NewReaderSize(r, MaxNotify+1)
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// Its first MaxNotify+1 bytes go on, for ParseNotify to refuse as too long and the
			// supervisor to report (rate-limited); the rest is skipped without being kept.
			if !send(line) {
				return
			}
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
		} else if len(line) > 0 {
			// CRLF is still accepted, as bufio.ScanLines accepted it before.
			if !send(bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))) {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
