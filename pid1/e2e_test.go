//go:build e2e

package pid1_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/narwhal-init/narwhal/internal/e2e"
	"golang.org/x/sys/unix"
)

const timeout = 20 * time.Second

// trapAll is a shell child that reports each signal it traps; SIGALRM, left at its default
// action, kills it (128+14).
const trapAll = `
for s in TERM INT HUP QUIT USR1 USR2; do trap "echo got $s" $s; done
echo ready
while :; do sleep 1000 & wait $!; kill $! 2>/dev/null; done`

func TestExitCodesPassThrough(t *testing.T) {
	e2e.Require(t)
	for _, code := range []int{0, 1, 2, 42, 127, 254, 255} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			p := e2e.Start(t, e2e.Options{}, "sh", "-c", fmt.Sprintf("exit %d", code))
			if got := p.Wait(timeout); got != code {
				t.Errorf("exit code = %d, want %d", got, code)
			}
		})
	}
}

func TestSignalsReachChild(t *testing.T) {
	e2e.Require(t)
	// When SIGALRM ends the shell it may be forking its next sleep; the cleanup's SIGTERM can
	// land while that child still has the shell's trap and be lost, leaving SIGKILL after the
	// stop timeout to end it. That path is tested elsewhere; keep it short here.
	p := e2e.Start(t, e2e.Options{Env: []string{"NARWHAL_STOP_TIMEOUT=1s"}}, "sh", "-c", trapAll)
	p.WaitStdout("ready", timeout)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2} {
		name := strings.TrimPrefix(unix.SignalName(sig), "SIG")
		sent := time.Now()
		p.Signal(sig)
		p.WaitStdout("got "+name, timeout)
		t.Logf("%s reached the child in %s", name, time.Since(sent).Round(time.Microsecond))
	}
	// SIGALRM is not trapped: the child dies of it and narwhal reports 128+14.
	p.Signal(syscall.SIGALRM)
	if got := p.Wait(timeout); got != 128+int(syscall.SIGALRM) {
		t.Errorf("exit code = %d, want %d", got, 128+int(syscall.SIGALRM))
	}
}

func TestChildKilledBySignal(t *testing.T) {
	e2e.Require(t)
	for _, tc := range []struct {
		name string
		argv []string
		send syscall.Signal
		want int
	}{
		{"TERM forwarded to sleep", []string{"sleep", "1000"}, syscall.SIGTERM, 143},
		{"KILL of itself", []string{"sh", "-c", "kill -KILL $$"}, 0, 137},
		{"SEGV of itself", []string{"sh", "-c", "kill -SEGV $$"}, 0, 139},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := e2e.Start(t, e2e.Options{}, tc.argv...)
			if tc.send != 0 {
				p.WaitStderr(`"event":"start"`, timeout)
				p.Signal(tc.send)
			}
			if got := p.Wait(timeout); got != tc.want {
				t.Errorf("exit code = %d, want %d", got, tc.want)
			}
		})
	}
}

// orphanScript makes 100 grandchildren whose parent (a subshell) exits at once, so each is
// re-parented to narwhal, then stays alive so that zombies would show.
const orphanScript = `i=0; while [ $i -lt 100 ]; do (sleep 0.01 &); i=$((i+1)); done; echo spawned; sleep 1000`

func TestOrphansReapedAsPID1(t *testing.T) {
	e2e.Require(t)
	p := e2e.Start(t, e2e.Options{Env: []string{"NARWHAL_LOG_LEVEL=debug"}}, "sh", "-c", orphanScript)
	p.WaitStdout("spawned", timeout)
	spawned := time.Now()
	var procs map[int]string
	// Left in the namespace: narwhal, sh and its sleep 1000; none of them a zombie.
	ok := e2e.Eventually(timeout, func() bool {
		procs, _ = e2e.NamespaceProcs(p.PID)
		return len(procs) == 3 && !hasZombie(procs) && e2e.Count(p.Stderr(), `"event":"orphan"`) == 100
	})
	if !ok {
		t.Fatalf("after %s: namespace holds %v, %d orphans logged; want 3 live processes, 100 orphans",
			timeout, procs, e2e.Count(p.Stderr(), `"event":"orphan"`))
	}
	t.Logf("100 orphans exited and were reaped %s after the last was spawned", time.Since(spawned).Round(time.Millisecond))
	p.Signal(syscall.SIGTERM)
	if got := p.Wait(timeout); got != 143 {
		t.Errorf("exit code = %d, want 143", got)
	}
}

func TestOrphansReapedAsSubreaper(t *testing.T) {
	e2e.Require(t)
	p := e2e.Start(t, e2e.Options{NoNS: true, Env: []string{"NARWHAL_LOG_LEVEL=debug"}}, "sh", "-c", orphanScript)
	p.WaitStdout("spawned", timeout)
	ok := e2e.Eventually(timeout, func() bool {
		return e2e.Count(p.Stderr(), `"event":"orphan"`) == 100 && !hasZombieChild(p.PID)
	})
	if !ok {
		t.Fatalf("as a subreaper narwhal logged %d orphans (want 100); zombie children: %v",
			e2e.Count(p.Stderr(), `"event":"orphan"`), hasZombieChild(p.PID))
	}
	p.Signal(syscall.SIGTERM)
	if got := p.Wait(timeout); got != 143 {
		t.Errorf("exit code = %d, want 143", got)
	}
}

func hasZombie(procs map[int]string) bool {
	for _, state := range procs {
		if state == "Z" {
			return true
		}
	}
	return false
}

func hasZombieChild(parent int) bool {
	for _, c := range e2e.Children(parent) {
		stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c))
		if s := string(stat); strings.Contains(s, ") Z ") {
			return true
		}
	}
	return false
}

func TestCommandThatCannotRun(t *testing.T) {
	e2e.Require(t)
	dir := t.TempDir()
	notExec := filepath.Join(dir, "not-executable")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\nexit 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		command string
		want    int
	}{
		{"no-such-command-xyz", 127},
		{filepath.Join(dir, "missing"), 127},
		{notExec, 126},
		{dir, 126},
	} {
		t.Run(filepath.Base(tc.command), func(t *testing.T) {
			p := e2e.Start(t, e2e.Options{}, tc.command)
			if got := p.Wait(timeout); got != tc.want {
				t.Errorf("exit code = %d, want %d", got, tc.want)
			}
			if !strings.Contains(p.Stderr(), tc.command) {
				t.Errorf("message does not name %s:\n%s", tc.command, p.Stderr())
			}
		})
	}
}

// TestBackgroundJobStopped: a shell that exits leaving a background job; narwhal stops the job
// (stop signal first) and exits with the shell's code, well within the stop timeout.
func TestBackgroundJobStopped(t *testing.T) {
	e2e.Require(t)
	const script = `sleep 1000 & echo "job $!"; exit 5`
	t.Run("pid1", func(t *testing.T) {
		p := e2e.Start(t, e2e.Options{}, "sh", "-c", script)
		start := time.Now()
		if got := p.Wait(timeout); got != 5 {
			t.Errorf("exit code = %d, want 5", got)
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Errorf("took %s; the job should have stopped on the stop signal, far within 25s", el)
		}
		if !strings.Contains(p.Stderr(), `"event":"cleanup"`) {
			t.Errorf("no cleanup logged:\n%s", p.Stderr())
		}
		t.Logf("exited %s after start", time.Since(start).Round(time.Millisecond))
	})
	t.Run("subreaper", func(t *testing.T) {
		p := e2e.Start(t, e2e.Options{NoNS: true}, "sh", "-c", script)
		var job int
		fmt.Sscanf(p.WaitStdout("job ", timeout), "job %d", &job)
		if got := p.Wait(timeout); got != 5 {
			t.Errorf("exit code = %d, want 5", got)
		}
		if err := unix.Kill(job, 0); err == nil {
			t.Errorf("background job %d still exists after narwhal exited", job)
		}
	})
	t.Run("ignores stop signal", func(t *testing.T) {
		// The job ignores SIGTERM; the shell exits only once the job has said so.
		armed := filepath.Join(t.TempDir(), "armed")
		p := e2e.Start(t, e2e.Options{Env: []string{"NARWHAL_STOP_TIMEOUT=300ms", "ARMED=" + armed}},
			"sh", "-c", `sh -c 'trap "" TERM; touch "$ARMED"; exec sleep 1000' &
while [ ! -e "$ARMED" ]; do sleep 0.01; done; exit 6`)
		if got := p.Wait(timeout); got != 6 {
			t.Errorf("exit code = %d, want 6", got)
		}
		p.WaitStderr(`"signal":"SIGKILL"`, time.Second)
	})
}

func TestSignalGroup(t *testing.T) {
	e2e.Require(t)
	p := e2e.Start(t, e2e.Options{Env: []string{"NARWHAL_SIGNAL_GROUP=true"}}, "sh", "-c",
		`trap 'echo outer got USR1' USR1
sh -c 'trap "echo grandchild got USR1; exit 0" USR1; echo ready; while :; do sleep 1000 & wait $!; done'`)
	p.WaitStdout("ready", timeout)
	p.Signal(syscall.SIGUSR1)
	p.WaitStdout("grandchild got USR1", timeout)
	if got := p.Wait(timeout); got != 0 {
		t.Errorf("exit code = %d, want 0", got)
	}
}

func TestSignalRewriteAndDrop(t *testing.T) {
	e2e.Require(t)
	t.Run("TERM:USR1", func(t *testing.T) {
		p := e2e.Start(t, e2e.Options{Env: []string{"NARWHAL_SIGNAL_REWRITE=TERM:USR1"}}, "sh", "-c", trapAll)
		p.WaitStdout("ready", timeout)
		p.Signal(syscall.SIGTERM)
		p.WaitStdout("got USR1", timeout)
		if strings.Contains(p.Stdout(), "got TERM") {
			t.Errorf("the child got TERM as well as USR1:\n%s", p.Stdout())
		}
	})
	t.Run("USR1:0", func(t *testing.T) {
		p := e2e.Start(t, e2e.Options{Env: []string{"NARWHAL_SIGNAL_REWRITE=USR1:0"}}, "sh", "-c", trapAll)
		p.WaitStdout("ready", timeout)
		p.Signal(syscall.SIGUSR1)
		p.Signal(syscall.SIGHUP)
		p.WaitStdout("got HUP", timeout)
		if strings.Contains(p.Stdout(), "got USR1") {
			t.Errorf("USR1 was forwarded despite USR1:0:\n%s", p.Stdout())
		}
	})
	t.Run("EXIT_REMAP 143:0", func(t *testing.T) {
		p := e2e.Start(t, e2e.Options{Env: []string{"NARWHAL_EXIT_REMAP=143:0"}}, "sleep", "1000")
		p.WaitStderr(`"event":"start"`, timeout)
		p.Signal(syscall.SIGTERM)
		if got := p.Wait(timeout); got != 0 {
			t.Errorf("exit code = %d, want 0 (143 remapped)", got)
		}
	})
}

// TestSignalWhileChildStarts sends SIGTERM the moment narwhal's child process exists, before
// it has exec'd its command: narwhal must have subscribed to signals before forking, and must
// forward the signal to the child once it is known, so the child dies of it (143).
func TestSignalWhileChildStarts(t *testing.T) {
	e2e.Require(t)
	for i := 0; i < earlyRuns; i++ {
		p := e2e.Start(t, e2e.Options{}, "sleep", "1000")
		ok := e2e.Eventually(5*time.Second, func() bool { return len(e2e.Children(p.PID)) > 0 })
		if !ok {
			t.Fatal("narwhal never started its child")
		}
		p.Signal(syscall.SIGTERM)
		sentAfter := time.Since(p.Started)
		if got := p.Wait(timeout); got != 143 {
			t.Fatalf("run %d: SIGTERM sent %s after start: exit code %d, want 143 (child killed by the forwarded SIGTERM)",
				i, sentAfter, got)
		}
		if i == 0 {
			t.Logf("SIGTERM sent %s after start, as the child was being created, and delivered", sentAfter.Round(time.Microsecond))
		}
	}
}

func TestStdinAndWorkingDirectory(t *testing.T) {
	e2e.Require(t)
	t.Run("stdin", func(t *testing.T) {
		p := e2e.Start(t, e2e.Options{Stdin: strings.NewReader("echo from-stdin; exit 3\n")}, "sh")
		if got := p.Wait(timeout); got != 3 {
			t.Errorf("exit code = %d, want 3", got)
		}
		if !strings.Contains(p.Stdout(), "from-stdin") {
			t.Errorf("stdout = %q", p.Stdout())
		}
	})
	t.Run("working directory", func(t *testing.T) {
		dir, _ := filepath.EvalSymlinks(t.TempDir())
		p := e2e.Start(t, e2e.Options{Dir: dir}, "pwd")
		if got := p.Wait(timeout); got != 0 {
			t.Errorf("exit code = %d", got)
		}
		if got := strings.TrimSpace(p.Stdout()); got != dir {
			t.Errorf("child ran in %q, want %q", got, dir)
		}
	})
}

// TestInvalidEnvironment: each malformed value exits 78 with a message naming the variable and
// the value, and starts nothing (the command would create a file).
func TestInvalidEnvironment(t *testing.T) {
	e2e.Require(t)
	cases := []string{
		"NARWHAL_WORKERS=abc", "NARWHAL_WORKERS=0", "NARWHAL_WORKERS=-3",
		"NARWHAL_LISTEN=http://x:80", "NARWHAL_LISTEN=:99999", "NARWHAL_BACKLOG=0",
		"NARWHAL_SOCKET_MODE=share", "NARWHAL_READY=maybe", "NARWHAL_READY_TIMEOUT=0", "NARWHAL_CPUS=two",
		"NARWHAL_ROLLOUT_SURGE=0", "NARWHAL_RESTART_DELAY=fast", "NARWHAL_STOP_TIMEOUT=-1s",
		"NARWHAL_STOP_SIGNAL=SIGFOO", "NARWHAL_MAX_MEMORY=lots", "NARWHAL_MAX_LIFETIME=1 day",
		"NARWHAL_SIGNAL_GROUP=yes-please", "NARWHAL_SIGNAL_REWRITE=TERM", "NARWHAL_SIGNAL_REWRITE=TERM:NOPE",
		"NARWHAL_EXIT_REMAP=143:999", "NARWHAL_EXIT_REMAP=x:0", "NARWHAL_METRICS_ADDR=9090",
		"NARWHAL_LOG_FORMAT=xml", "NARWHAL_LOG_LEVEL=loud", "NARWHAL_MIN_READY=-1",
		"NARWHAL_WORKER_USER=no-such-user-xyz", "NARWHAL_PRE_START=echo 'unterminated",
		"NARWHAL_DRAIN_DELAY=soon", "NARWHAL_WORKER_OUTPUT=yaml", "NARWHAL_WATCH=/no/such/config",
	}
	for _, kv := range cases {
		t.Run(kv, func(t *testing.T) {
			marker := filepath.Join(t.TempDir(), "started")
			p := e2e.Start(t, e2e.Options{Env: []string{kv}}, "touch", marker)
			if got := p.Wait(timeout); got != 78 {
				t.Errorf("exit code = %d, want 78", got)
			}
			name, value, _ := strings.Cut(kv, "=")
			if msg := p.Stderr(); !strings.Contains(msg, name) || !strings.Contains(msg, value) || !strings.Contains(msg, "want") {
				t.Errorf("message does not name %s, the value %q and what is accepted: %q", name, value, msg)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Error("the command ran despite the invalid environment")
			}
		})
	}
	if len(cases) < 20 {
		t.Fatalf("only %d cases", len(cases))
	}
}

func TestUsageErrors(t *testing.T) {
	e2e.Require(t)
	for _, args := range [][]string{{}, {"--"}, {"--bogus"}, {"-h", "sh"}, {"--version", "extra"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			p := e2e.Start(t, e2e.Options{NoNS: true}, args...)
			if got := p.Wait(timeout); got != 2 {
				t.Errorf("exit code = %d, want 2", got)
			}
			if !strings.Contains(p.Stderr(), "usage:") {
				t.Errorf("no usage on stderr: %q", p.Stderr())
			}
		})
	}
}

var earlyRuns = envInt("NARWHAL_EARLY_RUNS", 20)

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return n
	}
	return def
}

// TestTerminalForeground: with stdin a terminal whose foreground group is narwhal's, the child's
// own process group becomes the foreground (so Ctrl-C reaches it directly).
func TestTerminalForeground(t *testing.T) {
	e2e.Require(t)
	if _, err := exec.LookPath("script"); err != nil {
		t.Skip("script (util-linux) is not installed")
	}
	cmd := exec.Command("script", "-qec",
		e2e.Binary(t)+` -- sh -c 'echo "pgid=$(ps -o pgid= -p $$ | tr -d " ") tpgid=$(ps -o tpgid= -p $$ | tr -d " ")"'`, "/dev/null")
	cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		cmd.Process.Kill()
		t.Fatal("script did not finish")
	}
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var pgid, tpgid string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "pgid=") {
			fmt.Sscanf(strings.TrimSpace(line), "pgid=%s tpgid=%s", &pgid, &tpgid)
		}
	}
	if pgid == "" || pgid != tpgid {
		t.Errorf("child's process group %q, terminal's foreground group %q; want equal:\n%s", pgid, tpgid, out)
	}
}

// TestJobControlSignalsIgnored: in init mode narwhal ignores SIGTTIN and SIGTTOU, as tini does,
// so PID 1 never stops, nor loops on a restarted call, on its own terminal; the child gets them
// at their default action. They used to be caught, which is neither.
func TestJobControlSignalsIgnored(t *testing.T) {
	e2e.Require(t)
	p := e2e.Start(t, e2e.Options{}, "sleep", "1000")
	const jobControl = 1<<(unix.SIGTTIN-1) | 1<<(unix.SIGTTOU-1)
	mask := func(pid int, field string) uint64 {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, field+":"); ok {
				n, _ := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
				return n
			}
		}
		return 0
	}
	if !e2e.Eventually(timeout, func() bool { return mask(p.PID, "SigIgn")&jobControl == jobControl }) {
		t.Fatalf("narwhal's SigIgn %x lacks SIGTTIN and SIGTTOU", mask(p.PID, "SigIgn"))
	}
	if c := mask(p.PID, "SigCgt"); c&jobControl != 0 {
		t.Errorf("narwhal still catches SIGTTIN/SIGTTOU (SigCgt %x)", c)
	}
	children := e2e.Children(p.PID)
	if len(children) != 1 {
		t.Fatalf("narwhal has children %v, want the one sleep", children)
	}
	if ig := mask(children[0], "SigIgn"); ig&jobControl != 0 {
		t.Errorf("the child ignores SIGTTIN/SIGTTOU (SigIgn %x); it should start with their default action", ig)
	}
}

// TestStatusShowsChildMemory: --status in init mode, with no metrics port (the tini drop-in),
// reports the child's memory, read when asked rather than every second for nobody.
func TestStatusShowsChildMemory(t *testing.T) {
	e2e.Require(t)
	p := e2e.Start(t, e2e.Options{}, "sleep", "1000")
	p.WaitStderr(`"event":"start"`, timeout)
	code, out, errOut := p.Client(-1, "--status")
	if code != 0 {
		t.Fatalf("--status exit %d: %s", code, errOut)
	}
	var st struct {
		Mode    string `json:"mode"`
		Workers []struct {
			PID    int   `json:"pid"`
			Memory int64 `json:"memory_bytes"`
		} `json:"workers"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("--status printed %q: %v", out, err)
	}
	if st.Mode != "init" || len(st.Workers) != 1 || st.Workers[0].Memory < 64<<10 {
		t.Errorf("--status = %s; want init mode and the sleeping child's memory", out)
	}
}

// TestCleanExitIsNeverAFailure: when the child exits 0, narwhal exits 0, every time. The run
// group's reaper used to report its own stop, which could reach the group before the mode
// runner's result and turn a clean exit into "a part of narwhal failed", exit 1.
func TestCleanExitIsNeverAFailure(t *testing.T) {
	e2e.Require(t)
	for i := 0; i < 60; i++ {
		p := e2e.Start(t, e2e.Options{NoNS: true}, "true")
		if code := p.Wait(timeout); code != 0 || strings.Contains(p.Stderr(), `"event":"failed"`) {
			t.Fatalf("run %d: exit %d after the child exited 0:\n%s", i, code, p.Stderr())
		}
	}
}
