package proc

import (
	"encoding/binary"
	"net"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestUnixListenQueue: connections waiting on a real listening unix socket are counted.
func TestUnixListenQueue(t *testing.T) {
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "app.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var ino uint64
	rc, _ := ln.(syscall.Conn).SyscallConn()
	rc.Control(func(fd uintptr) {
		var st unix.Stat_t
		if unix.Fstat(int(fd), &st) == nil {
			ino = st.Ino
		}
	})
	if _, _, ok := UnixListenQueue(ino); !ok {
		t.Skip("this kernel has no unix_diag")
	}
	for i := range 3 {
		c, err := net.Dial("unix", ln.Addr().String())
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		defer c.Close()
	}
	queued, backlog, ok := UnixListenQueue(ino)
	if !ok || queued != 3 || backlog <= 0 {
		t.Errorf("UnixListenQueue = %d queued, backlog %d, %v; want 3 queued", queued, backlog, ok)
	}
	if _, _, ok := UnixListenQueue(ino + 1000003); ok {
		t.Error("a socket that does not exist has a queue")
	}
}

func TestParseUnixDiag(t *testing.T) {
	ne := binary.NativeEndian
	msg := make([]byte, unix.NLMSG_HDRLEN+16+12)
	ne.PutUint32(msg[0:], uint32(len(msg)))
	ne.PutUint16(msg[4:], sockDiagByFamily)
	ne.PutUint32(msg[unix.NLMSG_HDRLEN+4:], 77) // inode
	attr := msg[unix.NLMSG_HDRLEN+16:]
	ne.PutUint16(attr[0:], 12)
	ne.PutUint16(attr[2:], unixDiagRQLen)
	ne.PutUint32(attr[4:], 5)
	ne.PutUint32(attr[8:], 128)
	if q, b, err := parseUnixDiag(msg, 77); err != nil || q != 5 || b != 128 {
		t.Errorf("parseUnixDiag = %d, %d, %v; want 5, 128", q, b, err)
	}
	if _, _, err := parseUnixDiag(msg, 78); err == nil {
		t.Error("the answer for another inode was taken")
	}
	ne.PutUint16(msg[4:], unix.NLMSG_ERROR)
	if _, _, err := parseUnixDiag(msg, 77); err == nil {
		t.Error("a netlink error was taken for an answer")
	}
}

func FuzzParseUnixDiag(f *testing.F) {
	f.Add(unixDiagRequest(1), uint32(1))
	f.Add([]byte{}, uint32(0))
	f.Fuzz(func(t *testing.T, b []byte, ino uint32) {
		parseUnixDiag(b, ino) // must not panic on anything the kernel or a fuzzer sends
	})
}
