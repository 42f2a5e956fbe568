package earlysig

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const timeout = 5 * time.Second

// helperEnv makes the test binary a child that runs one scenario instead of the tests.
const helperEnv = "EARLYSIG_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "early":
		// As soon as the program starts, as narwhal does before forking its child.
		Wait()
		if err := everySignalReachesC(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	case "release":
		// After Release, SIGTERM has its default action again: it ends the process.
		Release()
		unix.Kill(os.Getpid(), syscall.SIGTERM)
		time.Sleep(timeout)
		os.Exit(3)
	}
	os.Exit(4)
}

func TestHandledIsEveryCatchableSignal(t *testing.T) {
	uncatchable := map[syscall.Signal]string{
		syscall.SIGKILL: "cannot be caught", syscall.SIGSTOP: "cannot be caught",
		syscall.SIGCHLD: "the reaper's", syscall.SIGURG: "the runtime's preemption signal",
		syscall.SIGPROF: "consumed by the runtime's profiler",
		32:              "the C library's", 33: "the C library's and the runtime's", 34: "musl's",
	}
	seen := map[os.Signal]int{}
	for i, s := range Handled {
		if j, dup := seen[s]; dup {
			t.Errorf("%v is in Handled twice, at %d and %d", s, j, i)
		}
		seen[s] = i
		if why, ok := uncatchable[s.(syscall.Signal)]; ok {
			t.Errorf("Handled has %v, which is %s", s, why)
		}
	}
	for s := syscall.Signal(1); s <= 64; s++ {
		if _, ok := seen[s]; !ok && uncatchable[s] == "" {
			t.Errorf("%v (%d) is missing from Handled", s, int(s))
		}
	}
	for i, s := range First {
		if Handled[i] != s {
			t.Fatalf("Handled[%d] = %v, want First's %v: First must come first", i, Handled[i], s)
		}
	}
}

// TestEverySignalReachesC runs a fresh process that, as soon as Wait returns, sends itself each
// handled signal, the last subscribed first, and expects each on C: none takes Go's default
// action (most would kill it, the others would vanish), and none is missing from the
// subscription.
func TestEverySignalReachesC(t *testing.T) {
	for run := 0; run < 20; run++ {
		if out, err := helper(t, "early").CombinedOutput(); err != nil {
			t.Fatalf("run %d: %v: %s", run, err, out)
		}
	}
}

func everySignalReachesC() error {
	for i := len(Handled) - 1; i >= 0; i-- {
		s := Handled[i]
		if err := unix.Kill(os.Getpid(), s.(syscall.Signal)); err != nil {
			return fmt.Errorf("kill %v: %w", s, err)
		}
		select {
		case got := <-C:
			if got != s {
				return fmt.Errorf("sent %v, C received %v", s, got)
			}
		case <-time.After(timeout):
			return fmt.Errorf("%v did not reach C within %s", s, timeout)
		}
	}
	return nil
}

func TestIgnoreJobControl(t *testing.T) {
	Wait()
	t.Cleanup(func() {
		// Hand them back to C for whichever test runs next.
		signal.Notify(C, syscall.SIGTTIN, syscall.SIGTTOU)
	})
	IgnoreJobControl()
	ignored := sigMask(t, "SigIgn")
	for _, s := range []syscall.Signal{syscall.SIGTTIN, syscall.SIGTTOU} {
		if ignored&bit(s) == 0 {
			t.Errorf("%v is not ignored (SigIgn %#x)", s, ignored)
		}
	}
	drain()
	unix.Kill(os.Getpid(), syscall.SIGTTIN)
	unix.Kill(os.Getpid(), syscall.SIGTTOU)
	// A marker: the runtime hands pending signals over lowest number first, so a caught SIGTTIN
	// or SIGTTOU would reach C before the highest signal sent after it.
	marker := syscall.Signal(64)
	unix.Kill(os.Getpid(), marker)
	select {
	case got := <-C:
		if got != marker {
			t.Errorf("C received %v after IgnoreJobControl", got)
		}
	case <-time.After(timeout):
		t.Fatalf("%v did not reach C", marker)
	}
}

func TestReleaseRestoresDefaults(t *testing.T) {
	cmd := helper(t, "release")
	cmd.Run()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Errorf("helper ended with %v, want killed by SIGTERM after Release", cmd.ProcessState)
	}
}

// helper is this test binary run as a child that plays one scenario of TestMain.
func helper(t *testing.T, scenario string) *exec.Cmd {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*timeout)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	// A race-enabled binary otherwise waits a second at exit.
	cmd.Env = append(os.Environ(), helperEnv+"="+scenario, "GORACE=atexit_sleep_ms=0")
	return cmd
}

func drain() {
	for {
		select {
		case <-C:
		default:
			return
		}
	}
}

func bit(s os.Signal) uint64 { return 1 << (uint(s.(syscall.Signal)) - 1) }

// sigMask reads one of the signal masks in /proc/self/status (SigCgt, SigIgn).
func sigMask(t *testing.T, field string) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return m
		}
	}
	t.Fatal(fmt.Errorf("no %s in /proc/self/status", field))
	return 0
}
