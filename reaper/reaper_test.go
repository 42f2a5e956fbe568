package reaper

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The reaper calls wait4(-1), which would steal the statuses of any other child of the test
// binary, so each scenario runs in a fresh copy of the binary (helper mode, chosen by this
// variable) that becomes a subreaper and reports what it saw as JSON on stdout.
const helperEnv = "REAPER_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "storm":
		json.NewEncoder(os.Stdout).Encode(storm())
		os.Exit(0)
	case "childless":
		json.NewEncoder(os.Stdout).Encode(childless())
		os.Exit(0)
	}
	os.Exit(3)
}

type stormResult struct {
	Registered, Delivered, WrongCode, Orphans int
	Err                                       string
}

const (
	stormSpawners        = 4
	orphansPerSpawner    = 250
	registeredChildren   = 300
	helperDeadline       = 60 * time.Second
	orphansExpectedTotal = stormSpawners * orphansPerSpawner
)

// storm races registered children against a storm of orphans. Each spawner is a shell that
// starts its orphans in the background and exits without waiting, so they are re-parented to
// this process; meanwhile registered children exit with known codes.
func storm() stormResult {
	var res stormResult
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		res.Err = err.Error()
		return res
	}
	ctx, cancel := context.WithTimeout(context.Background(), helperDeadline)
	defer cancel()
	r := New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	go r.Run(ctx)

	start := func(argv ...string) (int, <-chan Exit, error) {
		return r.Start(func() (int, error) {
			return syscall.ForkExec("/bin/sh", append([]string{"sh"}, argv...), &syscall.ProcAttr{
				Files: []uintptr{0, 2, 2},
			})
		})
	}

	type waited struct {
		want int
		ch   <-chan Exit
	}
	var mu sync.Mutex
	var all []waited
	var wg sync.WaitGroup
	spawnLoop := fmt.Sprintf("i=0; while [ $i -lt %d ]; do (sleep 0 &); i=$((i+1)); done", orphansPerSpawner)
	for i := 0; i < stormSpawners; i++ {
		_, ch, err := start("-c", spawnLoop)
		if err != nil {
			res.Err = err.Error()
			return res
		}
		all = append(all, waited{0, ch})
	}
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := g; i < registeredChildren; i += 4 {
				code := i % 256
				_, ch, err := start("-c", "exit "+strconv.Itoa(code))
				mu.Lock()
				if err == nil {
					all = append(all, waited{code, ch})
				}
				mu.Unlock()
			}
		}(g)
	}
	wg.Wait()
	res.Registered = len(all)
	// The reaper delivers every status before its next wait4 can report ECHILD, so once this
	// process is childless each registered channel already holds its Exit, or never will.
	if err := r.WaitChildless(ctx); err != nil {
		res.Err = "children still running: " + err.Error()
		return res
	}
	for _, w := range all {
		select {
		case e := <-w.ch:
			res.Delivered++
			if e.Code() != w.want {
				res.WrongCode++
			}
		default:
		}
	}
	res.Orphans = int(r.Orphans())
	return res
}

func runHelper(t *testing.T, mode string, out any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), helperDeadline+10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	cmd.Stderr = os.Stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper %s: %v", mode, err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("helper %s printed %q: %v", mode, b, err)
	}
}

// TestStormNeverMisfilesRegistered: under 1,000 orphans racing 300 registered children, every
// registered status reaches its owner with the right code and none is counted as an orphan.
func TestStormNeverMisfilesRegistered(t *testing.T) {
	var res stormResult
	runHelper(t, "storm", &res)
	if res.Err != "" {
		t.Fatal(res.Err)
	}
	wantRegistered := stormSpawners + registeredChildren
	if res.Registered != wantRegistered || res.Delivered != wantRegistered {
		t.Errorf("registered %d, delivered %d; want %d each", res.Registered, res.Delivered, wantRegistered)
	}
	if res.WrongCode != 0 {
		t.Errorf("%d registered children got another's exit code", res.WrongCode)
	}
	if res.Orphans != orphansExpectedTotal {
		t.Errorf("orphans reaped = %d, want exactly %d (more means a registered status went to the orphan path)",
			res.Orphans, orphansExpectedTotal)
	}
}

type childlessResult struct {
	BeforeErr, AfterErr string
	Code                int
}

// childless: WaitChildless must not return while a child lives, and must once it is reaped.
func childless() childlessResult {
	var res childlessResult
	r := New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)
	rd, wr, _ := os.Pipe()
	_, ch, err := r.Start(func() (int, error) {
		// The child exits when its stdin closes, i.e. when this process closes wr.
		return syscall.ForkExec("/bin/sh", []string{"sh", "-c", "read x; exit 7"}, &syscall.ProcAttr{
			Files: []uintptr{rd.Fd(), 2, 2},
		})
	})
	if err != nil {
		res.BeforeErr = err.Error()
		return res
	}
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()
	if err := r.WaitChildless(short); err != nil {
		res.BeforeErr = err.Error()
	}
	wr.Close()
	long, cancelLong := context.WithTimeout(ctx, 10*time.Second)
	defer cancelLong()
	if err := r.WaitChildless(long); err != nil {
		res.AfterErr = err.Error()
	}
	select {
	case e := <-ch:
		res.Code = e.Code()
	case <-long.Done():
	}
	return res
}

func TestWaitChildless(t *testing.T) {
	var res childlessResult
	runHelper(t, "childless", &res)
	if res.BeforeErr != context.DeadlineExceeded.Error() {
		t.Errorf("WaitChildless with a live child returned %q, want a deadline error", res.BeforeErr)
	}
	if res.AfterErr != "" {
		t.Errorf("WaitChildless after the child exited: %s", res.AfterErr)
	}
	if res.Code != 7 {
		t.Errorf("child exit code = %d, want 7", res.Code)
	}
}

func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		status unix.WaitStatus
		want   int
	}{
		{0, 0},
		{42 << 8, 42},
		{255 << 8, 255},
		{unix.WaitStatus(syscall.SIGTERM), 143},
		{unix.WaitStatus(syscall.SIGKILL), 137},
	} {
		if got := (Exit{Status: tc.status}).Code(); got != tc.want {
			t.Errorf("Code(%#x) = %d, want %d", uint32(tc.status), got, tc.want)
		}
	}
}
