package proc

import (
	"encoding/binary"
	"errors"

	"golang.org/x/sys/unix"
)

// The kernel's sock_diag interface for unix sockets (linux/unix_diag.h). /proc/net/unix does
// not show a listening socket's queue; sock_diag does.
const (
	sockDiagByFamily = 20   // SOCK_DIAG_BY_FAMILY
	udiagShowRQLen   = 0x10 // UDIAG_SHOW_RQLEN
	unixDiagRQLen    = 4    // UNIX_DIAG_RQLEN
	tcpListen        = 10   // TCP_LISTEN, the state unix sockets share with TCP
	noCookie         = ^uint32(0)
	unixDiagMsgLen   = 16 // struct unix_diag_msg
)

// UnixListenQueue reports the connections waiting in the accept queue of the listening unix
// socket with inode ino, and the queue's size. It is false where the kernel has no unix_diag.
func UnixListenQueue(ino uint64) (queued, backlog int, ok bool) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return 0, 0, false
	}
	defer unix.Close(fd)
	if err := unix.Sendto(fd, unixDiagRequest(uint32(ino)), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, 0, false
	}
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return 0, 0, false
	}
	q, b, err := parseUnixDiag(buf[:n], uint32(ino))
	return int(q), int(b), err == nil
}

// unixDiagRequest asks for one listening unix socket by inode, with its queue lengths.
func unixDiagRequest(ino uint32) []byte {
	b := make([]byte, unix.NLMSG_HDRLEN+24)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], sockDiagByFamily)
	ne.PutUint16(b[6:], unix.NLM_F_REQUEST)
	r := b[unix.NLMSG_HDRLEN:]
	r[0] = unix.AF_UNIX
	ne.PutUint32(r[4:], 1<<tcpListen)
	ne.PutUint32(r[8:], ino)
	ne.PutUint32(r[12:], udiagShowRQLen)
	ne.PutUint32(r[16:], noCookie) // no cookie: look the socket up by inode alone
	ne.PutUint32(r[20:], noCookie)
	return b
}

// parseUnixDiag reads the answer to unixDiagRequest: for a listening socket the kernel puts the
// connections waiting to be accepted in rqueue and the backlog in wqueue.
func parseUnixDiag(b []byte, ino uint32) (rqueue, wqueue uint32, err error) {
	ne := binary.NativeEndian
	if len(b) < unix.NLMSG_HDRLEN {
		return 0, 0, errors.New("short netlink message")
	}
	length, typ := ne.Uint32(b[0:]), ne.Uint16(b[4:])
	if length < unix.NLMSG_HDRLEN || int(length) > len(b) {
		return 0, 0, errors.New("bad netlink length")
	}
	if typ == unix.NLMSG_ERROR {
		return 0, 0, errors.New("the kernel refused the unix_diag request")
	}
	msg := b[unix.NLMSG_HDRLEN:length]
	if typ != sockDiagByFamily || len(msg) < unixDiagMsgLen || ne.Uint32(msg[4:]) != ino {
		return 0, 0, errors.New("not the socket asked for")
	}
	for attrs := msg[unixDiagMsgLen:]; len(attrs) >= 4; {
		alen, atyp := int(ne.Uint16(attrs[0:])), ne.Uint16(attrs[2:])
		if alen < 4 || alen > len(attrs) {
			break
		}
		if atyp == unixDiagRQLen && alen >= 12 {
			return ne.Uint32(attrs[4:]), ne.Uint32(attrs[8:]), nil
		}
		attrs = attrs[min(len(attrs), (alen+3)&^3):]
	}
	return 0, 0, errors.New("no queue lengths in the answer")
}
