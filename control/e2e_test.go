//go:build e2e

package control_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/narwhal-init/narwhal/internal/e2e"
)

const timeout = 20 * time.Second

// TestSharedProcessNamespace: two narwhals in one PID namespace and one network namespace, each
// with its own mount namespace, as two containers of a Kubernetes pod with
// shareProcessNamespace. Each binds its own default control socket, and each container's
// clients reach only their own narwhal: --drain in one leaves the other ready.
func TestSharedProcessNamespace(t *testing.T) {
	e2e.Require(t)
	env := []string{"NARWHAL_DRAIN_DELAY=100ms", "NARWHAL_METRICS_ADDR=off", "NARWHAL_CONTROL_SOCKET="}
	a := e2e.Start(t, e2e.Options{Env: env}, "sleep", "1000")
	a.WaitStderr(`"event":"start"`, timeout)

	// b joins a's PID namespace, and its mount namespace only to copy it (so that /proc is the
	// one of that PID namespace), then gets a mount namespace of its own. Options.Bin is the
	// program Start runs, here the wrapper that runs narwhal.
	b := e2e.Start(t, e2e.Options{Env: env, NoNS: true, Bin: "nsenter"},
		"--target", strconv.Itoa(a.PID), "--pid", "--mount", "--",
		"unshare", "--mount", "--fork", "--kill-child", e2e.Binary(t), "sleep", "1000")
	// b's child, in a process group of its own, outlives a kill of b's; ending a's namespace
	// (before Start's cleanups, which wait for the output pipes it holds) ends it too.
	t.Cleanup(func() { syscall.Kill(a.PID, syscall.SIGKILL) })
	b.WaitStderr(`"event":"start"`, timeout)
	bPID := 0 // nsenter → unshare → narwhal
	if !e2e.Eventually(timeout, func() bool {
		for _, u := range e2e.Children(b.PID) {
			for _, n := range e2e.Children(u) {
				if comm(n) == "narwhal" {
					bPID = n
					return true
				}
			}
		}
		return false
	}) {
		t.Fatalf("no narwhal under nsenter %d", b.PID)
	}
	if ns(t, a.PID, "pid") != ns(t, bPID, "pid") || ns(t, a.PID, "net") != ns(t, bPID, "net") ||
		ns(t, a.PID, "mnt") == ns(t, bPID, "mnt") {
		t.Fatal("a and b do not share exactly their PID and network namespaces")
	}

	// Both bound their sockets, before their children started, under the documented names.
	listening := unixListeners(t)
	for _, tc := range []struct {
		name   string
		pid    int
		stderr string
	}{{"a", a.PID, a.Stderr()}, {"b", bPID, b.Stderr()}} {
		if strings.Contains(tc.stderr, "control socket unavailable") {
			t.Errorf("%s could not bind its control socket:\n%s", tc.name, tc.stderr)
		}
		want := fmt.Sprintf("@narwhal-%s-%s", ns(t, tc.pid, "pid"), ns(t, tc.pid, "mnt"))
		if !listening[want] {
			t.Errorf("%s: nothing listens on %s", tc.name, want)
		}
	}

	// Each container's --status describes its own narwhal: its child is the worker.
	clientB := func(args ...string) (int, string, string) { return clientIn(t, bPID, args...) }
	for _, tc := range []struct {
		name   string
		pid    int
		client func(...string) (int, string, string)
	}{{"a", a.PID, func(args ...string) (int, string, string) { return a.Client(-1, args...) }}, {"b", bPID, clientB}} {
		st := status(t, tc.name, tc.client)
		child := e2e.Children(tc.pid)
		if len(child) != 1 {
			t.Fatalf("%s has children %v, want its one sleep", tc.name, child)
		}
		if want := nsPID(t, child[0]); len(st.Workers) != 1 || st.Workers[0].PID != want {
			t.Errorf("%s's --status = %+v, want its child, PID %d in the namespace", tc.name, st, want)
		}
	}

	// --drain in b's container drains b only.
	if code, _, errs := clientB("--drain"); code != 0 {
		t.Fatalf("--drain in b = %d: %s", code, errs)
	}
	if code, out, errs := a.Client(-1, "--healthcheck"); code != 0 {
		t.Errorf("a --healthcheck after b's drain = %d, want 0: %s%s", code, out, errs)
	}
	if st := status(t, "a", func(args ...string) (int, string, string) { return a.Client(-1, args...) }); st.Draining || !st.Ready {
		t.Errorf("a's --status after b's drain = %+v, want ready and not draining", st)
	}
	if code, _, _ := clientB("--healthcheck"); code != 1 {
		t.Errorf("b --healthcheck after its drain = %d, want 1", code)
	}
	if st := status(t, "b", clientB); !st.Draining || st.Ready {
		t.Errorf("b's --status after its drain = %+v, want draining", st)
	}
	b.WaitStderr(`"event":"drain"`, timeout)
	if strings.Contains(a.Stderr(), `"event":"drain"`) {
		t.Errorf("a logged a drain:\n%s", a.Stderr())
	}
	// Again in b, as a preStop hook would after a drain by hand: it says so, and waits no more.
	if code, _, errs := clientB("--drain"); code != 0 || !strings.Contains(errs, "already draining") {
		t.Errorf("a second --drain in b = %d: %q, want 0 and already draining", code, errs)
	}
	b.WaitStderr(`"already draining"`, timeout)
}

// TestClientOffTheTestGoroutine: e2e's Proc.Client, run on a goroutine of the test's own as
// the preStop tests run it, reports a client that cannot start as a failure and returns. A
// t.Fatal there would end only that goroutine and leave the test waiting for its answer until
// the suite's timeout. The failing test runs in a child process, which must end promptly.
func TestClientOffTheTestGoroutine(t *testing.T) {
	if os.Getenv("NARWHAL_TEST_CLIENT_HELPER") == "1" {
		e2e.Binary(t) // built here, not by the client on its goroutine
		// Client needs a Proc, not a narwhal: any process whose namespaces it would enter.
		p := e2e.Start(t, e2e.Options{NoNS: true, Bin: "sleep"}, "30")
		t.Setenv("PATH", t.TempDir()) // no nsenter: the client cannot start
		got := make(chan int, 1)
		go func() { code, _, _ := p.Client(-1, "--status"); got <- code }()
		fmt.Println("client returned", <-got)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestClientOffTheTestGoroutine$", "-test.v", "-test.timeout=15s")
	cmd.Env = append(os.Environ(), "NARWHAL_TEST_CLIENT_HELPER=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(timeout + 15*time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("the helper test did not end:\n%s", out.String())
	}
	if o := out.String(); !strings.Contains(o, "client returned -1") || !strings.Contains(o, "--- FAIL") ||
		strings.Contains(o, "test timed out") {
		t.Errorf("a client that cannot start, on its own goroutine: want a failed test and code -1, got:\n%s", o)
	}
}

type statusJSON struct {
	Mode     string
	Ready    bool
	Draining bool
	Workers  []struct{ Slot, PID int }
}

func status(t *testing.T, name string, client func(...string) (int, string, string)) statusJSON {
	t.Helper()
	code, out, errs := client("--status")
	if code != 0 {
		t.Fatalf("%s --status = %d: %s", name, code, errs)
	}
	var st statusJSON
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("%s --status printed %q: %v", name, out, err)
	}
	return st
}

// clientIn runs narwhal with args in the PID and mount namespaces of pid, as
// kubectl exec does in a container, on the test's goroutine.
func clientIn(t *testing.T, pid int, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command("nsenter", append([]string{"-t", strconv.Itoa(pid), "-p", "-m", "--", e2e.Binary(t)}, args...)...)
	cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0 halt_on_error=1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(timeout):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		t.Fatalf("narwhal %v in %d's namespaces did not return within %s", args, pid, timeout)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}

// ns is the inode of pid's namespace of a kind ("pid", "mnt", "net"), from outside.
func ns(t *testing.T, pid int, kind string) string {
	t.Helper()
	link, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, kind))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(strings.TrimPrefix(link, kind+":["), "]")
}

// nsPID is pid as its own PID namespace numbers it: the last NSpid of /proc/PID/status.
func nsPID(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "NSpid:" {
			n, err := strconv.Atoi(f[len(f)-1])
			if err != nil {
				t.Fatalf("NSpid of %d: %q", pid, line)
			}
			return n
		}
	}
	t.Fatalf("no NSpid in /proc/%d/status", pid)
	return 0
}

func comm(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}

// unixListeners are the listening unix sockets of this network namespace, by name ("@…" for
// abstract ones), from /proc/net/unix.
func unixListeners(t *testing.T) map[string]bool {
	t.Helper()
	f, err := os.Open("/proc/net/unix")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const listening = "00010000" // __SO_ACCEPTCON in the Flags column
	out := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 8 && f[3] == listening {
			out[f[7]] = true
		}
	}
	return out
}
