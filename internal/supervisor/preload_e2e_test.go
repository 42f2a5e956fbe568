//go:build e2e

package supervisor_test

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/narwhal-init/narwhal/internal/e2e"
	"github.com/narwhal-init/narwhal/internal/loadgen"
)

// preloadBoot is how long the example app takes to load: a forked worker is ready well before
// it, an exec'd one never is.
const preloadBoot = 2 * time.Second

// event is one line of narwhal's log, as far as these tests read it.
type event struct {
	Event      string  `json:"event"`
	PID        int     `json:"pid"`
	Slot       int     `json:"slot"`
	Generation int     `json:"generation"`
	Seconds    float64 `json:"seconds"`
}

func events(p *e2e.Proc, name string) []event {
	var out []event
	for _, line := range strings.Split(p.Stderr(), "\n") {
		var ev event
		if json.Unmarshal([]byte(line), &ev) == nil && ev.Event == name {
			out = append(out, ev)
		}
	}
	return out
}

// hostPID maps a PID in narwhal's namespace (as its log shows it) to the same process's PID
// here, among narwhal's children.
func hostPID(t *testing.T, p *e2e.Proc, nsPID int) int {
	t.Helper()
	for _, pid := range e2e.Children(p.PID) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) == 3 && f[0] == "NSpid:" && f[2] == strconv.Itoa(nsPID) {
				return pid
			}
		}
	}
	t.Fatalf("no child of narwhal has PID %d in its namespace", nsPID)
	return 0
}

// checkForked fails the test for a worker ready after as long as the app takes to load:
// it was not forked from the template.
func checkForked(t *testing.T, ready []event) {
	t.Helper()
	for _, ev := range ready {
		if ev.Seconds >= preloadBoot.Seconds() {
			t.Errorf("worker %d (slot %d) was ready %.2fs after start, as long as a boot: not forked", ev.PID, ev.Slot, ev.Seconds)
		}
	}
}

// TestPreloadRollingRestarts: with NARWHAL_PRELOAD the servers people run serve from forked
// workers (each its own LISTEN_PID and slot, narwhal's child), and ten rolling restarts under
// load lose no request.
func TestPreloadRollingRestarts(t *testing.T) {
	e2e.Require(t)
	for _, lang := range []string{"gunicorn", "uvicorn", "puma"} {
		t.Run(lang, func(t *testing.T) {
			const n, rollouts = 4, 10
			p, url := pool(t, []string{"NARWHAL_PRELOAD=true", "NARWHAL_WORKERS=4", "BOOT_DELAY=" + preloadBoot.String()},
				e2e.PreloadServer(t, lang)...)
			waitEvents(t, p, "ready", n)
			checkForked(t, events(p, "ready"))
			if got := len(e2e.Children(p.PID)); got != n+1 {
				t.Errorf("narwhal has %d children, want %d workers and the template", got, n)
			}
			slots := map[string]bool{}
			for i := 0; i < 200 && len(slots) < n; i++ {
				h := getHello(t, url)
				// gunicorn and puma take LISTEN_PID out of the environment once they have
				// checked it (gunicorn would bind 127.0.0.1:8000 instead, were it wrong).
				if h.ListenPID != "" && h.ListenPID != strconv.Itoa(h.PID) {
					t.Fatalf("worker %d has LISTEN_PID=%q", h.PID, h.ListenPID)
				}
				if h.Generation != "1" {
					t.Fatalf("worker %d has NARWHAL_GENERATION=%q", h.PID, h.Generation)
				}
				slots[h.WorkerID] = true
			}
			if len(slots) != n {
				t.Errorf("200 requests reached the slots %v, want %d distinct NARWHAL_WORKER_IDs", slots, n)
			}

			load := loadgen.Start(url, 4, 2)
			start := time.Now()
			for i := 1; i <= rollouts; i++ {
				p.Signal(syscall.SIGHUP)
				waitEventsFor(t, p, "rollout_completed", i, rolloutTimeout)
			}
			took := time.Since(start)
			load.Stop()
			if f := load.Failed.Load(); f != 0 {
				t.Errorf("%d of %d requests failed:\n%s", f, load.Sent.Load(), load.Errors())
			}
			checkForked(t, events(p, "ready"))
			if !e2e.Eventually(timeout, func() bool { return e2e.LiveChildren(p.PID) == n+1 }) {
				t.Fatalf("%d children after the last rollout, want %d workers and the template", e2e.LiveChildren(p.PID), n)
			}
			for i := 0; i < 20; i++ {
				if h := getHello(t, url); h.Generation != strconv.Itoa(1+rollouts) {
					t.Fatalf("after %d rollouts a worker of generation %s answered", rollouts, h.Generation)
				}
			}
			t.Logf("%s with preload: %d rollouts of %d workers in %s (%.2fs each), %d requests sent, %d failed",
				lang, rollouts, n, took.Round(time.Millisecond), took.Seconds()/rollouts, load.Sent.Load(), load.Failed.Load())
		})
	}
}

// TestPreloadTemplateKilled: a template killed under load is started again, its workers serve
// on untouched, and a worker crash afterwards is forked from the new template, without a boot.
func TestPreloadTemplateKilled(t *testing.T) {
	e2e.Require(t)
	p, url := pool(t, []string{"NARWHAL_PRELOAD=true", "NARWHAL_WORKERS=2", "BOOT_DELAY=" + preloadBoot.String()},
		e2e.PreloadServer(t, "gunicorn")...)
	waitEvents(t, p, "ready", 2)
	load := loadgen.Start(url, 3, 1)
	template := hostPID(t, p, events(p, "template_start")[0].PID)
	syscall.Kill(template, syscall.SIGKILL)
	waitEvents(t, p, "template_ready", 2)
	load.Stop()
	if f := load.Failed.Load(); f != 0 {
		t.Errorf("%d of %d requests failed:\n%s", f, load.Sent.Load(), load.Errors())
	}
	// A worker killed under load would lose what it was answering: the crash comes after.
	ready := events(p, "ready")
	victim := hostPID(t, p, ready[0].PID)
	syscall.Kill(victim, syscall.SIGKILL)
	waitEvents(t, p, "ready", 3)
	if n := e2e.Count(p.Stderr(), `"event":"stop"`); n != 0 {
		t.Errorf("%d workers stopped when their template died", n)
	}
	code, out, errOut := p.Client(-1, "--status")
	var st struct {
		Workers   []struct{ PID int }
		Templates []struct {
			PID        int
			Generation int
			State      string
		}
	}
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil {
		t.Fatalf("--status: %d %q %q: %v", code, out, errOut, err)
	}
	restarted := events(p, "template_start")[1].PID
	if len(st.Templates) != 1 || st.Templates[0].PID != restarted || st.Templates[0].State != "ready" || len(st.Workers) != 2 {
		t.Errorf("--status lists %+v and %d workers, want the restarted template %d, ready, apart from 2 workers", st.Templates, len(st.Workers), restarted)
	}
	refork := events(p, "ready")[2]
	checkForked(t, []event{refork})
	t.Logf("template killed: %d requests, %d failed; the crashed worker was forked again, ready in %.3fs",
		load.Sent.Load(), load.Failed.Load(), refork.Seconds)
}

// TestPreloadBrokenReleases: a release that raises at import, and one that hangs at import,
// abort their rollouts with every old worker serving; the fix deploys after.
func TestPreloadBrokenReleases(t *testing.T) {
	e2e.Require(t)
	cmd := e2e.PreloadServer(t, "gunicorn")
	dir := t.TempDir()
	app := filepath.Join(dir, "app.py")
	chdir := -1
	for i, arg := range cmd {
		if arg == "--chdir" {
			chdir = i + 1
		}
	}
	good, err := os.ReadFile(filepath.Join(cmd[chdir], "app.py"))
	if err != nil {
		t.Fatal(err)
	}
	write := func(code []byte) {
		if err := os.WriteFile(app, code, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(good)
	cmd[chdir] = dir // the release on disk
	p, url := pool(t, []string{"NARWHAL_PRELOAD=true", "NARWHAL_WORKERS=2", "NARWHAL_READY_TIMEOUT=3s"}, cmd...)
	waitEvents(t, p, "ready", 2)
	before := map[int]bool{}
	for i := 0; i < 100 && len(before) < 2; i++ {
		before[getHello(t, url).PID] = true
	}
	for i, release := range []string{
		"raise RuntimeError('this release is broken at import')\n",
		"import time\ntime.sleep(1000)\n",
	} {
		write([]byte(release))
		load := loadgen.Start(url, 3, 1)
		p.Signal(syscall.SIGHUP)
		waitEvents(t, p, "rollout_aborted", i+1)
		load.Stop()
		if f := load.Failed.Load(); f != 0 {
			t.Errorf("release %d: %d of %d requests failed:\n%s", i, f, load.Sent.Load(), load.Errors())
		}
		for j := 0; j < 20; j++ {
			if h := getHello(t, url); !before[h.PID] {
				t.Fatalf("release %d: worker %d of generation %s answered, want one of %v", i, h.PID, h.Generation, before)
			}
		}
	}
	if n := e2e.Count(p.Stderr(), `"event":"stop"`); n != 0 {
		t.Errorf("%d old workers stopped for releases that never loaded", n)
	}
	if !strings.Contains(p.Stderr(), "NARWHAL_PRELOAD") {
		t.Error("no log line names NARWHAL_PRELOAD for a template that never reached its fork point")
	}
	write(good)
	p.Signal(syscall.SIGHUP)
	waitEvents(t, p, "rollout_completed", 1)
	if h := getHello(t, url); before[h.PID] {
		t.Errorf("an old worker answered after the fixed release rolled out")
	}
}

// TestPreloadWithoutForkPoint: a COMMAND that never calls the fork point is a failed start
// whose message names NARWHAL_PRELOAD, never a silent hang.
func TestPreloadWithoutForkPoint(t *testing.T) {
	e2e.Require(t)
	for name, cmd := range map[string][]string{"exits": {"true"}, "hangs": {"sleep", "1000"}} {
		t.Run(name, func(t *testing.T) {
			p, _ := pool(t, []string{"NARWHAL_PRELOAD=true", "NARWHAL_WORKERS=1", "NARWHAL_READY_TIMEOUT=1s"}, cmd...)
			waitEvents(t, p, "template_failed", 1)
			line := p.WaitStderr(`"event":"template_failed"`, timeout)
			if !strings.Contains(line, "NARWHAL_PRELOAD") {
				t.Errorf("the failure does not name NARWHAL_PRELOAD: %s", line)
			}
		})
	}
}

// TestPreloadBalancedAndLabelled: in balanced mode each forked worker serves its own slot's
// socket, and with NARWHAL_WORKER_OUTPUT=json the template's lines and each worker's are
// labelled apart.
func TestPreloadBalancedAndLabelled(t *testing.T) {
	e2e.Require(t)
	cmd := append(e2e.PreloadServer(t, "gunicorn"), "--access-logfile", "-")
	p, url := pool(t, []string{"NARWHAL_PRELOAD=true", "NARWHAL_WORKERS=3", "NARWHAL_SOCKET_MODE=balanced",
		"NARWHAL_WORKER_OUTPUT=json"}, cmd...)
	waitEvents(t, p, "ready", 3)
	if strings.Contains(p.Stderr(), "running as inherit") {
		t.Skip("balanced mode is not available here")
	}
	slots := map[string]int{}
	for i := 0; i < 120; i++ {
		slots[getHello(t, url).WorkerID]++
	}
	if len(slots) != 3 {
		t.Errorf("new connections reached the slots %v, want all 3", slots)
	}
	if !strings.Contains(p.Stderr()+p.Stdout(), `"worker":{"template":true,"generation":1,`) {
		t.Error("no output line labelled as the template's")
	}
	ready := events(p, "ready")
	want := fmt.Sprintf(`"worker":{"slot":%d,"generation":1,"pid":%d}`, ready[0].Slot, ready[0].PID)
	if !e2e.Eventually(timeout, func() bool { return strings.Contains(p.Stdout()+p.Stderr(), want) }) {
		t.Errorf("no output line labelled %s", want)
	}
}

// TestPreloadGunicornTimeout: with no gunicorn master, NARWHAL_WORKER_TIMEOUT does --timeout's
// job: an idle worker's heartbeat reaches narwhal as WATCHDOG=1, and a sync worker held by a
// client that never sends its request is aborted and forked again.
func TestPreloadGunicornTimeout(t *testing.T) {
	e2e.Require(t)
	const watchdog = 2 * time.Second
	p, url := pool(t, []string{"NARWHAL_PRELOAD=true", "NARWHAL_WORKERS=1", "NARWHAL_WORKER_TIMEOUT=" + watchdog.String()},
		e2e.PreloadServer(t, "gunicorn")...)
	waitEvents(t, p, "ready", 1)
	time.Sleep(2 * watchdog) // idle: only the heartbeat keeps the watchdog quiet
	getHello(t, url)
	if n := len(events(p, "watchdog")); n != 0 {
		t.Fatalf("the watchdog fired %d times for an idle worker: its heartbeat did not reach narwhal", n)
	}
	silent, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	waitEvents(t, p, "watchdog", 1)
	waitEvents(t, p, "ready", 2)
	checkForked(t, events(p, "ready")[1:])
	if h := getHello(t, url); h.PID == events(p, "ready")[0].PID {
		t.Errorf("the held worker %d still answers", h.PID)
	}
}
