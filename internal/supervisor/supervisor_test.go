package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/narwhal-init/narwhal/config"
	"github.com/narwhal-init/narwhal/internal/pool"
	"github.com/narwhal-init/narwhal/internal/proc"
	"github.com/narwhal-init/narwhal/internal/status"
	"github.com/narwhal-init/narwhal/internal/watch"
	"github.com/narwhal-init/narwhal/internal/worker"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

type signalCall struct {
	pid   int
	sig   syscall.Signal
	group bool
}

// fakeWorld is the supervisor's world in a test: a clock the test moves, spawns that only count,
// a process table the test writes, and accept detection that reports what the test says.
type fakeWorld struct {
	now       time.Time
	next      int
	spawned   []int
	signals   []signalCall
	procs     map[int]proc.Stat
	accepting map[int]bool
	parents   map[int]int
	scans     int
	groups    map[int]bool // process groups with members
	oomKills  uint64       // the cgroup's count of OOM kills
	waiting   bool         // a connection waits in an accept queue
}

func (f *fakeWorld) world() *world {
	return &world{
		now: func() time.Time { return f.now },
		spawn: func(slot, gen int) (int, error) {
			f.next++
			pid := 100 + f.next
			f.spawned = append(f.spawned, pid)
			f.procs[pid] = proc.Stat{PPID: 1, PGRP: pid}
			return pid, nil
		},
		signal: func(pid int, sig syscall.Signal, group bool) bool {
			f.signals = append(f.signals, signalCall{pid, sig, group})
			return !group || f.groups[pid]
		},
		scan: func() *proc.Snapshot {
			f.scans++
			return proc.NewSnapshot(f.procs)
		},
		oomKills: func() (uint64, bool) { return f.oomKills, true },
		queues: func() []status.Listener {
			l := status.Listener{Name: "listen0", Network: "tcp", Port: 8080, Backlog: 1024, QueueKnown: true}
			if f.waiting {
				l.Queued = 1
			}
			return []status.Listener{l}
		},
		container: func() proc.Container {
			return proc.Container{Memory: proc.Memory{Limit: 1 << 30, WorkingSet: 1 << 20}, MemoryKnown: true}
		},
		accepting: func(snap *proc.Snapshot, pids []int) []int {
			var out []int
			for _, pid := range pids {
				if f.accepting[pid] {
					out = append(out, pid)
				}
			}
			return out
		},
		parent: func(pid int) (int, error) {
			if p, ok := f.parents[pid]; ok {
				return p, nil
			}
			return 0, os.ErrNotExist
		},
	}
}

func (f *fakeWorld) signalled(pid int, sig syscall.Signal) bool {
	for _, s := range f.signals {
		if s.pid == pid && s.sig == sig {
			return true
		}
	}
	return false
}

// testConfig loads the environment vars (NAME=value, NARWHAL_ prefix implied) as narwhal would.
func testConfig(t *testing.T, vars ...string) *config.Config {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "NARWHAL_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	for _, kv := range append([]string{"WORKERS=2"}, vars...) {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv("NARWHAL_"+k, v)
	}
	cfg, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// supervised is a supervisor over a fakeWorld, whose log lines the test can read.
type supervised struct {
	*Supervisor
	f   *fakeWorld
	log *bytes.Buffer
}

func newSupervised(t *testing.T, vars ...string) *supervised {
	t.Helper()
	cfg := testConfig(t, vars...)
	f := &fakeWorld{now: t0, procs: map[int]proc.Stat{}, accepting: map[int]bool{}, parents: map[int]int{}, groups: map[int]bool{}}
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := f.world()
	if cfg.Ready != "auto" {
		e.accepting = nil
	}
	s := newSupervisor(cfg, log, e, newInbox(), status.New(1, 0), cfg.Workers.Min, cfg.Workers.Max)
	return &supervised{Supervisor: s, f: f, log: &buf}
}

// at runs one pass at now, with ev, and returns when the loop would wake next.
func (s *supervised) at(now time.Time, ev any) time.Time {
	s.f.now = now
	return s.pass(now, ev)
}

func (s *supervised) state(pid int) pool.State {
	for _, w := range s.m.Workers() {
		if w.PID == pid {
			return w.State
		}
	}
	return -1
}

// TestDetectionNotStarvedByEvents: a stream of events faster than the detection period (here a
// status message every 5 ms) must not postpone the /proc read that sees a worker accept. The
// loop used to reset its detection timer on every event, so it never fired.
func TestDetectionNotStarvedByEvents(t *testing.T) {
	s := newSupervised(t, "WORKERS=1")
	now := t0
	s.at(now, startEvent{})
	pid := s.f.spawned[0]
	s.f.accepting[pid] = true
	scans := s.f.scans
	for i := 0; i < 200 && s.state(pid) != pool.Ready; i++ {
		now = now.Add(5 * time.Millisecond)
		s.at(now, worker.Message{Sender: pid, FromPipe: true, Text: "STATUS=warming up"})
	}
	if s.state(pid) != pool.Ready {
		t.Fatalf("worker seen accepting, yet not ready after %s of events every 5ms", now.Sub(t0))
	}
	if waited := now.Sub(t0); waited > detectEvery {
		t.Errorf("ready %s after it accepted, want within %s", waited, detectEvery)
	}
	// And the flood is not a scan per event either.
	s.f.accepting[pid] = false
	before := s.f.scans
	for i := 0; i < 100; i++ {
		now = now.Add(time.Millisecond)
		s.at(now, worker.Message{Sender: pid, FromPipe: true, Text: "WATCHDOG=1"})
	}
	if n := s.f.scans - before; n > 1 {
		t.Errorf("%d scans of /proc in 100 ms of events with every worker ready, want at most 1 (one per %s)", n, scanEvery)
	}
	if scans == 0 {
		t.Error("no scan at start")
	}
}

// TestWakeIsTheEarliestDeadline: the wake time a pass returns is the machine's next deadline,
// taken at the same instant it ran the timers, so a deadline is never skipped between two
// readings of the clock; waking then handles it.
func TestWakeIsTheEarliestDeadline(t *testing.T) {
	s := newSupervised(t, "WORKERS=1", "READY=delay", "READY_DELAY=300ms")
	wake := s.at(t0, startEvent{})
	if want := t0.Add(300 * time.Millisecond); !wake.Equal(want) {
		t.Fatalf("wake %s after start, want the ready delay's %s", wake.Sub(t0), want.Sub(t0))
	}
	pid := s.f.spawned[0]
	// An event 1ns before the deadline must still wake the loop at the deadline.
	wake = s.at(wake.Add(-time.Nanosecond), worker.Message{Sender: pid, FromPipe: true, Text: "STATUS=x"})
	if want := t0.Add(300 * time.Millisecond); !wake.Equal(want) {
		t.Fatalf("wake %v after an event just before the deadline, want %v", wake.Sub(t0), want.Sub(t0))
	}
	s.at(wake, nil)
	if s.state(pid) != pool.Ready {
		t.Fatal("the ready delay passed, the worker is not ready")
	}
	// Idle, the loop still wakes for its periodic scan, never later.
	if wake := s.at(wake, nil); wake.Sub(s.f.now) > scanEvery {
		t.Errorf("idle wake in %s, want at most %s", wake.Sub(s.f.now), scanEvery)
	}
}

func TestSignalsSteerThePool(t *testing.T) {
	s := newSupervised(t, "WORKERS=2", "READY=notify")
	now := t0
	s.at(now, startEvent{})
	for _, pid := range s.f.spawned {
		s.at(now, worker.Message{Sender: pid, FromPipe: true, Text: "READY=1"})
	}
	s.at(now, syscall.SIGUSR1)
	for _, pid := range s.f.spawned[:2] {
		if !s.f.signalled(pid, syscall.SIGUSR1) {
			t.Errorf("SIGUSR1 did not reach worker %d", pid)
		}
	}
	s.at(now, syscall.SIGHUP)
	if s.m.Generation() != 2 || len(s.f.spawned) != 3 {
		t.Errorf("after SIGHUP: generation %d, spawned %d; want 2 and one replacement (surge 1)", s.m.Generation(), len(s.f.spawned))
	}
	s.at(now, syscall.SIGTTIN)
	if s.m.Desired() != 3 {
		t.Errorf("after SIGTTIN desired %d, want 3", s.m.Desired())
	}
	s.at(now, syscall.SIGTTOU)
	if s.m.Desired() != 2 {
		t.Errorf("after SIGTTOU desired %d, want 2", s.m.Desired())
	}
	s.at(now, syscall.SIGWINCH)
	if s.m.Desired() != 0 {
		t.Errorf("after SIGWINCH desired %d, want 0", s.m.Desired())
	}
	s.at(now, syscall.SIGTERM)
	if !s.m.Stopping() {
		t.Error("SIGTERM did not start a graceful stop")
	}
	sigs := s.board.Signals()
	for _, name := range []string{"SIGUSR1", "SIGHUP", "SIGTTIN", "SIGTTOU", "SIGWINCH", "SIGTERM"} {
		if sigs[name] != 1 {
			t.Errorf("board counted %s %d times, want 1", name, sigs[name])
		}
	}
}

func TestNotifyFromDescendantsOnly(t *testing.T) {
	s := newSupervised(t, "WORKERS=1", "READY=notify")
	s.at(t0, startEvent{})
	w := s.f.spawned[0]
	s.f.parents[500] = 400 // a grandchild of the worker
	s.f.parents[400] = w
	s.f.parents[600] = 1 // a stranger
	s.at(t0, worker.Message{Sender: 600, Text: "READY=1"})
	if s.state(w) == pool.Ready {
		t.Fatal("a stranger's READY=1 made the worker ready")
	}
	s.at(t0, worker.Message{Sender: 500, Text: "READY=1"})
	if s.state(w) != pool.Ready {
		t.Fatal("READY=1 from the worker's grandchild did not make it ready")
	}
	s.at(t0, worker.Message{Sender: w, FromPipe: true, Text: "WATCHDOG=trigger"})
	if len(s.f.spawned) != 2 {
		t.Errorf("WATCHDOG=trigger: spawned %d, want a replacement", len(s.f.spawned))
	}
}

// TestDroppedNotifyLogIsBounded: a process that floods the notify socket with messages that are
// dropped gets one warning per period, with a count of those not logged.
func TestDroppedNotifyLogIsBounded(t *testing.T) {
	s := newSupervised(t, "WORKERS=1", "READY=notify")
	s.at(t0, startEvent{})
	now := t0
	for i := 0; i < 1000; i++ {
		now = now.Add(time.Millisecond)
		s.at(now, worker.Message{Sender: 999, Text: "READY=1"})
	}
	if n := strings.Count(s.log.String(), `"event":"notify_dropped"`); n != 1 {
		t.Fatalf("%d warnings for 1000 dropped messages in 1s, want 1", n)
	}
	s.at(now.Add(dropLogEvery), worker.Message{Sender: 999, Text: "garbage without equals"})
	if n := strings.Count(s.log.String(), `"event":"notify_dropped"`); n != 2 {
		t.Fatalf("%d warnings after the period, want 2", n)
	}
	if !strings.Contains(s.log.String(), `"suppressed":999`) {
		t.Errorf("the second warning does not count the 999 suppressed:\n%s", s.log.String())
	}
}

// TestMaxMemoryFromTheScan: a ready worker whose tree holds more than NARWHAL_MAX_MEMORY in the
// scan is replaced, replacement first; the figure reaches the board for metrics and --status.
func TestMaxMemoryFromTheScan(t *testing.T) {
	s := newSupervised(t, "WORKERS=1", "READY=notify", "MAX_MEMORY=100Mi")
	s.at(t0, startEvent{})
	pid := s.f.spawned[0]
	s.at(t0, worker.Message{Sender: pid, FromPipe: true, Text: "READY=1"})
	page := int64(os.Getpagesize())
	s.f.procs[pid] = proc.Stat{PPID: 1, PGRP: pid, RSSPages: (60 << 20) / page}
	s.f.procs[pid+1000] = proc.Stat{PPID: pid, PGRP: pid, RSSPages: (60 << 20) / page}
	s.at(t0.Add(scanEvery), nil)
	if len(s.f.spawned) != 2 {
		t.Fatalf("a worker tree at 120 MiB over a 100 MiB limit: spawned %d, want its replacement", len(s.f.spawned))
	}
	if s.f.signalled(pid, syscall.SIGTERM) {
		t.Error("the worker was stopped before its replacement was ready")
	}
	if got := s.board.Snapshot().Workers[0].Resident; got != 120<<20 {
		t.Errorf("board memory %d, want %d", got, 120<<20)
	}
}

// TestMaxMemoryIsProportional: NARWHAL_MAX_MEMORY and --status go by proportional memory where
// it can be read: a worker whose resident memory is over the limit only because it shares pages
// (with a template, with siblings) is left alone; one whose share is over it is replaced.
func TestMaxMemoryIsProportional(t *testing.T) {
	s := newSupervised(t, "WORKERS=1", "READY=notify", "MAX_MEMORY=100Mi")
	pss := int64(50 << 20)
	s.world.shares = func(pids []int) proc.Shares { return proc.Shares{Proportional: pss, Known: true} }
	s.at(t0, startEvent{})
	pid := s.f.spawned[0]
	s.at(t0, worker.Message{Sender: pid, FromPipe: true, Text: "READY=1"})
	s.f.procs[pid] = proc.Stat{PPID: 1, PGRP: pid, RSSPages: (120 << 20) / int64(os.Getpagesize())}
	s.at(t0.Add(scanEvery), nil)
	if len(s.f.spawned) != 1 {
		t.Fatal("a worker with 120 MiB resident but a 50 MiB share was replaced for NARWHAL_MAX_MEMORY=100Mi")
	}
	if w := s.board.Snapshot().Workers[0]; w.Proportional != pss || w.Resident != 120<<20 {
		t.Errorf("board: proportional %d, resident %d; want %d, %d", w.Proportional, w.Resident, pss, 120<<20)
	}
	pss = 150 << 20
	s.at(t0.Add(scanEvery+sharesEvery), nil)
	if len(s.f.spawned) != 2 {
		t.Errorf("a worker whose share is 150 MiB over a 100 MiB limit: spawned %d, want its replacement", len(s.f.spawned))
	}
}

// TestCPUPerSlotNeverDecreases: a slot's CPU counter keeps what its processes used when they
// are gone (a worker's child, the worker itself) and when a PID comes back as another process.
// It used to sum only the live processes, so a child's exit made it fall.
func TestCPUPerSlotNeverDecreases(t *testing.T) {
	s := newSupervised(t, "WORKERS=1", "READY=notify")
	s.at(t0, startEvent{})
	w := s.f.spawned[0]
	s.at(t0, worker.Message{Sender: w, FromPipe: true, Text: "READY=1"})
	now := t0
	last := 0.0
	step := func(what string) {
		t.Helper()
		now = now.Add(scanEvery)
		s.at(now, nil)
		got := s.board.Snapshot().SlotCPUSeconds[0]
		if got < last {
			t.Fatalf("%s: slot 0 CPU fell from %v to %v", what, last, got)
		}
		last = got
	}
	s.f.procs[w] = proc.Stat{PPID: 1, PGRP: w, UTime: 100}
	s.f.procs[w+1] = proc.Stat{PPID: w, PGRP: w, UTime: 300}
	step("worker and child")
	if last != 4 {
		t.Fatalf("CPU %v, want 4s (100 + 300 ticks)", last)
	}
	delete(s.f.procs, w+1)
	step("the child exited")
	s.f.procs[w+1] = proc.Stat{PPID: w, PGRP: w, UTime: 10}
	step("its PID reused by a new child")
	s.at(now, exitEvent{pid: w, code: 1})
	delete(s.f.procs, w)
	delete(s.f.procs, w+1)
	step("the worker crashed")
	if last != 4.1 {
		t.Errorf("CPU %v after every process is gone, want 4.1", last)
	}
}

// TestLeftoverGroupSeenGone: a pool stopping with a worker's leftovers is done once a scan sees
// their process group empty, not only at the stop timeout.
func TestLeftoverGroupSeenGone(t *testing.T) {
	s := newSupervised(t, "WORKERS=1", "READY=notify", "STOP_TIMEOUT=25s")
	s.at(t0, startEvent{})
	w := s.f.spawned[0]
	s.f.groups[w] = true
	s.f.procs[w+1] = proc.Stat{PPID: 1, PGRP: w}
	s.at(t0, syscall.SIGTERM)
	delete(s.f.procs, w)
	s.at(t0, exitEvent{pid: w, code: 0})
	if done, _ := s.m.Done(); done {
		t.Fatal("done with the worker's group still holding a process")
	}
	delete(s.f.procs, w+1)
	wake := s.at(t0.Add(time.Millisecond), nil)
	if wake.Sub(t0) > detectEvery {
		t.Errorf("next look at the leftovers in %s, want within %s", wake.Sub(t0), detectEvery)
	}
	s.at(wake, nil)
	if done, _ := s.m.Done(); !done {
		t.Errorf("not done %s after the leftover group emptied", wake.Sub(t0))
	}
}

// TestRunStopsOnContext runs the real loop over a fake world: the context's end is a graceful
// stop, and Run returns the pool's exit code once the workers are reaped.
func TestRunStopsOnContext(t *testing.T) {
	s := newSupervised(t, "WORKERS=2", "READY=notify")
	s.world.now = time.Now
	inner := s.world.signal
	s.world.signal = func(pid int, sig syscall.Signal, group bool) bool {
		if sig == syscall.SIGTERM && !group {
			go func() { s.events <- exitEvent{pid: pid, code: 0} }()
		}
		return inner(pid, sig, group)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- s.Run(ctx, make(chan os.Signal)) }()
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("Run returned %d, want 0", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

// TestReadyMessageInAuto: with NARWHAL_READY=auto a READY=1 counts only where narwhal cannot see
// the worker accept (no listener of its own): gunicorn's master sends it before its workers
// have loaded the app, so where narwhal can watch the socket, it waits to see the accept.
func TestReadyMessageInAuto(t *testing.T) {
	s := newSupervised(t, "WORKERS=1", "LISTEN=127.0.0.1:8080") // never bound: the world is fake
	s.at(t0, startEvent{})
	pid := s.f.spawned[0]
	s.at(t0, worker.Message{Sender: pid, FromPipe: true, Text: "READY=1"})
	if s.state(pid) == pool.Ready {
		t.Fatal("READY=1 made a worker ready that narwhal can watch accepting")
	}
	s.f.accepting[pid] = true
	s.at(t0.Add(detectEvery), nil)
	if s.state(pid) != pool.Ready {
		t.Fatal("seen accepting, not ready")
	}

	s = newSupervised(t, "WORKERS=1")
	s.at(t0, startEvent{})
	pid = s.f.spawned[0]
	s.at(t0, worker.Message{Sender: pid, FromPipe: true, Text: "READY=1"})
	if s.state(pid) != pool.Ready {
		t.Error("with no listener to watch, READY=1 did not make the worker ready")
	}
}

// TestRefreshReadsNow: --status asks for fresh figures; the pass that takes the request reads
// /proc even though the periodic look is not due, and publishes what it read.
func TestRefreshReadsNow(t *testing.T) {
	s := newSupervised(t, "WORKERS=1", "READY=notify")
	s.at(t0, startEvent{})
	pid := s.f.spawned[0]
	s.at(t0, worker.Message{Sender: pid, FromPipe: true, Text: "READY=1"})
	page := int64(os.Getpagesize())
	s.f.procs[pid] = proc.Stat{PPID: 1, PGRP: pid, RSSPages: 10}
	scans := s.f.scans
	s.at(t0.Add(time.Millisecond), refreshEvent(make(chan struct{})))
	if s.f.scans != scans+1 {
		t.Fatalf("%d scans for a refresh, want 1", s.f.scans-scans)
	}
	if got := s.board.Snapshot().Workers[0].Resident; got != 10*page {
		t.Errorf("published memory %d after the refresh, want %d", got, 10*page)
	}
}

// TestOOMKillNamed: a worker that dies of a SIGKILL narwhal did not send while the cgroup's
// OOM-kill count rose is an OOM kill, counted and logged as such and restarted as a crash is;
// a SIGKILL from someone else, or an OOM kill long ago, is a crash.
func TestOOMKillNamed(t *testing.T) {
	s := newSupervised(t, "WORKERS=2", "READY=notify")
	s.f.oomKills = 7 // before narwhal: not the pool's
	s.at(t0, startEvent{})
	a, b := s.f.spawned[0], s.f.spawned[1]
	s.f.oomKills = 8
	s.at(t0.Add(time.Second), exitEvent{pid: a, code: 137})
	s.at(t0.Add(time.Second), exitEvent{pid: b, code: 137}) // one kill counted, one claimed
	exits := s.m.Stats.Exits
	if exits[pool.ReasonOOM] != 1 || exits[pool.ReasonCrash] != 1 {
		t.Fatalf("exits %v, want one oom and one crash", exits)
	}
	if !strings.Contains(s.log.String(), `"reason":"oom"`) || !strings.Contains(s.log.String(), "OOM killer") {
		t.Errorf("the OOM kill is not named in the log:\n%s", s.log.String())
	}
	if !strings.Contains(s.log.String(), `"memory_limit_bytes":1073741824,"memory_working_set_bytes":1048576`) {
		t.Errorf("the OOM kill's log line lacks the container's memory figures:\n%s", s.log.String())
	}
	// A kill counted long before the exit belonged to another process.
	s.f.oomKills = 9
	s.at(t0.Add(2*time.Second), nil) // a scan notes it
	c := s.f.spawned[len(s.f.spawned)-1]
	s.at(t0.Add(2*time.Second+5*time.Second+time.Millisecond), exitEvent{pid: c, code: 137})
	if exits[pool.ReasonOOM] != 1 {
		t.Errorf("an exit over 5s after the OOM kill was counted as oom")
	}
}

// TestMemoryBudget: over the budget, the largest ready worker is replaced; replacement first
// when the room under the limit holds a worker of the median size, otherwise stopped first;
// and nothing more while the pool is moving.
func TestMemoryBudget(t *testing.T) {
	for _, tc := range []struct {
		name       string
		workingSet int64
		wantFirst  string // "replace" or "stop"
	}{
		{"room for one more", 850 << 20, "replace"},
		{"no room", 990 << 20, "stop"},
	} {
		s := newSupervised(t, "WORKERS=3", "READY=notify")
		s.budget = 800 << 20
		page := int64(os.Getpagesize())
		s.at(t0, startEvent{})
		for i, pid := range s.f.spawned {
			s.at(t0, worker.Message{Sender: pid, FromPipe: true, Text: "READY=1"})
			s.f.procs[pid] = proc.Stat{PPID: 1, PGRP: pid, RSSPages: int64(50*(i+1)<<20) / page}
		}
		s.world.container = func() proc.Container {
			return proc.Container{Memory: proc.Memory{Limit: 1000 << 20, WorkingSet: tc.workingSet}, MemoryKnown: true}
		}
		largest := s.f.spawned[2]
		s.at(t0.Add(scanEvery), nil)
		switch tc.wantFirst {
		case "replace":
			if len(s.f.spawned) != 4 || s.f.signalled(largest, syscall.SIGTERM) {
				t.Errorf("%s: spawned %d, largest stopped %v; want its replacement first", tc.name, len(s.f.spawned),
					s.f.signalled(largest, syscall.SIGTERM))
			}
		case "stop":
			if len(s.f.spawned) != 3 || !s.f.signalled(largest, syscall.SIGTERM) {
				t.Errorf("%s: spawned %d, largest stopped %v; want it stopped first", tc.name, len(s.f.spawned),
					s.f.signalled(largest, syscall.SIGTERM))
			}
		}
		signals := len(s.f.signals)
		s.at(t0.Add(2*scanEvery), nil)
		if len(s.f.signals) != signals || len(s.f.spawned) > 4 {
			t.Errorf("%s: the budget acted again while the pool was moving", tc.name)
		}
		if !strings.Contains(s.log.String(), `"event":"memory_budget"`) {
			t.Errorf("%s: no memory_budget log line", tc.name)
		}
	}
}

// TestRangeFollowsTheQueue: a pool of 1-3 grows one worker per window while connections wait,
// stops at MAX, and SIGTTOU/SIGTTIN move it only within the range.
func TestRangeFollowsTheQueue(t *testing.T) {
	s := newSupervised(t, "WORKERS=1-3", "READY=notify", "SCALE_UP_AFTER=500ms")
	now := t0
	s.at(now, startEvent{})
	s.f.waiting = true
	for i := 0; i < 30; i++ {
		now = now.Add(pool.SampleEvery)
		s.at(now, nil)
	}
	if d := s.m.Desired(); d != 3 {
		t.Fatalf("after 3 s of waiting connections desired is %d, want MAX 3", d)
	}
	if !strings.Contains(s.log.String(), `"reason":"queue"`) {
		t.Error("no scale line with the queue's figures")
	}
	s.at(now, syscall.SIGTTIN)
	if d := s.m.Desired(); d != 3 {
		t.Errorf("SIGTTIN at MAX: desired %d", d)
	}
	s.f.waiting = false
	s.at(now, syscall.SIGTTOU)
	s.at(now, syscall.SIGTTOU)
	s.at(now, syscall.SIGTTOU)
	if d := s.m.Desired(); d != 1 {
		t.Errorf("three SIGTTOUs from 3: desired %d, want MIN 1", d)
	}
}

// TestWatchedChangeRestarts: a settled change to a watched file starts a rolling restart,
// logged with its path; during a graceful stop it is ignored.
func TestWatchedChangeRestarts(t *testing.T) {
	s := newSupervised(t, "WORKERS=2", "READY=notify")
	s.restarted = make(chan struct{}, 1) // Run makes it when NARWHAL_WATCH is set
	s.at(t0, startEvent{})
	s.at(t0, syscall.SIGHUP)
	select {
	case <-s.restarted:
	default:
		t.Error("SIGHUP did not tell the watcher to take the files as they are")
	}
	s.at(t0, watch.Change{Path: "/etc/app/app.yaml"})
	if s.m.Generation() != 3 {
		t.Fatalf("generation %d after SIGHUP and a watched change, want 3", s.m.Generation())
	}
	if !strings.Contains(s.log.String(), `"event":"watch","path":"/etc/app/app.yaml"`) {
		t.Errorf("the restart was not logged with the path:\n%s", s.log.String())
	}
	s.at(t0, syscall.SIGTERM)
	s.at(t0, watch.Change{Path: "/etc/app/app.yaml"})
	if s.m.Generation() != 3 {
		t.Errorf("a watched change during the graceful stop started generation %d", s.m.Generation())
	}
}

// TestRouteFollowsNewSockets: a slot's sockets are bound when its first worker starts, and the
// steering is set again once they are, though the ready slots are the same (with preload the
// first workers start passes after the one that steered to the slots being filled).
func TestRouteFollowsNewSockets(t *testing.T) {
	s := newSupervised(t, "WORKERS=2", "READY=notify")
	var routes [][]int
	s.world.route = func(live []int) error { routes = append(routes, live); return nil }
	bound := 1
	s.world.slots = func() int { return bound }
	s.at(t0, startEvent{})
	n := len(routes)
	s.at(t0, worker.Message{Sender: s.f.spawned[0], FromPipe: true, Text: "STATUS=booting"})
	if len(routes) != n {
		t.Fatalf("steered again with nothing changed: %v", routes[n:])
	}
	bound = 2
	s.at(t0, worker.Message{Sender: s.f.spawned[0], FromPipe: true, Text: "STATUS=booting"})
	if len(routes) != n+1 || !slices.Equal(routes[n], []int{0, 1}) {
		t.Fatalf("after slot 1's sockets were bound, steered %v, want [0 1] once more", routes[n:])
	}
}

// TestRouteFollowsReadyWorkers: in balanced mode new connections go to the slots with a ready
// worker: not to a starting one, nor to a slot whose worker crashed or is stopping; with none
// ready, to the slots being filled, and after SIGWINCH to slot 0 alone.
func TestRouteFollowsReadyWorkers(t *testing.T) {
	s := newSupervised(t, "WORKERS=3", "READY=notify")
	var routes [][]int
	s.world.route = func(live []int) error { routes = append(routes, live); return nil }
	last := func() []int { return routes[len(routes)-1] }
	check := func(what string, want ...int) {
		t.Helper()
		if got := last(); !slices.Equal(got, want) {
			t.Errorf("%s: steered to %v, want %v", what, got, want)
		}
	}
	ready := func(pid int) { s.at(t0, worker.Message{Sender: pid, FromPipe: true, Text: "READY=1"}) }

	s.at(t0, startEvent{})
	check("nothing ready yet", 0, 1, 2)
	w0, w1, w2 := s.f.spawned[0], s.f.spawned[1], s.f.spawned[2]
	ready(w0)
	check("slot 0 ready", 0)
	ready(w1)
	ready(w2)
	check("all ready", 0, 1, 2)
	n := len(routes)
	s.at(t0, worker.Message{Sender: w1, FromPipe: true, Text: "STATUS=busy"})
	if len(routes) != n {
		t.Errorf("steered again with nothing changed: %v", routes[n:])
	}

	s.at(t0, exitEvent{pid: w1, code: 1})
	check("slot 1's worker crashed", 0, 2)

	// A rolling restart: a slot stays steered to while its old worker serves and its
	// replacement starts, and while the replacement serves and the old one stops.
	s.at(t0.Add(time.Second), syscall.SIGHUP)
	check("rollout begun", 0, 2)

	s.at(t0.Add(2*time.Second), syscall.SIGWINCH)
	check("SIGWINCH: every worker stopping", 0)
}

// TestScaleDownDrainsTheSlot: in balanced mode SIGTTOU first steers new connections away from
// the highest slot, and stops its worker only once nothing waits on the slot's socket (and
// retireMin has passed), however long after NARWHAL_STOP_TIMEOUT that is; a scale-up
// meanwhile calls it off.
func TestScaleDownDrainsTheSlot(t *testing.T) {
	s := newSupervised(t, "WORKERS=3", "READY=notify", "STOP_TIMEOUT=2s")
	var routes [][]int
	queued := map[int]int{}
	s.world.route = func(live []int) error { routes = append(routes, live); return nil }
	s.world.slotQueued = func(slot int) int { return queued[slot] }
	s.at(t0, startEvent{})
	for _, pid := range s.f.spawned {
		s.at(t0, worker.Message{Sender: pid, FromPipe: true, Text: "READY=1"})
	}
	top := s.f.spawned[2]
	stopped := func(pid int) bool { return s.f.signalled(pid, syscall.SIGTERM) }

	queued[2] = 3
	s.at(t0, syscall.SIGTTOU)
	if got := routes[len(routes)-1]; !slices.Equal(got, []int{0, 1}) || stopped(top) || s.m.Desired() != 3 {
		t.Fatalf("SIGTTOU: steered to %v, stopped %v, desired %d; want [0 1], the worker still up, 3", got, stopped(top), s.m.Desired())
	}
	if wake := s.at(t0.Add(10*time.Millisecond), nil); stopped(top) || wake.After(t0.Add(retireMin)) {
		t.Fatalf("stopped %v before retireMin, or woke at %s, after it", stopped(top), wake.Sub(t0))
	}
	queued[2] = 0
	s.at(t0.Add(retireMin-time.Millisecond), nil)
	if stopped(top) {
		t.Fatal("stopped before retireMin")
	}
	s.at(t0.Add(retireMin), nil)
	if !stopped(top) || s.m.Desired() != 2 {
		t.Fatalf("queue empty: stopped %v, desired %d; want the worker stopping, 2", stopped(top), s.m.Desired())
	}

	// Connections still waiting after NARWHAL_STOP_TIMEOUT: the worker keeps accepting them,
	// with a warning, and stops only once they are gone.
	queued[1] = 5
	now := t0.Add(5 * time.Second)
	s.at(now, syscall.SIGTTOU)
	s.at(now.Add(2*time.Second), nil)
	s.at(now.Add(10*time.Second), nil)
	if s.m.Desired() != 2 || stopped(s.f.spawned[1]) {
		t.Fatal("stopped the worker of a slot with connections waiting on it")
	}
	if n := strings.Count(s.log.String(), "scale-down waits"); n != 1 {
		t.Errorf("the long wait was logged %d times, want once", n)
	}
	queued[1] = 0
	now = now.Add(10 * time.Second)
	s.at(now, nil)
	if s.m.Desired() != 1 || !stopped(s.f.spawned[1]) {
		t.Fatalf("desired %d once the queue emptied, want 1 and the worker stopping", s.m.Desired())
	}

	// SIGTTIN during a scale-down calls it off: the worker keeps serving and is steered to.
	now = now.Add(5 * time.Second)
	s.at(now, syscall.SIGTTIN)
	fresh := s.f.spawned[len(s.f.spawned)-1]
	s.at(now, worker.Message{Sender: fresh, FromPipe: true, Text: "READY=1"})
	spawned := len(s.f.spawned)
	s.at(now.Add(time.Second), syscall.SIGTTOU)
	s.at(now.Add(time.Second), syscall.SIGTTIN)
	if s.m.Desired() != 2 || len(s.retiring) != 0 || stopped(fresh) || len(s.f.spawned) != spawned ||
		!slices.Equal(routes[len(routes)-1], []int{0, 1}) {
		t.Errorf("SIGTTOU then SIGTTIN: desired %d, retiring %v, worker stopped %v, spawned %d more, steered to %v; "+
			"want 2, none, no, 0, [0 1]", s.m.Desired(), s.retiring, stopped(fresh), len(s.f.spawned)-spawned, routes[len(routes)-1])
	}
}

// TestRouteRetriedAfterAFailure: a steering the kernel refused is tried again at the next pass.
func TestRouteRetriedAfterAFailure(t *testing.T) {
	s := newSupervised(t, "WORKERS=2", "READY=notify")
	fail := true
	var routes [][]int
	s.world.route = func(live []int) error {
		if fail {
			return syscall.ENOMEM
		}
		routes = append(routes, live)
		return nil
	}
	s.at(t0, startEvent{})
	for _, pid := range s.f.spawned {
		s.at(t0, worker.Message{Sender: pid, FromPipe: true, Text: "READY=1"})
	}
	fail = false
	s.at(t0.Add(time.Millisecond), nil)
	if len(routes) != 1 || !slices.Equal(routes[0], []int{0, 1}) {
		t.Errorf("after a failed steering, the next pass steered to %v, want [[0 1]]", routes)
	}
	if n := strings.Count(s.log.String(), "cannot steer"); n != 1 {
		t.Errorf("the failure was logged %d times, want once", n)
	}
}

// TestManualStepHoldsAWindow: SIGTTIN or SIGTTOU in a ranged pool starts the scaler's windows
// afresh, so an idle pool does not undo the operator's step at the next sample; it may move
// again only after a whole window.
func TestManualStepHoldsAWindow(t *testing.T) {
	s := newSupervised(t, "WORKERS=1-3", "READY=notify", "SCALE_DOWN_AFTER=2s")
	now := t0
	s.at(now, startEvent{})
	s.at(now, worker.Message{Sender: s.f.spawned[0], FromPipe: true, Text: "READY=1"})
	run := func(d time.Duration) {
		for end := now.Add(d); now.Before(end); {
			now = now.Add(pool.SampleEvery)
			s.at(now, nil)
		}
	}
	run(3 * time.Second) // idle, longer than the down window
	s.at(now, syscall.SIGTTIN)
	if d := s.m.Desired(); d != 2 {
		t.Fatalf("SIGTTIN: desired %d, want 2", d)
	}
	run(2*time.Second - pool.SampleEvery)
	if d := s.m.Desired(); d != 2 {
		t.Fatalf("an idle pool undid SIGTTIN within the down window: desired %d", d)
	}
	run(time.Second)
	if d := s.m.Desired(); d != 1 {
		t.Errorf("a whole idle window after SIGTTIN: desired %d, want 1", d)
	}
}

// TestReadySecondsFromTheWorkersOwnStart: a worker seen accepting in the pass that started it
// is ready some time after its own start, not in 0 seconds: its start is when its spawn
// returned, and its readiness when the process table that showed it was read.
func TestReadySecondsFromTheWorkersOwnStart(t *testing.T) {
	s := newSupervised(t, "WORKERS=2")
	spawn, scan := s.world.spawn, s.world.scan
	s.world.spawn = func(slot, gen int) (int, error) {
		s.f.now = s.f.now.Add(30 * time.Millisecond) // a fork and exec take time
		pid, err := spawn(slot, gen)
		s.f.accepting[pid] = true // and the worker is quick to listen
		return pid, err
	}
	s.world.scan = func() *proc.Snapshot {
		s.f.now = s.f.now.Add(10 * time.Millisecond) // so does reading /proc
		return scan()
	}
	s.at(t0, startEvent{})
	if n := s.m.Count(pool.Ready); n != 2 {
		t.Fatalf("%d workers ready in the first pass, want 2", n)
	}
	want := []string{`"seconds":0.04`, `"seconds":0.01`} // started at +30 and +60 ms, seen at +70
	for _, w := range want {
		if !strings.Contains(s.log.String(), w) {
			t.Errorf("no ready line with %s:\n%s", w, s.log.String())
		}
	}
}

// TestScaleDownNotCutShort: whatever comes during a balanced scale-down (a rolling restart by
// signal or by a watched change, a second step down), the slot being retired always has a
// worker until nothing waits on its sockets; only then does the pool shrink past it.
func TestScaleDownNotCutShort(t *testing.T) {
	for _, tc := range []struct {
		name string
		ev   any
	}{
		{"SIGHUP", syscall.SIGHUP},
		{"SIGUSR2", syscall.SIGUSR2},
		{"watched change", watch.Change{Path: "/etc/app.yaml"}},
		{"second SIGTTOU", syscall.SIGTTOU},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSupervised(t, "WORKERS=3", "READY=notify", "STOP_TIMEOUT=2s")
			queued := map[int]int{}
			var routes [][]int
			s.world.route = func(live []int) error { routes = append(routes, live); return nil }
			s.world.slotQueued = func(slot int) int { return queued[slot] }
			now := t0
			step := func(d time.Duration, ev any) {
				now = now.Add(d)
				s.at(now, ev)
				for _, w := range s.m.Workers() { // every new worker is quick to serve
					if w.State == pool.Starting {
						s.at(now, worker.Message{Sender: w.PID, FromPipe: true, Text: "READY=1"})
					}
				}
				for _, w := range s.m.Workers() { // and every stopped one to exit
					if w.State == pool.Stopping {
						s.at(now, exitEvent{pid: w.PID})
					}
				}
			}
			served := func(slot int) bool {
				for _, w := range s.m.Workers() {
					if w.Slot == slot && w.State == pool.Ready {
						return true
					}
				}
				return false
			}
			step(0, startEvent{})
			queued[2] = 4
			step(0, syscall.SIGTTOU)
			step(300*time.Millisecond, tc.ev)
			for i := 0; i < 100; i++ { // 10 s, past NARWHAL_STOP_TIMEOUT
				step(100*time.Millisecond, nil)
				if !served(2) {
					t.Fatalf("slot 2 has no ready worker at +%s with %d connections waiting on it",
						now.Sub(t0), queued[2])
				}
			}
			if got := routes[len(routes)-1]; slices.Contains(got, 2) {
				t.Errorf("new connections steered to the retiring slot: %v", got)
			}
			queued[2] = 0
			step(100*time.Millisecond, nil)
			want := 2
			if tc.ev == syscall.SIGTTOU {
				want = 1 // slot 1 drained long ago: both steps are done
			}
			if d := s.m.Desired(); d != want || served(2) {
				t.Errorf("once slot 2 drained: desired %d, slot 2 served %v; want %d, no", d, served(2), want)
			}
		})
	}
}

// TestOverlongNotifyLineDropped: what the pipe reader passes on for an over-long line (its
// first MaxNotify+1 bytes) gives one warning naming the worker and the reason, and the
// READY=1 that follows still makes the worker ready.
func TestOverlongNotifyLineDropped(t *testing.T) {
	s := newSupervised(t, "WORKERS=1", "READY=notify")
	s.at(t0, startEvent{})
	w := s.f.spawned[0]
	s.at(t0, worker.Message{Sender: w, FromPipe: true, Text: strings.Repeat("x", worker.MaxNotify+1)})
	s.at(t0, worker.Message{Sender: w, FromPipe: true, Text: "READY=1"})
	log := s.log.String()
	if strings.Count(log, `"event":"notify_dropped"`) != 1 || !strings.Contains(log, fmt.Sprintf(`"pid":%d`, w)) ||
		!strings.Contains(log, "longer than") {
		t.Errorf("want one warning naming pid %d and a line too long, got:\n%s", w, log)
	}
	if s.state(w) != pool.Ready {
		t.Error("READY=1 after an over-long line did not make the worker ready")
	}
}

// TestFailedPartStopsThePool: a part of the pool that fails (the notify socket) stops the pool
// gracefully and makes the exit code 1, as a failed metrics server does; it is not only logged.
func TestFailedPartStopsThePool(t *testing.T) {
	s := newSupervised(t, "WORKERS=2", "READY=notify")
	s.at(t0, startEvent{})
	s.at(t0, failedEvent{errors.New("notify socket: read: broken")})
	if !s.m.Stopping() || !s.failed {
		t.Fatalf("after a failed part: stopping %v, failed %v; want both", s.m.Stopping(), s.failed)
	}
	if !strings.Contains(s.log.String(), `"event":"failed"`) {
		t.Errorf("the failure was not logged:\n%s", s.log.String())
	}
}

// TestNewWorkerJudgedByItsShare: a worker started between two full reads of proportional memory
// has its own read at the first scan that sees it, so it is never judged by resident memory
// (which counts every shared page in full) and replaced for NARWHAL_MAX_MEMORY.
func TestNewWorkerJudgedByItsShare(t *testing.T) {
	s := newSupervised(t, "WORKERS=1", "READY=notify", "MAX_MEMORY=100Mi")
	read := map[int]int{}
	s.world.shares = func(pids []int) proc.Shares {
		read[pids[0]]++
		return proc.Shares{Proportional: 50 << 20, Known: true}
	}
	s.at(t0, startEvent{})
	s.at(t0, worker.Message{Sender: s.f.spawned[0], FromPipe: true, Text: "READY=1"})
	s.at(t0.Add(scanEvery), syscall.SIGTTIN) // within sharesEvery of the last full read
	fresh := s.f.spawned[1]
	s.at(t0.Add(scanEvery), worker.Message{Sender: fresh, FromPipe: true, Text: "READY=1"})
	s.f.procs[fresh] = proc.Stat{PPID: 1, PGRP: fresh, RSSPages: (120 << 20) / int64(os.Getpagesize())}
	s.at(t0.Add(2*scanEvery-time.Millisecond), nil)
	if read[fresh] == 0 {
		t.Fatal("the new worker's proportional memory was not read at its first scan")
	}
	if len(s.f.spawned) != 2 {
		t.Errorf("a new worker with 120 MiB resident but a 50 MiB share was replaced: spawned %d", len(s.f.spawned))
	}
}

// TestWinchDuringScaleDown: SIGWINCH during a balanced scale-down stops every worker, the
// retiring one too; the SIGHUP that brings the pool back to NARWHAL_WORKERS brings back the
// slot above it whose socket still holds connections, and retires it again once they are
// answered. Without that they would wait for a worker that never comes.
func TestWinchDuringScaleDown(t *testing.T) {
	s := newSupervised(t, "WORKERS=2", "READY=notify")
	queued := map[int]int{}
	s.world.route = func(live []int) error { return nil }
	s.world.slotQueued = func(slot int) int { return queued[slot] }
	s.world.slots = func() int { return 3 }
	now := t0
	step := func(ev any) {
		now = now.Add(100 * time.Millisecond)
		s.at(now, ev)
		for _, w := range s.m.Workers() {
			switch w.State {
			case pool.Starting:
				s.at(now, worker.Message{Sender: w.PID, FromPipe: true, Text: "READY=1"})
			case pool.Stopping:
				s.at(now, exitEvent{pid: w.PID})
			}
		}
	}
	step(startEvent{})
	step(syscall.SIGTTIN)
	queued[2] = 4
	step(syscall.SIGTTOU)
	step(syscall.SIGWINCH)
	if n := len(s.m.Workers()); n != 0 {
		t.Fatalf("%d workers after SIGWINCH, want 0", n)
	}
	step(syscall.SIGHUP)
	served := func(slot int) bool {
		for _, w := range s.m.Workers() {
			if w.Slot == slot && w.State == pool.Ready {
				return true
			}
		}
		return false
	}
	if s.m.Desired() != 3 || !served(2) {
		t.Fatalf("SIGHUP after SIGWINCH with 4 connections on slot 2: desired %d, slot 2 served %v; want 3, yes",
			s.m.Desired(), served(2))
	}
	for i := 0; i < 30; i++ {
		step(nil)
	}
	if s.m.Desired() != 3 {
		t.Fatalf("slot 2 retired with connections still waiting on it")
	}
	queued[2] = 0
	step(nil)
	if s.m.Desired() != 2 || served(2) {
		t.Errorf("once slot 2 drained: desired %d, served %v; want 2, no", s.m.Desired(), served(2))
	}
}

// TestScaleDownNeverRetiresSlotZero: a step down to no worker while a balanced scale-down is
// under way is refused (slot 0 takes what comes while nothing is ready); the one under way
// goes on.
func TestScaleDownNeverRetiresSlotZero(t *testing.T) {
	s := newSupervised(t, "WORKERS=2", "READY=notify")
	s.world.route = func(live []int) error { return nil }
	s.world.slotQueued = func(slot int) int { return 1 }
	s.at(t0, startEvent{})
	s.at(t0, syscall.SIGTTOU)
	s.at(t0, syscall.SIGTTOU)
	if len(s.retiring) != 1 || s.retiring[0].slot != 1 || s.m.Desired() != 2 {
		t.Errorf("two SIGTTOUs from 2: retiring %v, desired %d; want slot 1 alone, 2", s.retiring, s.m.Desired())
	}
}

// TestSharesWithinTheirDuty: reading proportional memory walks every page table; where a full
// read takes 40 ms, the next comes 8 s later (0.5% of a core), not every 2 s.
func TestSharesWithinTheirDuty(t *testing.T) {
	s := newSupervised(t, "WORKERS=2", "READY=notify")
	reads := 0
	s.world.shares = func(pids []int) proc.Shares {
		reads++
		s.f.now = s.f.now.Add(20 * time.Millisecond) // a large worker's smaps_rollup
		return proc.Shares{Proportional: 1, Known: true}
	}
	s.at(t0, startEvent{})
	for _, pid := range s.f.spawned {
		s.at(t0, worker.Message{Sender: pid, FromPipe: true, Text: "READY=1"})
	}
	reads = 0
	for now := t0; now.Before(t0.Add(16 * time.Second)); now = now.Add(scanEvery) {
		s.at(now, nil)
	}
	if reads > 2*3 { // a full read at about 0, 8 and 16 s
		t.Errorf("%d reads of 2 workers in 16 s, each read 20 ms: more than 0.5%% of a core", reads)
	}
	if reads < 2 {
		t.Errorf("%d reads in 16 s", reads)
	}
}

// TestBudgetReadsSharesNow: the budget decides on each worker's proportional memory as it is
// when the container goes over, not as of the last full read: a worker that grew since then is
// the one chosen, with its size, and stopped first when the room left would not hold it.
func TestBudgetReadsSharesNow(t *testing.T) {
	s := newSupervised(t, "WORKERS=2", "READY=notify")
	s.budget = 100 << 20
	size := map[int]int64{}
	s.world.shares = func(pids []int) proc.Shares { return proc.Shares{Proportional: size[pids[0]], Known: true} }
	s.at(t0, startEvent{})
	a, b := s.f.spawned[0], s.f.spawned[1]
	size[a], size[b] = 1<<20, 1<<20
	for _, pid := range s.f.spawned {
		s.at(t0, worker.Message{Sender: pid, FromPipe: true, Text: "READY=1"})
	}
	s.at(t0.Add(scanEvery), nil) // a full read: both at 1 MiB
	size[b] = 120 << 20          // b grows
	s.world.container = func() proc.Container {
		return proc.Container{Memory: proc.Memory{Limit: 200 << 20, WorkingSet: 130 << 20}, MemoryKnown: true}
	}
	s.at(t0.Add(2*scanEvery), nil) // within sharesEvery of the full read
	if !s.f.signalled(b, syscall.SIGTERM) || s.f.signalled(a, syscall.SIGTERM) {
		t.Errorf("b grew to 120 MiB with 70 MiB left: b stopped %v, a stopped %v; want b stopped first",
			s.f.signalled(b, syscall.SIGTERM), s.f.signalled(a, syscall.SIGTERM))
	}
}
