package proc

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// epollFdinfo is /proc/PID/fdinfo/4 of dockerd's eventpoll fd on Linux 6.18: the header, then
// one "tfd:" line per watched fd, its inode in hex.
const epollFdinfo = `pos:	0
flags:	02000002
mnt_id:	17
ino:	26
tfd:        5 events:       19 data:     55901e63db60  pos:0 ino:d97 sdev:f
tfd:       13 events: 8000201d data:     7f9563e657f8  pos:0 ino:11b1 sdev:9
tfd:        9 events: 8000201d data:     7f9563e65ac8  pos:0 ino:1179 sdev:9
tfd:        3 events: 8000201d data:     7f9563e65d98  pos:0 ino:d9a sdev:9
`

func TestParseEpollTargets(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want []epollTarget
	}{
		{"real fdinfo", epollFdinfo, []epollTarget{
			{fd: 5, ino: 0xd97}, {fd: 13, ino: 0x11b1}, {fd: 9, ino: 0x1179}, {fd: 3, ino: 0xd9a},
		}},
		{"header only", "pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t26\n", nil},
		// Kernels before 3.18 print no ino: the target is known by its fd number alone.
		{"no ino fields", "pos:\t0\nflags:\t02\ntfd:        7 events:       19 data:                7\n" +
			"tfd:       12 events:       19 data:                c\n",
			[]epollTarget{{fd: 7}, {fd: 12}}},
		{"mixed", "pos:\t0\ntfd:        7 events:       19 data:                7\n" +
			"tfd:        8 events:       19 data:                8  pos:0 ino:1b38c3 sdev:8\n",
			[]epollTarget{{fd: 7}, {fd: 8, ino: 0x1b38c3}}},
		{"header ino is not a target", "ino:\t1418820\n", nil},
		{"tfd not a number", "tfd:        x events:       19 data:                7  pos:0 ino:d97 sdev:f\n", nil},
		{"tfd without number", "tfd:\n", nil},
		{"bad ino leaves 0", "tfd:        4 events:       19 data:     0  pos:0 ino:zz sdev:f\n", []epollTarget{{fd: 4}}},
		{"empty", "", nil},
	}
	for _, tc := range tests {
		if got := parseEpollTargets(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("%s: parseEpollTargets(%q) = %+v, want %+v", tc.name, tc.in, got, tc.want)
		}
	}
}

func TestParseSyscall(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want syscallState
		ok   bool
	}{
		// A python3 thread blocked in accept4(3, addr, addrlen, SOCK_CLOEXEC), from this machine.
		{"blocked accept4", "288 0x3 0x7fff14ef2a30 0x7fff14ef2a24 0x80000 0x0 0x0 0x7fff14ef29f8 0x7f1c94528f63\n",
			syscallState{nr: 288, args: [6]uint64{3, 0x7fff14ef2a30, 0x7fff14ef2a24, 0x80000, 0, 0}}, true},
		{"blocked pselect6", "270 0xfb 0x7ffdafe67340 0x0 0x0 0x7ffdafe67250 0x7ffdafe67260 0x7ffdafe67220 0x7fa787dbaaec\n",
			syscallState{nr: 270, args: [6]uint64{0xfb, 0x7ffdafe67340, 0, 0, 0x7ffdafe67250, 0x7ffdafe67260}}, true},
		{"large argument", "7 0xffffffffffffffff 0x1 0x2 0x3 0x4 0x5 0x6 0x7\n",
			syscallState{nr: 7, args: [6]uint64{1<<64 - 1, 1, 2, 3, 4, 5}}, true},
		{"no sp and pc still has 6 args", "43 0x3 0x0 0x0 0x0 0x0 0x0",
			syscallState{nr: 43, args: [6]uint64{3}}, true},
		{"running", "running\n", syscallState{}, false},
		{"in user space", "-1 0x7ffc 0x4a5b\n", syscallState{}, false},
		{"negative nr with args", "-1 0x3 0x0 0x0 0x0 0x0 0x0 0x7ffc 0x4a5b\n", syscallState{}, false},
		{"too few args", "288 0x3 0x7fff14ef2a30\n", syscallState{}, false},
		{"nr not a number", "accept4 0x3 0x0 0x0 0x0 0x0 0x0 0x1 0x2\n", syscallState{}, false},
		{"arg not hex", "288 0x3 0xzz 0x0 0x0 0x0 0x0 0x1 0x2\n", syscallState{}, false},
		{"arg too large", "288 0x10000000000000000 0x0 0x0 0x0 0x0 0x0 0x1 0x2\n", syscallState{}, false},
		{"empty", "", syscallState{}, false},
	}
	for _, tc := range tests {
		got, ok := parseSyscall(tc.in)
		if ok != tc.ok || got != tc.want {
			t.Errorf("%s: parseSyscall(%q) = %+v, %v, want %+v, %v", tc.name, tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestSocketInode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		link string
		want uint64
		ok   bool
	}{
		{"socket:[12345]", 12345, true},
		{"socket:[1418820]", 1418820, true},
		{"socket:[18446744073709551615]", 1<<64 - 1, true},
		{"socket:[0]", 0, true},
		{"pipe:[1]", 0, false},
		{"anon_inode:[eventpoll]", 0, false},
		{"socket:[x]", 0, false},
		{"socket:[]", 0, false},
		{"socket:[12345", 0, false},
		{"socket:12345]", 0, false},
		{"socket:[-1]", 0, false},
		{"socket:[0x10]", 0, false},
		{"socket:[12345] (deleted)", 0, false},
		{"/tmp/socket:[12345]", 0, false},
		{"net:[4026531833]", 0, false},
		{"", 0, false},
	}
	for _, tc := range tests {
		got, ok := socketInode(tc.link)
		if got != tc.want || ok != tc.ok {
			t.Errorf("socketInode(%q) = %d, %v, want %d, %v", tc.link, got, ok, tc.want, tc.ok)
		}
	}
}

func TestFdSetMembers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		b    []byte
		nfds int
		want []int
	}{
		{"fd 3", []byte{0x08, 0, 0, 0, 0, 0, 0, 0}, 4, []int{3}},
		{"fd 0 and 7", []byte{0x81, 0, 0, 0, 0, 0, 0, 0}, 8, []int{0, 7}},
		{"fd 8 is the next byte", []byte{0, 0x01, 0, 0, 0, 0, 0, 0}, 9, []int{8}},
		{"fd 64 is the second long", []byte{0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0, 0, 0, 0, 0, 0, 0}, 65, []int{64}},
		{"fd 63 is the top bit of the first long", []byte{0, 0, 0, 0, 0, 0, 0, 0x80}, 64, []int{63}},
		{"bits at or above nfds are not members", []byte{0xff, 0, 0, 0, 0, 0, 0, 0}, 3, []int{0, 1, 2}},
		{"nfds beyond the bytes", []byte{0x00, 0x80}, 4096, []int{15}},
		{"nfds 0", []byte{0xff}, 0, nil},
		{"no bytes", nil, 64, nil},
		{"empty set", make([]byte, 8), 64, nil},
	}
	for _, tc := range tests {
		if got := fdSetMembers(tc.b, tc.nfds); !slices.Equal(got, tc.want) {
			t.Errorf("%s: fdSetMembers(%x, %d) = %v, want %v", tc.name, tc.b, tc.nfds, got, tc.want)
		}
	}
}

// procNetTCP is /proc/net/tcp on this machine with a python3 listening on 127.0.0.1:46005
// (B3B5) and connected to itself: two listeners (0A) and both ends of one connection (01).
const procNetTCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode                                                     
   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 64 1 00000000bb6c167a 100 0 0 10 0                        
   1: 0100007F:B3B5 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1418820 1 00000000dbcc30fa 100 0 0 10 0                   
   2: 0100007F:B3B5 0100007F:88C6 01 00000000:00000000 00:00000000 00000000     0        0 1418823 1 000000003eda0934 20 0 0 10 -1                   
   3: 0100007F:88C6 0100007F:B3B5 01 00000000:00000000 00:00000000 00000000     0        0 1418821 2 00000000c21f4048 20 0 0 10 -1                   
`

// procNetTCP6 is /proc/net/tcp6 at the same moment: one listener on [::1]:56803 (DDE3), plus a
// socket in TIME_WAIT (06), whose inode the kernel prints as 0.
const procNetTCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:DDE3 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1418822 1 00000000107655f1 100 0 0 10 0
   1: 00000000000000000000000001000000:DDE3 00000000000000000000000001000000:9C40 06 00000000:00000000 03:00001234 00000000     0        0 0 3 0000000000000000
`

func TestListeningInodes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		port int
		want []uint64
	}{
		{"tcp any port", procNetTCP, 0, []uint64{64, 1418820}},
		{"tcp port 46005 skips the established end", procNetTCP, 46005, []uint64{1418820}},
		{"tcp port 2024", procNetTCP, 2024, []uint64{64}},
		{"tcp port with no listener", procNetTCP, 34982, nil}, // 0x88C6: only an established socket
		{"tcp6 any port", procNetTCP6, 0, []uint64{1418822}},
		{"tcp6 port 56803", procNetTCP6, 56803, []uint64{1418822}},
		{"tcp6 other port", procNetTCP6, 56804, nil},
		{"header only", strings.SplitAfter(procNetTCP, "\n")[0], 0, nil},
		{"close-wait and syn-sent are not listening", `   4: 0100007F:B3B5 0100007F:88C8 08 00000000:00000000 00:00000000 00000000  1000        0 1418901 1 0000000000000000 20 4 30 10 -1
   5: 0100007F:B3B6 0100007F:1F90 02 00000001:00000000 01:00000100 00000001  1000        0 1418902 2 0000000000000000 100 0 0 10 -1
`, 0, nil},
		{"listener with inode 0", "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000000000000 100 0 0 10 0\n", 0, nil},
		{"port not hex", "   0: 0100007F:ZZZZ 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 99 1 0000000000000000 100 0 0 10 0\n", 0, nil},
		{"address without port", "   0: 0100007F 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 99 1 0000000000000000 100 0 0 10 0\n", 0, nil},
		{"truncated line", "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000\n", 0, nil},
		{"empty", "", 0, nil},
	}
	for _, tc := range tests {
		got := slices.Sorted(maps.Keys(listeningInodes(tc.in, tc.port)))
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: listeningInodes(port %d) = %v, want %v", tc.name, tc.port, got, tc.want)
		}
	}
}

func TestPortListenersReadsTCPAndTCP6(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "proc/net/tcp"), procNetTCP)
	writeFile(t, filepath.Join(root, "proc/net/tcp6"), procNetTCP6)
	tests := []struct {
		port int
		want []uint64
	}{
		{0, []uint64{64, 1418820, 1418822}},
		{46005, []uint64{1418820}},
		{56803, []uint64{1418822}},
		{1, nil},
	}
	for _, tc := range tests {
		got := slices.Sorted(maps.Keys(New(root).ListeningInodes(tc.port)))
		if !slices.Equal(got, tc.want) {
			t.Errorf("ListeningInodes(port %d) = %v, want %v", tc.port, got, tc.want)
		}
	}
	if got := New(t.TempDir()).ListeningInodes(0); len(got) != 0 {
		t.Errorf("ListeningInodes without net/tcp files = %v, want none", got)
	}
}

// TestPortListenersFindsRealListener: a listener of this process shows in the real /proc/net/tcp
// with the inode of its fd's link.
func TestPortListenersFindsRealListener(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/proc/net/tcp"); err != nil {
		t.Skipf("no /proc/net/tcp: %v", err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ino := listenerInode(t, ln.(*net.TCPListener))
	port := ln.Addr().(*net.TCPAddr).Port
	if got := Host.ListeningInodes(port); !got[ino] || len(got) != 1 {
		t.Errorf("ListeningInodes(/proc, %d) = %v, want only inode %d", port, got, ino)
	}
	if got := Host.ListeningInodes(0); !got[ino] {
		t.Errorf("ListeningInodes(/proc, any port) = %v, want it to hold inode %d", got, ino)
	}
}

// listenerInode reads the socket inode of ln from /proc/self/fd.
func listenerInode(t *testing.T, ln syscall.Conn) uint64 {
	t.Helper()
	rc, err := ln.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var link string
	var linkErr error
	if err := rc.Control(func(fd uintptr) {
		link, linkErr = os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	}); err != nil {
		t.Fatal(err)
	}
	if linkErr != nil {
		t.Fatal(linkErr)
	}
	ino, ok := socketInode(link)
	if !ok {
		t.Fatalf("listener fd links to %q, not a socket", link)
	}
	return ino
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// fakeProc is one process of a fixture /proc tree.
type fakeProc struct {
	pid, ppid int
	fds       map[int]string // fd -> link target
	fdinfo    map[int]string // fd -> fdinfo text
	syscalls  map[int]string // tid -> task/TID/syscall text
}

// buildProc writes a fixture root whose /proc holds procs.
func buildProc(t *testing.T, procs ...fakeProc) FS {
	t.Helper()
	root := t.TempDir()
	for _, p := range procs {
		base := filepath.Join(root, "proc", strconv.Itoa(p.pid))
		writeFile(t, filepath.Join(base, "stat"), statLine(p.pid, "node app.js", p.ppid, p.pid, 0, 0, 0))
		if err := os.MkdirAll(filepath.Join(base, "fd"), 0o755); err != nil {
			t.Fatal(err)
		}
		for fd, target := range p.fds {
			// A link to a target that does not exist still reads back with Readlink.
			if err := os.Symlink(target, filepath.Join(base, "fd", strconv.Itoa(fd))); err != nil {
				t.Fatal(err)
			}
		}
		for fd, text := range p.fdinfo {
			writeFile(t, filepath.Join(base, "fdinfo", strconv.Itoa(fd)), text)
		}
		syscalls := p.syscalls
		if syscalls == nil {
			syscalls = map[int]string{p.pid: "running\n"}
		}
		for tid, text := range syscalls {
			writeFile(t, filepath.Join(base, "task", strconv.Itoa(tid), "syscall"), text)
		}
	}
	return New(root)
}

// accepting is what the supervisor asks of a starting worker, on a fresh snapshot.
func accepting(fs FS, pid int, want map[uint64]bool, owning bool) bool {
	return fs.Accepting(fs.Snapshot(), pid, want, owning)
}

// blockedIn is the task/TID/syscall text of a thread blocked in syscall nr with first argument a0.
func blockedIn(nr int, a0 uint64) string {
	return fmt.Sprintf("%d 0x%x 0x7fff14ef2a30 0x7fff14ef2a24 0x80000 0x0 0x0 0x7fff14ef29f8 0x7f1c94528f63\n", nr, a0)
}

func TestAccepting(t *testing.T) {
	t.Parallel()
	const (
		wanted = 111
		pid    = 100
	)
	epollFD := func(lines ...string) map[int]string {
		return map[int]string{9: "pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t26\n" + strings.Join(lines, "")}
	}
	// 6f is 111 in hex, de is 222.
	holding := map[int]string{0: "/dev/null", 1: "pipe:[1419650]", 3: "socket:[111]", 9: "anon_inode:[eventpoll]"}
	tests := []struct {
		name   string
		owning bool
		procs  []fakeProc
		want   bool
	}{
		{"in an epoll set, by ino", false, []fakeProc{{
			pid: pid, ppid: 1,
			// tfd 5 is no fd of the process now: the match comes from the ino alone.
			fds:    holding,
			fdinfo: epollFD("tfd:        5 events:       19 data:     55901e63db60  pos:0 ino:6f sdev:9\n"),
		}}, true},
		{"in an epoll set, by tfd when ino is absent", false, []fakeProc{{
			pid: pid, ppid: 1,
			fds:    holding,
			fdinfo: epollFD("tfd:        1 events:       19 data:                1\n", "tfd:        3 events:       19 data:                3\n"),
		}}, true},
		{"epoll set watching only other fds", false, []fakeProc{{
			pid: pid, ppid: 1,
			fds:    holding,
			fdinfo: epollFD("tfd:        1 events:       19 data:     1  pos:0 ino:15a8b2 sdev:e\n"),
		}}, false},
		{"blocked in accept4 on the socket", false, []fakeProc{{
			pid: pid, ppid: 1,
			fds:      holding,
			syscalls: map[int]string{pid: blockedIn(unix.SYS_ACCEPT4, 3)},
		}}, true},
		{"blocked in accept on the socket", false, []fakeProc{{
			pid: pid, ppid: 1,
			fds:      holding,
			syscalls: map[int]string{pid: blockedIn(unix.SYS_ACCEPT, 3)},
		}}, true},
		{"a second thread blocked in accept4", false, []fakeProc{{
			pid: pid, ppid: 1,
			fds:      holding,
			syscalls: map[int]string{pid: "-1 0x7ffc 0x4a5b\n", pid + 1: "running\n", pid + 2: blockedIn(unix.SYS_ACCEPT4, 3)},
		}}, true},
		{"blocked in accept4 on another fd", false, []fakeProc{{
			pid: pid, ppid: 1,
			fds:      holding,
			syscalls: map[int]string{pid: blockedIn(unix.SYS_ACCEPT4, 1)},
		}}, false},
		{"blocked reading the socket", false, []fakeProc{{
			pid: pid, ppid: 1,
			fds:      holding,
			syscalls: map[int]string{pid: blockedIn(unix.SYS_READ, 3)},
		}}, false},
		{"child blocked in accept4", false, []fakeProc{
			{pid: pid, ppid: 1, fds: map[int]string{0: "/dev/null"}},
			{pid: 101, ppid: pid, fds: holding, syscalls: map[int]string{101: blockedIn(unix.SYS_ACCEPT4, 3)}},
		}, true},
		{"grandchild polling with epoll", false, []fakeProc{
			{pid: pid, ppid: 1, fds: map[int]string{0: "/dev/null"}},
			{pid: 101, ppid: pid},
			{pid: 205, ppid: 101, fds: holding,
				fdinfo: epollFD("tfd:        3 events:       19 data:     3  pos:0 ino:6f sdev:9\n")},
		}, true},
		{"unrelated process blocked in accept4", false, []fakeProc{
			{pid: pid, ppid: 1, fds: holding},
			{pid: 300, ppid: 1, fds: holding, syscalls: map[int]string{300: blockedIn(unix.SYS_ACCEPT4, 3)}},
		}, false},
		{"parent blocked in accept4", false, []fakeProc{
			{pid: 50, ppid: 1, fds: holding, syscalls: map[int]string{50: blockedIn(unix.SYS_ACCEPT4, 3)}},
			{pid: pid, ppid: 50, fds: holding},
		}, false},
		{"only holding the socket", false, []fakeProc{{
			pid: pid, ppid: 1,
			fds: holding,
		}}, false},
		{"only holding the socket, owning", true, []fakeProc{{
			pid: pid, ppid: 1,
			fds: holding,
		}}, true},
		{"child holding the socket, owning", true, []fakeProc{
			{pid: pid, ppid: 1},
			{pid: 101, ppid: pid, fds: holding},
		}, true},
		{"holding an unrelated socket, owning", true, []fakeProc{{
			pid: pid, ppid: 1,
			fds: map[int]string{3: "socket:[222]"},
		}}, false},
		{"epoll on an unrelated socket", false, []fakeProc{{
			pid: pid, ppid: 1,
			fds:    map[int]string{3: "socket:[222]", 9: "anon_inode:[eventpoll]"},
			fdinfo: epollFD("tfd:        3 events:       19 data:     3  pos:0 ino:de sdev:9\n"),
		}}, false},
		{"epoll by tfd on an unrelated socket", false, []fakeProc{{
			pid: pid, ppid: 1,
			fds:    map[int]string{3: "socket:[222]", 9: "anon_inode:[eventpoll]"},
			fdinfo: epollFD("tfd:        3 events:       19 data:                3\n"),
		}}, false},
		{"accept4 on an unrelated socket", false, []fakeProc{{
			pid: pid, ppid: 1,
			fds:      map[int]string{3: "socket:[222]"},
			syscalls: map[int]string{pid: blockedIn(unix.SYS_ACCEPT4, 3)},
		}}, false},
		{"no such process", false, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fs := buildProc(t, tc.procs...)
			if got := accepting(fs, pid, map[uint64]bool{wanted: true}, tc.owning); got != tc.want {
				t.Errorf("accepting(%d) = %v, want %v", pid, got, tc.want)
			}
		})
	}
}

// TestAcceptingNothingWanted: without wanted sockets nothing counts, not even an accept.
func TestAcceptingNothingWanted(t *testing.T) {
	t.Parallel()
	fs := buildProc(t, fakeProc{
		pid: 100, ppid: 1,
		fds:      map[int]string{3: "socket:[111]"},
		syscalls: map[int]string{100: blockedIn(unix.SYS_ACCEPT4, 3)},
	})
	for _, owning := range []bool{false, true} {
		if accepting(fs, 100, nil, owning) {
			t.Errorf("owning=%v: accepting with no wanted sockets = true, want false", owning)
		}
		if !accepting(fs, 100, map[uint64]bool{111: true}, owning) {
			t.Errorf("owning=%v: accepting with socket 111 wanted = false, want true", owning)
		}
	}
}

// TestAcceptingRealProcess: a python3 process waiting on a listening socket in
// select, poll, epoll or accept is seen as accepting through the real /proc; holding it while
// blocked elsewhere is not.
func TestAcceptingRealProcess(t *testing.T) {
	t.Parallel()
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not found")
	}
	const prelude = `import os, select, socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(8)
print(os.getpid(), s.fileno(), flush=True)
`
	tests := []struct {
		name  string
		calls map[int]bool // the syscalls it needs detected on this architecture
		wait  string
	}{
		{"select", selectCalls, "select.select([s], [], [])"},
		{"poll", pollCalls, "p = select.poll()\np.register(s, select.POLLIN)\np.poll()"},
		{"epoll", nil, "e = select.epoll()\ne.register(s.fileno(), select.EPOLLIN)\ne.poll()"},
		{"accept", acceptCalls, "s.accept()"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.calls != nil && len(tc.calls) == 0 {
				t.Skipf("%s is not detected on this architecture", tc.name)
			}
			pid, ino := startPython(t, python, prelude+tc.wait+"\n")
			if !eventually(5*time.Second, func() bool { return accepting(Host, pid, map[uint64]bool{ino: true}, false) }) {
				t.Fatalf("python3 waiting in %s on socket %d: accepting(%d) still false after 5s", tc.name, ino, pid)
			}
			if accepting(Host, pid, map[uint64]bool{ino + 1<<40: true}, false) {
				t.Errorf("python3 waiting in %s: accepting(%d) = true for a socket it does not hold", tc.name, pid)
			}
		})
	}

	t.Run("holding", func(t *testing.T) {
		t.Parallel()
		pid, ino := startPython(t, python, prelude+"sys.stdin.read()\n")
		// Once its thread sits in read(0, …), python3 waits on nothing but stdin.
		blocked := eventually(5*time.Second, func() bool {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/syscall", pid))
			if err != nil {
				return false
			}
			sc, ok := parseSyscall(string(b))
			return ok && sc.nr == unix.SYS_READ && sc.args[0] == 0
		})
		if !blocked {
			t.Fatal("python3 not blocked in read(0) within 5s")
		}
		if accepting(Host, pid, map[uint64]bool{ino: true}, false) {
			t.Errorf("python3 holding socket %d while reading stdin: accepting = true, want false", ino)
		}
		if !accepting(Host, pid, map[uint64]bool{ino: true}, true) {
			t.Errorf("python3 holding socket %d, owning: accepting = false, want true", ino)
		}
	})
}

// startPython runs script, which prints its PID and a socket's fd, and returns that PID and the
// socket's inode. The process group is killed when the test ends.
func startPython(t *testing.T, python, script string) (int, uint64) {
	t.Helper()
	cmd := exec.Command(python, "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe() // kept open so that a read of stdin blocks
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		_ = stdin.Close()
	})
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- s
		_, _ = io.Copy(io.Discard, stdout)
	}()
	var s string
	select {
	case s = <-line:
	case <-time.After(20 * time.Second):
		t.Fatal("python3 printed no PID and fd within 20s")
	}
	var pid, fd int
	if _, err := fmt.Sscan(s, &pid, &fd); err != nil {
		t.Fatalf("python3 printed %q: %v", s, err)
	}
	link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", pid, fd))
	if err != nil {
		t.Fatal(err)
	}
	ino, ok := socketInode(link)
	if !ok {
		t.Fatalf("python3's fd %d links to %q, not a socket", fd, link)
	}
	return pid, ino
}

// eventually polls cond every 10ms until it holds or d has passed.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// procNetTCPQueued is /proc/net/tcp with a listener on 127.0.0.1:45161 (B069) holding three
// connections not yet accepted (rx_queue 3), to which a second SO_REUSEPORT listener with two
// and an established connection with unread bytes on the same port are added.
const procNetTCPQueued = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode                                                     
   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 64 1 00000000bb6c167a 100 0 0 10 0                        
   1: 0100007F:B069 00000000:0000 0A 00000000:00000003 00:00000000 00000000     0        0 1904405 4 00000000a66c079a 100 0 0 10 0                   
   2: 0100007F:B069 00000000:0000 0A 00000000:00000002 00:00000000 00000000     0        0 1904406 4 00000000a66c079b 100 0 0 10 0                   
   3: 0100007F:B069 0100007F:8EC3 01 00000000:00000010 00:00000000 00000000     0        0 1904407 1 00000000a66c079c 20 4 30 10 -1                  
   4: 0100007F:8EC3 0100007F:D85E 06 00000000:00000000 03:000016CF 00000000     0        0 0 3 000000009310d103                                      
`

func TestListenQueue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name            string
		in              string
		port            int
		queued, sockets int
	}{
		{"two listeners, established skipped", procNetTCPQueued, 45161, 5, 2},
		{"idle listener", procNetTCPQueued, 2024, 0, 1},
		{"no listener on the port", procNetTCPQueued, 36547, 0, 0}, // 0x8EC3: only TIME_WAIT
		{"tcp6 listener", procNetTCP6, 56803, 0, 1},
		{"rx_queue not hex", "   1: 0100007F:B069 00000000:0000 0A 00000000:0000zz03 00:00000000 00000000     0        0 1904405 4 0 100 0 0 10 0\n", 45161, 0, 0},
		{"header only", strings.SplitAfter(procNetTCPQueued, "\n")[0], 0, 0, 0},
		{"empty", "", 45161, 0, 0},
	}
	for _, tc := range tests {
		queued, sockets := listenQueue(tc.in, tc.port)
		if queued != tc.queued || sockets != tc.sockets {
			t.Errorf("%s: listenQueue(port %d) = %d, %d, want %d, %d", tc.name, tc.port, queued, sockets, tc.queued, tc.sockets)
		}
	}
}
