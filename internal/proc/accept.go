package proc

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Accept detection: a process waits for connections on a socket once /proc shows, without any
// change to the app, that
//   - the socket is in one of its epoll sets (fdinfo of an eventpoll fd lists "tfd: N … ino: X");
//   - a thread is blocked in accept/accept4 on it, or in poll/ppoll or select/pselect6 with it
//     among the fds (task/TID/syscall gives the call and its arguments; the fd array is read
//     from /proc/PID/mem).

// Waiting reports whether process pid waits to accept on a socket whose inode is in want.
// With owning, holding such a socket is enough (a worker's own SO_REUSEPORT socket); otherwise
// it must wait on it, since every worker holds the inherited listeners.
func (fs FS) Waiting(pid int, want map[uint64]bool, owning bool) bool {
	if len(want) == 0 {
		return false
	}
	entries, err := os.ReadDir(fs.pidPath(pid, "fd"))
	if err != nil {
		return false
	}
	socketOf := map[int]uint64{} // fd -> socket inode
	var epolls []int
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		link, err := os.Readlink(fs.pidPath(pid, "fd", e.Name()))
		if err != nil {
			continue
		}
		if ino, ok := socketInode(link); ok {
			if owning && want[ino] {
				return true
			}
			socketOf[fd] = ino
		} else if link == "anon_inode:[eventpoll]" {
			epolls = append(epolls, fd)
		}
	}
	for _, fd := range epolls {
		b, err := os.ReadFile(fs.pidPath(pid, "fdinfo", strconv.Itoa(fd)))
		if err != nil {
			continue
		}
		for _, t := range parseEpollTargets(string(b)) {
			if want[t.ino] || want[socketOf[t.fd]] {
				return true
			}
		}
	}
	tasks, _ := os.ReadDir(fs.pidPath(pid, "task"))
	for _, task := range tasks {
		b, err := os.ReadFile(fs.pidPath(pid, "task", task.Name(), "syscall"))
		if err != nil {
			continue
		}
		sc, ok := parseSyscall(string(b))
		if !ok {
			continue
		}
		for _, fd := range fs.waitedFDs(pid, sc) {
			if want[socketOf[fd]] {
				return true
			}
		}
	}
	return false
}

// waitedFDs are the fds a thread blocked in syscall sc waits on for reading.
func (fs FS) waitedFDs(pid int, sc syscallState) []int {
	switch {
	case acceptCalls[sc.nr]:
		return []int{int(sc.args[0])}
	case pollCalls[sc.nr]:
		n := min(sc.args[1], 4096)
		b, err := fs.readMem(pid, sc.args[0], int(n)*8) // struct pollfd { int fd; short events, revents; }
		if err != nil {
			return nil
		}
		var fds []int
		for i := 0; i+8 <= len(b); i += 8 {
			fds = append(fds, int(int32(binary.LittleEndian.Uint32(b[i:]))))
		}
		return fds
	case selectCalls[sc.nr]:
		nfds := min(sc.args[0], 4096)
		b, err := fs.readMem(pid, sc.args[1], int((nfds+63)/64*8)) // readfds bitmap
		if err != nil {
			return nil
		}
		return fdSetMembers(b, int(nfds))
	}
	return nil
}

func (fs FS) readMem(pid int, addr uint64, n int) ([]byte, error) {
	if addr == 0 || n <= 0 {
		return nil, fmt.Errorf("nothing to read")
	}
	f, err := os.Open(fs.pidPath(pid, "mem"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, n)
	_, err = f.ReadAt(b, int64(addr))
	return b, err
}

// fdSetMembers lists the fds below nfds set in an fd_set bitmap (little-endian longs).
func fdSetMembers(b []byte, nfds int) []int {
	var fds []int
	for fd := 0; fd < nfds && fd/8 < len(b); fd++ {
		if b[fd/8]&(1<<(fd%8)) != 0 {
			fds = append(fds, fd)
		}
	}
	return fds
}

// socketInode reads "socket:[12345]", the target of a /proc/PID/fd link.
func socketInode(link string) (uint64, bool) { return LinkInode(link, "socket") }

// LinkInode is the inode in the target of a /proc link to an anonymous object,
// "KIND:[INODE]": a socket of /proc/PID/fd, a namespace of /proc/PID/ns.
func LinkInode(link, kind string) (uint64, bool) {
	digits, ok := strings.CutPrefix(link, kind+":[")
	if !ok {
		return 0, false
	}
	if digits, ok = strings.CutSuffix(digits, "]"); !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	return n, err == nil
}

type epollTarget struct {
	fd  int
	ino uint64 // 0 on kernels that do not print it
}

// parseEpollTargets reads the fdinfo of an eventpoll fd:
// "tfd:        5 events:       19 data:                5  pos:0 ino:3b0e4 sdev:8".
func parseEpollTargets(s string) []epollTarget {
	var out []epollTarget
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] != "tfd:" {
			continue
		}
		fd, err := strconv.Atoi(f[1])
		if err != nil {
			continue
		}
		t := epollTarget{fd: fd}
		for _, kv := range f[2:] {
			if v, ok := strings.CutPrefix(kv, "ino:"); ok {
				t.ino, _ = strconv.ParseUint(v, 16, 64)
			}
		}
		out = append(out, t)
	}
	return out
}

type syscallState struct {
	nr   int
	args [6]uint64
}

// parseSyscall reads /proc/PID/task/TID/syscall: "NR ARG1 … ARG6 SP PC" while blocked in a
// system call, "-1 SP PC" or "running" otherwise.
func parseSyscall(s string) (syscallState, bool) {
	f := strings.Fields(s)
	if len(f) < 7 {
		return syscallState{}, false
	}
	nr, err := strconv.Atoi(f[0])
	if err != nil || nr < 0 {
		return syscallState{}, false
	}
	st := syscallState{nr: nr}
	for i := range st.args {
		v, err := strconv.ParseUint(strings.TrimPrefix(f[i+1], "0x"), 16, 64)
		if err != nil {
			return syscallState{}, false
		}
		st.args[i] = v
	}
	return st, true
}

// listeningInodes reads /proc/net/tcp or tcp6 and returns the inodes of sockets listening
// (state 0A) on port, or on any port when port is 0.
func listeningInodes(s string, port int) map[uint64]bool {
	out := map[uint64]bool{}
	for _, l := range parseTCPListening(s) {
		if (port == 0 || l.port == port) && l.inode != 0 {
			out[l.inode] = true
		}
	}
	return out
}

// tcpListening is a socket of /proc/net/tcp or tcp6 in the LISTEN state.
type tcpListening struct {
	port   int
	queued int // rx_queue: for a listening socket, the connections waiting to be accepted
	inode  uint64
}

// parseTCPListening reads the LISTEN (0A) lines of /proc/net/tcp or tcp6 text:
// "sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode".
func parseTCPListening(s string) []tcpListening {
	var out []tcpListening
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 10 || f[3] != "0A" {
			continue
		}
		_, hexPort, ok1 := strings.Cut(f[1], ":")
		_, rx, ok2 := strings.Cut(f[4], ":")
		port, err1 := strconv.ParseUint(hexPort, 16, 16)
		queued, err2 := strconv.ParseUint(rx, 16, 32)
		if !ok1 || !ok2 || err1 != nil || err2 != nil {
			continue
		}
		inode, _ := strconv.ParseUint(f[9], 10, 64)
		out = append(out, tcpListening{port: int(port), queued: int(queued), inode: inode})
	}
	return out
}

// Accepting reports whether pid, or one of its descendants in snap, waits to accept on a socket
// in want (see Waiting): an app started through "sh -c" or "npm start" accepts in a child.
func (fs FS) Accepting(snap *Snapshot, pid int, want map[uint64]bool, owning bool) bool {
	for _, p := range snap.Tree(pid) {
		if fs.Waiting(p, want, owning) {
			return true
		}
	}
	return false
}

// ListeningInodes are the inodes of the TCP sockets listening on port (any port when 0), from
// /proc/net/tcp and tcp6: in reuseport mode, the workers' own sockets.
func (fs FS) ListeningInodes(port int) map[uint64]bool {
	out := map[uint64]bool{}
	for _, name := range []string{"tcp", "tcp6"} {
		text, err := fs.read("/proc/net", name)
		if err != nil {
			continue
		}
		for ino := range listeningInodes(text, port) {
			out[ino] = true
		}
	}
	return out
}

// ListenQueue sums the accept queues of the TCP sockets listening on port, and counts them.
func (fs FS) ListenQueue(port int) (queued, sockets int) {
	for _, name := range []string{"tcp", "tcp6"} {
		if text, err := fs.read("/proc/net", name); err == nil {
			q, n := listenQueue(text, port)
			queued += q
			sockets += n
		}
	}
	return queued, sockets
}

// TCPMigrateReq reports net.ipv4.tcp_migrate_req, which decides whether connections queued on a
// closing SO_REUSEPORT socket move to another socket (1) or are reset (0).
func (fs FS) TCPMigrateReq() (bool, error) {
	text, err := fs.read("/proc/sys/net/ipv4/tcp_migrate_req")
	if err != nil {
		return false, err
	}
	return strings.TrimSpace(text) == "1", nil
}

// listenQueue sums the accept queues (rx_queue, which for a LISTEN socket is the number of
// connections waiting) of the sockets in /proc/net/tcp or tcp6 text listening on port.
func listenQueue(s string, port int) (queued int, sockets int) {
	for _, l := range parseTCPListening(s) {
		if l.port == port {
			queued += l.queued
			sockets++
		}
	}
	return queued, sockets
}
