// Package e2e runs the real narwhal binary the way a container runtime does: as PID 1 of a new
// PID namespace (unshare --pid --fork --mount-proc), driven by real signals. Tests need root;
// off root they skip, unless NARWHAL_E2E=required (as in CI), which turns a skip into a failure.
// Every wait here is bounded.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// T is what the helpers need of a test: the methods of testing.TB they call, so that this
// package, built with the module's code, does not import testing.
type T interface {
	Helper()
	Errorf(format string, args ...any)
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Skipf(format string, args ...any)
	Cleanup(func())
	Failed() bool
	TempDir() string
}

// Require skips t (or fails it, when NARWHAL_E2E=required) unless PID namespaces can be made.
func Require(t T) {
	t.Helper()
	reason := ""
	if os.Geteuid() != 0 {
		reason = "end-to-end tests need root to create PID namespaces"
	} else if _, err := exec.LookPath("unshare"); err != nil {
		reason = "end-to-end tests need unshare (util-linux)"
	}
	if reason == "" {
		return
	}
	if os.Getenv("NARWHAL_E2E") == "required" {
		t.Fatalf("%s, and NARWHAL_E2E=required", reason)
	}
	t.Skipf("%s (set NARWHAL_E2E=required to make this a failure)", reason)
}

var (
	buildOnce, plainOnce sync.Once
	buildDir             string
	buildErr, plainErr   error
)

// Binary builds narwhal once per test binary, with the race detector when the tests have it,
// and returns its path.
func Binary(t T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "narwhal-e2e-")
		if buildErr == nil {
			// Workers may run as another user (NARWHAL_WORKER_USER) and must reach the binaries.
			buildErr = os.Chmod(buildDir, 0o755)
		}
		if buildErr == nil {
			buildErr = build(filepath.Join(buildDir, "narwhal"), raceEnabled)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "narwhal")
}

// PlainBinary is narwhal built as it ships, without the race detector, for measurements of
// its own memory.
func PlainBinary(t T) string {
	t.Helper()
	Binary(t)
	plainOnce.Do(func() { plainErr = build(filepath.Join(buildDir, "narwhal-plain"), false) })
	if plainErr != nil {
		t.Fatal(plainErr)
	}
	return filepath.Join(buildDir, "narwhal-plain")
}

func build(out string, race bool) error {
	args := []string{"build", "-o", out}
	if race {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "github.com/narwhal-init/narwhal")...)
	cmd.Dir = moduleRoot()
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, b)
	}
	return nil
}

func moduleRoot() string {
	dir, _ := os.Getwd()
	for d := dir; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
	}
	return dir
}

// Options say how to start narwhal.
type Options struct {
	Env   []string  // added to the test's environment
	Stdin io.Reader // nil is /dev/null
	// Stdout, when set, is narwhal's stdout instead of a buffer that Stdout() returns.
	Stdout *os.File
	Dir    string
	NoNS   bool   // run narwhal as a plain child (a subreaper, not PID 1)
	Bin    string // the narwhal binary; Binary(t) when empty
	// Cgroup is a cgroup directory narwhal starts in, so that every worker is in it too.
	Cgroup string
}

// Proc is a running narwhal.
type Proc struct {
	t       T
	cmd     *exec.Cmd
	PID     int // narwhal's PID as this test sees it
	Started time.Time
	stdout  *lines
	stderr  *lines
	done    chan struct{}
	code    int
}

// Start runs narwhal with args, as PID 1 of a new PID namespace unless o.NoNS, and returns once
// its PID is known. The process is killed when the test ends.
func Start(t T, o Options, args ...string) *Proc {
	t.Helper()
	bin := o.Bin
	if bin == "" {
		bin = Binary(t)
	}
	argv := append([]string{bin}, args...)
	if !o.NoNS {
		argv = append([]string{"unshare", "--pid", "--fork", "--mount-proc", "--kill-child"}, argv...)
	}
	if o.Cgroup != "" {
		argv = append([]string{"sh", "-c", `echo $$ > "$0/cgroup.procs" && exec "$@"`, o.Cgroup}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	// JSON logs, which tests search, unless the test sets the format itself.
	// A race-built narwhal exits at once (not after the race runtime's default 1s) and fails
	// loudly, with exit 66 and a report on stderr, on its first data race.
	cmd.Env = append(os.Environ(), "NARWHAL_LOG_FORMAT=json", "GORACE=atexit_sleep_ms=0 halt_on_error=1")
	cmd.Env = append(cmd.Env, o.Env...)
	cmd.Dir = o.Dir
	cmd.Stdin = o.Stdin
	p := &Proc{t: t, cmd: cmd, stdout: newLines(), stderr: newLines(), done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	if o.Stdout != nil {
		cmd.Stdout = o.Stdout
	}
	// Own process group, so that cleanup can kill whatever narwhal leaves.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p.Started = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", argv, err)
	}
	go func() {
		err := cmd.Wait()
		p.code = exitCode(err, cmd.ProcessState)
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
		if t.Failed() {
			t.Logf("narwhal stdout:\n%s\nnarwhal stderr:\n%s", p.stdout.String(), p.stderr.String())
		}
	})
	if o.NoNS {
		p.PID = cmd.Process.Pid
		return p
	}
	comm := filepath.Base(bin)
	if len(comm) > 15 {
		comm = comm[:15] // the kernel keeps 15 bytes of a command name
	}
	p.PID = p.findChild(cmd.Process.Pid, comm, 10*time.Second)
	return p
}

// findChild waits for parent's child to have exec'd the program named comm, and returns 0 if
// the parent exits first.
func (p *Proc) findChild(parent int, comm string, timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	path := fmt.Sprintf("/proc/%d/task/%d/children", parent, parent)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(path)
		if f := strings.Fields(string(b)); len(f) > 0 {
			pid, _ := strconv.Atoi(f[0])
			if c, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(c)) == comm {
				return pid
			}
		}
		select {
		case <-p.done:
			return 0 // it exited already (as on a configuration error); Wait tells how
		default:
		}
		time.Sleep(100 * time.Microsecond)
	}
	p.t.Fatalf("no %s child of %d after %s", comm, parent, timeout)
	return 0
}

func exitCode(err error, st *os.ProcessState) int {
	if st == nil {
		return -1
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return st.ExitCode()
}

// Client runs narwhal with args (--status, --drain, …) inside this narwhal's PID and mount
// namespaces, as a user would with docker exec; as uid when uid >= 0. It returns the exit code
// and what the client printed. Tests run it on goroutines of their own (a preStop hook beside a
// probe), so it never calls t.Fatal, which must run on the test's goroutine: a client that
// cannot start, or has not returned within 30s, fails the test with t.Errorf and comes back
// with code -1 and the reason as its stderr.
func (p *Proc) Client(uid int, args ...string) (int, string, string) {
	p.t.Helper()
	fail := func(format string, a ...any) (int, string, string) {
		p.t.Helper()
		msg := fmt.Sprintf(format, a...)
		p.t.Errorf("%s", msg)
		return -1, "", msg
	}
	bt := &errorTB{T: p.t}
	bin := Binary(bt)
	if bt.err != "" {
		return fail("narwhal %v: %s", args, bt.err)
	}
	argv := []string{"nsenter", "-t", strconv.Itoa(p.PID), "-p", "-m", "--"}
	if uid >= 0 {
		id := strconv.Itoa(uid)
		argv = append(argv, "setpriv", "--reuid="+id, "--regid="+id, "--clear-groups")
	}
	cmd := exec.Command(argv[0], append(append(argv[1:], bin), args...)...)
	cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0 halt_on_error=1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	// nsenter forks the client into the PID namespace: a timeout kills their whole group, and
	// WaitDelay bounds Wait should anything else still hold the output pipes.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return fail("%v: %v", argv, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done // the buffers are the test's to read only once Wait is over
		return fail("narwhal %v did not return within 30s; it printed %q and %q", args, out.String(), errb.String())
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}

// errorTB records a Fatal instead of ending the goroutine that calls it, for Client.
type errorTB struct {
	T
	err string
}

func (e *errorTB) Fatal(args ...any)                 { e.err = fmt.Sprint(args...) }
func (e *errorTB) Fatalf(format string, args ...any) { e.err = fmt.Sprintf(format, args...) }
func (e *errorTB) FailNow()                          { e.err = "FailNow" }

// Signal sends sig to narwhal.
func (p *Proc) Signal(sig syscall.Signal) {
	p.t.Helper()
	if err := unix.Kill(p.PID, sig); err != nil {
		p.t.Fatalf("kill %d %v: %v", p.PID, sig, err)
	}
}

// Wait returns narwhal's exit code, failing the test if it has not exited within timeout.
func (p *Proc) Wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(timeout):
		p.t.Fatalf("narwhal still running after %s", timeout)
		return -1
	}
}

// Done is closed when narwhal has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether narwhal has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// WaitStdout waits for a line of narwhal's stdout (its child's) containing s, and returns it.
func (p *Proc) WaitStdout(s string, timeout time.Duration) string {
	p.t.Helper()
	return p.waitLine(p.stdout, "stdout", s, timeout)
}

// WaitStderr waits for a line of narwhal's stderr (its log) containing s, and returns it.
func (p *Proc) WaitStderr(s string, timeout time.Duration) string {
	p.t.Helper()
	return p.waitLine(p.stderr, "stderr", s, timeout)
}

func (p *Proc) waitLine(l *lines, name, s string, timeout time.Duration) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	line, err := l.wait(ctx, s)
	if err != nil {
		p.t.Fatalf("no line containing %q on %s within %s:\n%s", s, name, timeout, l.String())
	}
	return line
}

// Stdout and Stderr are everything written so far.
func (p *Proc) Stdout() string { return p.stdout.String() }
func (p *Proc) Stderr() string { return p.stderr.String() }

// lines is an io.Writer that keeps what is written and lets readers wait for a line.
type lines struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func newLines() *lines { return &lines{changed: make(chan struct{})} }

func (l *lines) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(b)
	close(l.changed)
	l.changed = make(chan struct{})
	return len(b), nil
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *lines) wait(ctx context.Context, s string) (string, error) {
	for {
		l.mu.Lock()
		sc := bufio.NewScanner(bytes.NewReader(l.buf.Bytes()))
		changed := l.changed
		l.mu.Unlock()
		for sc.Scan() {
			if strings.Contains(sc.Text(), s) {
				return sc.Text(), nil
			}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return "", errors.New("timeout")
		}
	}
}

// Count is how many lines of s contain sub.
func Count(s, sub string) int {
	n := 0
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, sub) {
			n++
		}
	}
	return n
}

// NamespaceProcs lists the processes that share pid's PID namespace, pid included, with their
// state letter (R, S, Z, …), as seen from outside.
func NamespaceProcs(pid int) (map[int]string, error) {
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	out := map[int]string{}
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, err := os.Readlink("/proc/" + e.Name() + "/ns/pid"); err != nil || l != ns {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(stat)
		if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
			out[n] = s[i+2 : i+3]
		}
	}
	return out, nil
}

// Children lists pid's children. The kernel lists them per thread (the one that forked), and Go
// forks from whichever thread it is on, so every task is read.
func Children(pid int) []int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []int
	for _, task := range tasks {
		b, _ := os.ReadFile(task)
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// Eventually polls cond every few milliseconds until it is true or timeout passes.
func Eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}
