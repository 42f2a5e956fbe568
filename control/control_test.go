package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/narwhal-init/narwhal/internal/status"
	"golang.org/x/sys/unix"
)

func serve(t *testing.T, b *status.Board) string {
	t.Helper()
	return serveWith(t, b, func(*Server) {})
}

// serveWith is serve with the server adjusted by set before it serves.
func serveWith(t *testing.T, b *status.Board, set func(*Server)) string {
	t.Helper()
	name := filepath.Join(t.TempDir(), "control.sock")
	s, err := Listen(name, b, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	set(s)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; s.Close() })
	return name
}

func TestStatusAndHealthcheck(t *testing.T) {
	b := status.New(2, 0)
	b.Publish(&status.Snapshot{Mode: "pool", Generation: 3, Desired: 2, ReadyCount: 1, Workers: []status.Worker{
		{Slot: 0, PID: 1 << 30, Generation: 3, State: "ready", Started: time.Now().Add(-time.Minute)},
		{Slot: 1, PID: 1<<30 + 1, Generation: 3, State: "starting", Started: time.Now()},
	}})
	name := serve(t, b)
	raw, err := GetStatus(name)
	if err != nil {
		t.Fatal(err)
	}
	var st Status
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode != "pool" || st.Generation != 3 || st.Ready || st.Desired != 2 || len(st.Workers) != 2 {
		t.Errorf("status = %+v", st)
	}
	if w := st.Workers[0]; w.UptimeSeconds < 59 || w.State != "ready" || w.Slot != 0 {
		t.Errorf("worker 0 = %+v", w)
	}
	for _, field := range []string{`"slot"`, `"pid"`, `"generation"`, `"state"`, `"uptime_seconds"`, `"restarts"`, `"memory_bytes"`, `"draining"`} {
		if !strings.Contains(string(raw), field) {
			t.Errorf("--status JSON lacks %s: %s", field, raw)
		}
	}
	ready, reason, err := Healthcheck(name)
	if err != nil || ready || !strings.Contains(reason, "NARWHAL_MIN_READY") {
		t.Errorf("Healthcheck with 1 of 2 ready = %v %q %v", ready, reason, err)
	}
	b.Publish(&status.Snapshot{Mode: "pool", ReadyCount: 2})
	if ready, _, err := Healthcheck(name); err != nil || !ready {
		t.Errorf("Healthcheck with 2 ready = %v %v", ready, err)
	}
}

// TestDrain: unready at once, and the client returns only after the server's delay. The
// delay is longer than the server's reply timeout, whose clock for the last line starts after it.
func TestDrain(t *testing.T) {
	const delay = 200 * time.Millisecond
	b := status.New(1, delay)
	b.Publish(&status.Snapshot{Mode: "pool", ReadyCount: 1})
	name := serveWith(t, b, func(s *Server) { s.timeout = delay / 4 })
	start := time.Now()
	var told time.Duration
	if err := Drain(name, func(d, since time.Duration) {
		if since != 0 {
			t.Errorf("the first drain was told one began %s ago", since)
		}
		told = d
		if ok, _ := b.Ready(); ok {
			t.Error("still ready when the server said it was draining")
		}
	}); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < delay {
		t.Errorf("Drain returned after %s, before the server's %s", el, delay)
	}
	if told != delay || !b.Draining() {
		t.Errorf("told %s, draining %v", told, b.Draining())
	}

	// Again, once the delay has passed: it is told it has been draining that long, with nothing
	// left to wait.
	if err := Drain(name, func(d, since time.Duration) {
		if d != 0 || since < delay {
			t.Errorf("a second drain was told to wait %s, draining for %s; want 0 and at least %s", d, since, delay)
		}
	}); err != nil {
		t.Fatal(err)
	}
}

func TestUnknownRequestAndNoServer(t *testing.T) {
	name := serve(t, status.New(1, 0))
	c, err := net.Dial("unix", name)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "reboot\n")
	var r map[string]string
	if err := json.NewDecoder(c).Decode(&r); err != nil || !strings.Contains(r["error"], "unknown request") {
		t.Errorf("unknown request answered %v, %v", r, err)
	}
	if _, err := GetStatus(filepath.Join(t.TempDir(), "nobody.sock")); !errors.Is(err, ErrNoAnswer) {
		t.Errorf("GetStatus with nothing listening: %v, want ErrNoAnswer", err)
	}
}

func TestDefaultName(t *testing.T) {
	pid, err1 := os.Readlink("/proc/self/ns/pid")
	mnt, err2 := os.Readlink("/proc/self/ns/mnt")
	if err1 != nil || err2 != nil {
		t.Skipf("no /proc/self/ns: %v, %v", err1, err2)
	}
	name := DefaultName()
	want := "@narwhal-" + strings.Trim(strings.TrimPrefix(pid, "pid:"), "[]") + "-" +
		strings.Trim(strings.TrimPrefix(mnt, "mnt:"), "[]")
	if name != want {
		t.Errorf("DefaultName() = %q, want %q (from %s and %s)", name, want, pid, mnt)
	}
	if Name("@custom") != "@custom" || Name("") != name {
		t.Error("Name does not prefer the configured socket")
	}
}

func TestDefaultNameFromLinks(t *testing.T) {
	for _, tc := range []struct{ pid, mnt, want string }{
		{"pid:[4026532204]", "mnt:[4026532205]", "@narwhal-4026532204-4026532205"},
		{"pid:[4026531836]", "mnt:[4026531841]", "@narwhal-4026531836-4026531841"},
		{"", "", "@narwhal"},                                  // no /proc
		{"pid:[4026532204]", "", "@narwhal"},                  // half a name could collide
		{"mnt:[4026532205]", "pid:[4026532204]", "@narwhal"},  // swapped kinds
		{"pid:[]", "mnt:[4026532205]", "@narwhal"},            // no inode
		{"pid:[40265x2204]", "mnt:[4026532205]", "@narwhal"},  // not a number
		{"pid:[4026532204", "mnt:[4026532205]", "@narwhal"},   // unterminated
		{"pid:4026532204", "mnt:4026532205", "@narwhal"},      // no brackets
		{"pid:[-4026532204]", "mnt:[4026532205]", "@narwhal"}, // negative
		{"pid:[4026532204] ", "mnt:[4026532205]", "@narwhal"}, // trailing space
		{"pid:[18446744073709551615]", "mnt:[1]", "@narwhal-18446744073709551615-1"},
	} {
		if got := defaultName(tc.pid, tc.mnt); got != tc.want {
			t.Errorf("defaultName(%q, %q) = %q, want %q", tc.pid, tc.mnt, got, tc.want)
		}
	}
}

// TestReaderThatNeverReads: a client that asks for a reply larger than the socket's buffers and
// never reads it is hung up on once the reply timeout passes, instead of holding its handler
// (and its place among MaxConns) forever.
func TestReaderThatNeverReads(t *testing.T) {
	big := Status{Mode: "pool", Workers: make([]Worker, 50000)} // some MB of JSON
	name := serveWith(t, status.New(1, 0), func(s *Server) {
		s.timeout = 100 * time.Millisecond
		s.status = func() Status { return big }
	})
	c, err := net.Dial("unix", name)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "status\n"); err != nil {
		t.Fatal(err)
	}
	// Never read: wait for the server to hang up, which the kernel reports as POLLRDHUP even with
	// the start of the reply still unread.
	rc, err := c.(*net.UnixConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var revents int16
	var perr error
	rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
		for {
			_, perr = unix.Poll(fds, 10_000)
			if perr != unix.EINTR {
				break
			}
		}
		revents = fds[0].Revents
	})
	if perr != nil {
		t.Fatal(perr)
	}
	if revents&(unix.POLLRDHUP|unix.POLLHUP) == 0 {
		t.Fatal("the server still holds a client that never reads, 10s after its 100ms reply timeout")
	}
}

// TestConnectionCap: with MaxConns clients connected, one more gets a one-line "busy" error at
// once; once they are gone, clients are served again.
func TestConnectionCap(t *testing.T) {
	b := status.New(1, 0)
	b.Publish(&status.Snapshot{Mode: "pool", ReadyCount: 1})
	name := serve(t, b)
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range MaxConns {
		c, err := net.Dial("unix", name) // connected, and silent
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	// The server accepts in order, so this one comes after every held connection.
	start := time.Now()
	_, err := GetStatus(name)
	if err == nil || !strings.Contains(err.Error(), "busy") {
		t.Fatalf("GetStatus with %d connections open = %v, want a busy error", MaxConns, err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("the busy answer took %s", el)
	}
	// The server answers and hangs up without reading the request; a request too large for the
	// socket's buffers is still being written then, and fails, but the answer is there to read.
	if _, _, err := request(name, strings.Repeat("x", 4<<20)); err == nil || !strings.Contains(err.Error(), "busy") {
		t.Errorf("a request that cannot be written to a server that turned it away: %v, want the busy error", err)
	}
	for _, c := range held {
		c.Close()
	}
	held = nil
	deadline := time.Now().Add(5 * time.Second)
	for {
		ready, _, err := Healthcheck(name)
		if err == nil && ready {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Healthcheck after the connections closed = %v, %v", ready, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRefusalsRateLimited: anyone in the network namespace can connect. Each refused client is
// counted for the metrics, but a flood of them is logged once per 10s, the next line saying how
// many were left out, and cannot flood narwhal's log.
func TestRefusalsRateLimited(t *testing.T) {
	const flood = 300
	b := status.New(1, 0)
	var logs lockedBuffer
	var now atomic.Int64 // the server's clock, in Unix nanoseconds
	now.Store(time.Unix(1e9, 0).UnixNano())
	other := os.Getuid() + 1 // neither root nor narwhal's uid
	name := serveWith(t, b, func(s *Server) {
		s.log = slog.New(slog.NewJSONHandler(&logs, nil))
		s.cred = func(*net.UnixConn) (int, int, error) { return other, 4242, nil }
		s.now = func() time.Time { return time.Unix(0, now.Load()) }
	})
	// The server counts and logs a refusal before it answers and hangs up, so once a client
	// has read to the end, its refusal is on the board and in the log.
	refuse := func() {
		t.Helper()
		c, err := net.Dial("unix", name)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if answer, err := io.ReadAll(c); err != nil || !strings.Contains(string(answer), "refused") {
			t.Fatalf("a client of uid %d was answered %q, %v; want refused", other, answer, err)
		}
	}
	refusals := func() []map[string]any {
		var out []map[string]any
		for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["event"] == "control_refused" {
				out = append(out, m)
			}
		}
		return out
	}
	for range flood {
		refuse()
	}
	if got := refusals(); len(got) != 1 {
		t.Errorf("%d refused clients gave %d log lines, want 1", flood, len(got))
	}
	if n := b.ControlRefused(); n != flood {
		t.Errorf("board counts %d refused clients, want %d", n, flood)
	}
	now.Add(int64(10 * time.Second))
	refuse()
	got := refusals()
	if len(got) < 2 {
		t.Fatalf("no log line for a refusal 10s after the last one logged: %v", got)
	}
	if last := got[len(got)-1]; last["suppressed"] != float64(flood-1) || last["uid"] != float64(other) {
		t.Errorf("the next line after %d refusals = %v, want suppressed %d and the uid", flood, last, flood-1)
	}
}

// lockedBuffer is a log the server writes while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestStrangerHoldsDefaultName: a process of another mount namespace that shares the network
// namespace (another container of the pod can) binds the default name before narwhal. The
// clients do not talk to it, whatever it answers, and say which pid holds the name; so does a
// narwhal that finds the name taken.
func TestStrangerHoldsDefaultName(t *testing.T) {
	if name := os.Getenv("NARWHAL_TEST_STRANGER"); name != "" {
		stranger(name)
		return
	}
	name := DefaultName()
	if name == "@narwhal" {
		t.Skip("no /proc/self/ns: the default name says nothing to check")
	}
	pid := startStranger(t, name)
	who := fmt.Sprintf("pid %d", pid)
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrNameTaken) || !strings.Contains(err.Error(), who) {
			t.Errorf("%s from a stranger holding %s: %v; want ErrNameTaken naming %s", what, name, err, who)
		}
	}
	_, err := GetStatus(name)
	check("GetStatus", err)
	_, _, err = Healthcheck(name)
	check("Healthcheck", err)
	check("Drain", Drain(name, func(time.Duration, time.Duration) {}))

	s, err := Listen(name, status.New(1, 0), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil {
		s.Close()
		t.Fatalf("Listen on %s, held by the stranger, succeeded", name)
	}
	if !strings.Contains(err.Error(), who) || !errors.Is(err, unix.EADDRINUSE) {
		t.Errorf("Listen on %s, held by the stranger: %v; want it to name %s", name, err, who)
	}
}

// TestDefaultNameServed: a narwhal that holds its default name passes its clients' check.
// Here it is not PID 1, and the client is in the same process, as it is in the same container.
func TestDefaultNameServed(t *testing.T) {
	name := DefaultName()
	if name == "@narwhal" {
		t.Skip("no /proc/self/ns")
	}
	s, err := Listen(name, status.New(1, 0), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if errors.Is(err, unix.EADDRINUSE) {
		t.Skipf("%s is taken already, by a narwhal on this host perhaps: %v", name, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	if _, _, err := Healthcheck(name); err != nil {
		t.Errorf("Healthcheck of a narwhal holding its own default name: %v", err)
	}
}

// stranger binds name and answers every request as a ready narwhal would, until stdin closes.
func stranger(name string) {
	ln, err := net.Listen("unix", name)
	if err != nil {
		fmt.Println("bind:", err)
		os.Exit(1)
	}
	fmt.Println("listening")
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				bufio.NewReader(c).ReadString('\n')
				io.WriteString(c, `{"ready":true,"draining":true}`+"\n"+`{"drained":true}`+"\n")
			}()
		}
	}()
	io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

// startStranger runs the test binary as a stranger holding name, in a mount namespace of its
// own (and a user namespace to make one without root), and returns its pid.
func startStranger(t *testing.T, name string) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestStrangerHoldsDefaultName$")
	cmd.Env = append(os.Environ(), "NARWHAL_TEST_STRANGER="+name)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	if os.Geteuid() != 0 {
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWUSER
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: os.Getuid(), HostID: os.Getuid(), Size: 1}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: os.Getgid(), HostID: os.Getgid(), Size: 1}}
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start a process in a mount namespace of its own: %v", err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- strings.TrimSpace(l)
	}()
	select {
	case l := <-line:
		if strings.Contains(l, "address already in use") {
			t.Skipf("%s is taken already, by a narwhal on this host perhaps: %s", name, l)
		}
		if l != "listening" {
			t.Fatalf("the stranger did not bind %s: %q", name, l)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the stranger did not bind %s within 10s", name)
	}
	return cmd.Process.Pid
}

// TestServeWaitsForItsClients: when its context ends, Serve cuts the clients it is serving (one
// silent, one waiting out a drain) and returns only once their goroutines are done, well
// before the server's timeouts would have ended them.
func TestServeWaitsForItsClients(t *testing.T) {
	b := status.New(1, 0)
	b.DrainDelay = time.Hour
	name := filepath.Join(t.TempDir(), "control.sock")
	s, err := Listen(name, b, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	s.timeout = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx); close(done) }()
	defer s.Close()
	silent, err := net.Dial("unix", name)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	drain, err := net.Dial("unix", name)
	if err != nil {
		t.Fatal(err)
	}
	defer drain.Close()
	fmt.Fprintln(drain, "drain")
	if _, err := bufio.NewReader(drain).ReadString('\n'); err != nil { // the drain has begun
		t.Fatal(err)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return within 10s of its context ending, with two clients connected")
	}
	for _, c := range []net.Conn{silent, drain} {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadAll(c); err != nil {
			t.Errorf("a client was not cut when Serve returned: %v", err)
		}
	}
}
