package pool

import (
	"io"
	"log/slog"
	"slices"
	"syscall"
	"testing"
	"time"
)

// world is a fake Effects: spawns get increasing PIDs, signals are recorded. A signal to a
// process group reaches someone only when the group is in groups (a worker's leftovers).
type world struct {
	next      int
	spawned   []spawnCall
	signals   []signalCall
	ready     []int // the PIDs told they serve, in order
	failSpawn bool
	groups    map[int]bool

	templates    []spawnCall // slot -1
	nextTemplate int
	failTemplate bool
}

type spawnCall struct{ slot, gen, pid int }
type signalCall struct {
	pid   int
	sig   syscall.Signal
	group bool
}

func (w *world) Spawn(slot, gen int) (int, time.Time, error) {
	if w.failSpawn {
		return 0, time.Time{}, syscall.ENOENT
	}
	w.next++
	pid := 100 + w.next
	w.spawned = append(w.spawned, spawnCall{slot, gen, pid})
	return pid, time.Time{}, nil
}

func (w *world) Ready(pid int) { w.ready = append(w.ready, pid) }

// SpawnTemplate starts a template; its PIDs count from 900, apart from the workers'.
func (w *world) SpawnTemplate(gen int) (int, time.Time, error) {
	if w.failTemplate {
		return 0, time.Time{}, syscall.ENOENT
	}
	w.nextTemplate++
	pid := 900 + w.nextTemplate
	w.templates = append(w.templates, spawnCall{-1, gen, pid})
	return pid, time.Time{}, nil
}

func (w *world) Signal(pid int, sig syscall.Signal, group bool) bool {
	w.signals = append(w.signals, signalCall{pid, sig, group})
	return !group || w.groups[pid]
}

// signalled reports whether pid got sig.
func (w *world) signalled(pid int, sig syscall.Signal) bool {
	for _, s := range w.signals {
		if s.pid == pid && s.sig == sig {
			return true
		}
	}
	return false
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func params(n int) Params {
	return Params{
		Workers: n, Surge: 1,
		ReadyTimeout: 10 * time.Second, StopSignal: syscall.SIGTERM, StopTimeout: 5 * time.Second,
		RestartDelay: 100 * time.Millisecond, RestartDelayMax: 30 * time.Second,
	}
}

type harness struct {
	t   *testing.T
	m   *Machine
	w   *world
	now time.Time
	// invariant checking during rollouts
	minReady int
}

func newHarness(t *testing.T, p Params) *harness {
	w := &world{}
	h := &harness{t: t, w: w, now: t0, m: NewMachine(p, w, slog.New(slog.NewTextHandler(io.Discard, nil)))}
	h.minReady = -1
	return h
}

func (h *harness) advance(d time.Duration) {
	h.now = h.now.Add(d)
	h.m.Tick(h.now)
	h.check()
}

// check asserts the pool's invariants after every event.
func (h *harness) check() {
	h.t.Helper()
	total := len(h.m.workers)
	if limit := h.m.desired + h.m.p.Surge; total > limit && !h.m.stopping {
		h.t.Fatalf("%d workers, more than desired %d + surge %d", total, h.m.desired, h.m.p.Surge)
	}
	if h.minReady >= 0 && h.m.Count(Ready) < h.minReady {
		h.t.Fatalf("ready workers fell to %d during a rollout that began with %d", h.m.Count(Ready), h.minReady)
	}
}

// readyAll marks every starting worker ready, one at a time, as the world would.
func (h *harness) readyAll() {
	for _, w := range h.m.Workers() {
		if w.State == Starting {
			h.m.MarkReady(h.now, w.PID)
			h.check()
		}
	}
}

// exitStopping reaps every worker that was asked to stop.
func (h *harness) exitStopping() {
	for _, w := range h.m.Workers() {
		if w.State == Stopping {
			h.m.Exited(h.now, w.PID, 0, false)
			h.check()
		}
	}
}

func (h *harness) pids(state State) []int {
	var out []int
	for _, w := range h.m.Workers() {
		if w.State == state {
			out = append(out, w.PID)
		}
	}
	return out
}

func (h *harness) start() {
	h.m.Start(h.now)
	h.readyAll()
}

func TestStartFillsEverySlot(t *testing.T) {
	h := newHarness(t, params(3))
	h.m.Start(h.now)
	if got := len(h.w.spawned); got != 3 {
		t.Fatalf("spawned %d, want 3", got)
	}
	for i, s := range h.w.spawned {
		if s.slot != i || s.gen != 1 {
			t.Errorf("spawn %d = slot %d gen %d, want slot %d gen 1", i, s.slot, s.gen, i)
		}
	}
	h.readyAll()
	if h.m.Count(Ready) != 3 {
		t.Errorf("ready = %d", h.m.Count(Ready))
	}
}

// TestRollout drives a full rolling restart of 4 workers with surge 1 and 2, checking after
// every step that readiness never dips and the pool never exceeds N + surge.
func TestRollout(t *testing.T) {
	for _, surge := range []int{1, 2, 4} {
		p := params(4)
		p.Surge = surge
		h := newHarness(t, p)
		h.start()
		old := h.pids(Ready)
		h.minReady = 4
		h.m.Restart(h.now)
		h.check()
		if got := h.m.inFlight(); got != surge {
			t.Fatalf("surge %d: %d replacements starting, want %d", surge, got, surge)
		}
		for step := 0; step < 20 && h.m.rollout != nil; step++ {
			h.advance(10 * time.Millisecond)
			h.readyAll()
			h.exitStopping()
		}
		if h.m.rollout != nil {
			t.Fatalf("surge %d: rollout not done", surge)
		}
		if h.m.Stats.Rollouts[RolloutCompleted] != 1 {
			t.Errorf("surge %d: completed rollouts = %d", surge, h.m.Stats.Rollouts[RolloutCompleted])
		}
		for _, pid := range old {
			if h.m.workers[pid] != nil {
				t.Errorf("surge %d: old worker %d survived", surge, pid)
			}
			if !h.w.signalled(pid, syscall.SIGTERM) {
				t.Errorf("surge %d: old worker %d never got the stop signal", surge, pid)
			}
		}
		for _, w := range h.m.Workers() {
			if w.Gen != 2 || w.State != Ready {
				t.Errorf("surge %d: worker %+v, want generation 2 and ready", surge, w)
			}
		}
	}
}

// TestOldStopsOnlyAfterReplacementReady: the core rule, step by step.
func TestOldStopsOnlyAfterReplacementReady(t *testing.T) {
	h := newHarness(t, params(2))
	h.start()
	h.m.Restart(h.now)
	repl := h.pids(Starting)
	if len(repl) != 1 {
		t.Fatalf("starting = %v, want one replacement", repl)
	}
	if len(h.w.signals) != 0 {
		t.Fatalf("signals before the replacement was ready: %v", h.w.signals)
	}
	h.advance(5 * time.Second) // a slow boot changes nothing
	if len(h.w.signals) != 0 {
		t.Fatalf("signals while the replacement boots: %v", h.w.signals)
	}
	h.m.MarkReady(h.now, repl[0])
	if len(h.w.signals) != 1 || h.w.signals[0].sig != syscall.SIGTERM {
		t.Fatalf("after ready, signals = %v, want one SIGTERM to the old worker of slot 0", h.w.signals)
	}
}

func TestRolloutAbortsOnReadyTimeout(t *testing.T) {
	h := newHarness(t, params(3))
	h.start()
	old := h.pids(Ready)
	h.minReady = 3
	h.m.Restart(h.now)
	repl := h.pids(Starting)[0]
	h.advance(10 * time.Second) // ready timeout
	if h.m.rollout != nil {
		t.Fatal("rollout still running after its replacement timed out")
	}
	if h.m.Stats.Rollouts[RolloutAborted] != 1 {
		t.Errorf("aborted = %d, want 1", h.m.Stats.Rollouts[RolloutAborted])
	}
	if !h.w.signalled(repl, syscall.SIGTERM) {
		t.Error("the replacement that timed out was not stopped")
	}
	h.m.Exited(h.now, repl, 143, false)
	h.advance(time.Minute)
	for _, pid := range old {
		if w := h.m.workers[pid]; w == nil || w.State != Ready {
			t.Errorf("old worker %d no longer serving after the abort", pid)
		}
	}
	if n := len(h.w.spawned); n != 4 {
		t.Errorf("spawned %d workers, want 3 + the one failed replacement", n)
	}
	if h.m.Stats.Exits[ReasonReadyTimeout] != 1 {
		t.Errorf("exits = %v, want one ready_timeout", h.m.Stats.Exits)
	}
}

func TestRolloutAbortsWhenReplacementCrashes(t *testing.T) {
	h := newHarness(t, params(2))
	h.start()
	h.m.Restart(h.now)
	repl := h.pids(Starting)[0]
	h.m.Exited(h.now, repl, 1, false)
	if h.m.rollout != nil || h.m.Stats.Rollouts[RolloutAborted] != 1 {
		t.Fatalf("rollout = %v, aborted = %d; want aborted", h.m.rollout, h.m.Stats.Rollouts[RolloutAborted])
	}
	h.advance(time.Minute)
	if got := len(h.w.spawned); got != 3 {
		t.Errorf("spawned %d; an aborted rollout must not start more replacements", got)
	}
}

func TestRestartSupersedesRollout(t *testing.T) {
	h := newHarness(t, params(3))
	h.start()
	h.minReady = 3
	h.m.Restart(h.now)
	first := h.pids(Starting)[0]
	h.m.Restart(h.now)
	if h.m.Stats.Rollouts[RolloutSuperseded] != 1 {
		t.Errorf("superseded = %d, want 1", h.m.Stats.Rollouts[RolloutSuperseded])
	}
	if !h.w.signalled(first, syscall.SIGTERM) {
		t.Error("the superseded rollout's starting replacement was not stopped")
	}
	h.exitStopping()
	for step := 0; step < 20 && h.m.rollout != nil; step++ {
		h.advance(10 * time.Millisecond)
		h.readyAll()
		h.exitStopping()
	}
	for _, w := range h.m.Workers() {
		if w.Gen != 3 {
			t.Errorf("worker %d in generation %d, want 3", w.PID, w.Gen)
		}
	}
	if h.m.Stats.Rollouts[RolloutCompleted] != 1 {
		t.Errorf("completed = %d", h.m.Stats.Rollouts[RolloutCompleted])
	}
}

func TestScale(t *testing.T) {
	h := newHarness(t, params(2))
	h.start()
	h.m.ScaleUp(h.now)
	h.readyAll()
	if n := h.m.Count(Ready); n != 3 {
		t.Fatalf("after TTIN ready = %d, want 3", n)
	}
	top := h.m.Workers()[2]
	h.m.ScaleDown(h.now)
	if w := h.m.workers[top.PID]; w == nil || w.State != Stopping {
		t.Fatal("TTOU did not stop the highest slot")
	}
	h.exitStopping()
	if n := h.m.Count(Ready); n != 2 {
		t.Fatalf("after TTOU ready = %d, want 2", n)
	}
	h.m.Zero(h.now)
	h.exitStopping()
	h.advance(time.Minute)
	if n := len(h.m.workers); n != 0 {
		t.Fatalf("after WINCH %d workers, want 0", n)
	}
	h.m.Restart(h.now)
	h.readyAll()
	if n := h.m.Count(Ready); n != 2 {
		t.Fatalf("after WINCH + HUP ready = %d, want NARWHAL_WORKERS = 2", n)
	}
	if h.m.Stats.Rollouts[RolloutCompleted] != 1 {
		t.Errorf("the refill after WINCH should complete as a rollout: %v", h.m.Stats.Rollouts)
	}
}

// TestCrashBackoff: a worker that dies at once is restarted after 100ms, 200ms, 400ms, … up to
// the maximum, and the backoff resets once a worker has stayed ready for 30s.
func TestCrashBackoff(t *testing.T) {
	p := params(1)
	p.RestartDelayMax = time.Second
	h := newHarness(t, p)
	h.m.Start(h.now)
	var delays []time.Duration
	for i := 0; i < 6; i++ {
		pid := h.pids(Starting)[0]
		h.m.Exited(h.now, pid, 1, false)
		crashedAt := h.now
		before := len(h.w.spawned)
		for len(h.w.spawned) == before {
			next := h.m.Next(h.now)
			if next.IsZero() {
				t.Fatal("crashed slot has no restart scheduled")
			}
			h.now = next
			h.m.Tick(h.now)
		}
		delays = append(delays, h.now.Sub(crashedAt))
	}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i := range want {
		if delays[i] != want[i]*time.Millisecond {
			t.Fatalf("restart delays = %v, want %v ms", delays, want)
		}
	}
	h.readyAll()
	h.advance(readyResetAfter)
	h.m.Exited(h.now, h.m.Workers()[0].PID, 1, false)
	before := len(h.w.spawned)
	h.advance(100 * time.Millisecond)
	if len(h.w.spawned) != before+1 {
		t.Error("after 30s ready, the next crash should restart after the first delay again")
	}
	if got := h.m.Workers()[0].Restarts; got != 7 {
		t.Errorf("restarts = %d, want 7", got)
	}
}

func TestSpawnFailureBacksOff(t *testing.T) {
	h := newHarness(t, params(1))
	h.w.failSpawn = true
	h.m.Start(h.now)
	if h.m.Stats.Exits[ReasonCrash] != 1 {
		t.Fatalf("exits = %v", h.m.Stats.Exits)
	}
	if next := h.m.Next(h.now); next.Sub(h.now) != 100*time.Millisecond {
		t.Fatalf("next attempt in %s, want 100ms", next.Sub(h.now))
	}
}

func TestGracefulStop(t *testing.T) {
	for _, tc := range []struct {
		name     string
		exitIn   bool // workers exit before the stop timeout
		wantCode int
	}{
		{"in time", true, 0},
		{"killed", false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, params(2))
			h.start()
			pids := h.pids(Ready)
			h.m.Stop(h.now)
			for _, pid := range pids {
				if !h.w.signalled(pid, syscall.SIGTERM) {
					t.Errorf("worker %d did not get the stop signal", pid)
				}
			}
			if tc.exitIn {
				h.advance(time.Second)
				h.exitStopping()
			} else {
				h.advance(5 * time.Second)
				for _, pid := range pids {
					var group bool
					for _, s := range h.w.signals {
						if s.pid == pid && s.sig == syscall.SIGKILL {
							group = s.group
						}
					}
					if !group {
						t.Errorf("worker %d: no SIGKILL to its process group after the timeout", pid)
					}
				}
				h.exitStopping()
			}
			done, code := h.m.Done()
			if !done || code != tc.wantCode {
				t.Errorf("Done() = %v, %d; want true, %d", done, code, tc.wantCode)
			}
			if len(h.w.spawned) != 2 {
				t.Errorf("spawned %d: nothing may restart during a stop", len(h.w.spawned))
			}
		})
	}
}

func TestReplace(t *testing.T) {
	h := newHarness(t, params(2))
	h.start()
	h.minReady = 2
	target := h.pids(Ready)[0]
	h.m.Replace(h.now, target, ReasonMemory)
	repl := h.pids(Starting)
	if len(repl) != 1 || h.w.signalled(target, syscall.SIGTERM) {
		t.Fatalf("replace: starting %v, target signalled early %v", repl, h.w.signalled(target, syscall.SIGTERM))
	}
	h.m.MarkReady(h.now, repl[0])
	if !h.w.signalled(target, syscall.SIGTERM) {
		t.Fatal("the replaced worker was not stopped once its replacement was ready")
	}
	h.m.Exited(h.now, target, 0, false)
	if h.m.Stats.Exits[ReasonMemory] != 1 {
		t.Errorf("exits = %v, want one memory", h.m.Stats.Exits)
	}
}

func TestReadyDelay(t *testing.T) {
	p := params(2)
	p.ReadyDelay = 300 * time.Millisecond
	h := newHarness(t, p)
	h.m.Start(h.now)
	if next := h.m.Next(h.now); next.Sub(h.now) != 300*time.Millisecond {
		t.Fatalf("next = %s", next.Sub(h.now))
	}
	h.advance(299 * time.Millisecond)
	if h.m.Count(Ready) != 0 {
		t.Fatal("ready before the delay")
	}
	h.advance(time.Millisecond)
	if h.m.Count(Ready) != 2 {
		t.Fatalf("ready = %d after the delay", h.m.Count(Ready))
	}
}

func TestWatchdogExpires(t *testing.T) {
	p := params(1)
	p.WatchdogTimeout, p.WatchdogKill = 3*time.Second, 2*time.Second
	h := newHarness(t, p)
	h.start()
	pid := h.pids(Ready)[0]
	h.advance(2 * time.Second)
	h.m.Ping(h.now, pid) // WATCHDOG=1 keeps it alive
	h.advance(2 * time.Second)
	if h.w.signalled(pid, syscall.SIGABRT) {
		t.Fatal("SIGABRT although WATCHDOG=1 came within the timeout")
	}
	if next := h.m.Next(h.now); next.Sub(h.now) != time.Second {
		t.Fatalf("next deadline in %s, want the watchdog's 1s", next.Sub(h.now))
	}
	h.advance(time.Second)
	if !h.w.signalled(pid, syscall.SIGABRT) {
		t.Fatal("no SIGABRT after 3s of silence")
	}
	h.advance(2 * time.Second)
	if !h.w.signalled(pid, syscall.SIGKILL) {
		t.Fatal("no SIGKILL 2s after SIGABRT")
	}
	h.m.Exited(h.now, pid, 134, false)
	if h.m.Stats.Exits[ReasonWatchdog] != 1 || len(h.pids(Starting)) != 1 {
		t.Errorf("exits %v, starting %v: want one watchdog exit and a replacement", h.m.Stats.Exits, h.pids(Starting))
	}
}

func TestMaxLifetime(t *testing.T) {
	p := params(2)
	p.MaxLifetime = time.Hour
	p.Jitter = func() float64 { return 0.5 } // +5%: 63 minutes
	h := newHarness(t, p)
	h.start()
	old := h.pids(Ready)
	h.minReady = 2
	h.advance(62 * time.Minute)
	if len(h.pids(Starting)) != 0 {
		t.Fatal("replaced before its lifetime and jitter")
	}
	h.advance(time.Minute)
	repl := h.pids(Starting)
	if len(repl) != 1 {
		t.Fatalf("starting = %v, want one replacement (surge 1)", repl)
	}
	for step := 0; step < 10; step++ {
		h.readyAll()
		h.exitStopping()
		h.advance(time.Millisecond)
	}
	for _, pid := range old {
		if h.m.workers[pid] != nil {
			t.Errorf("worker %d not retired", pid)
		}
	}
	if h.m.Stats.Exits[ReasonLifetime] != 2 {
		t.Errorf("exits = %v, want two lifetime", h.m.Stats.Exits)
	}
}

// TestStopIsBounded: a worker that survives even SIGKILL (stuck in the kernel) is given up 5s
// later, so a graceful stop always ends, with code 1.
func TestStopIsBounded(t *testing.T) {
	h := newHarness(t, params(1))
	h.start()
	h.m.Stop(h.now)
	h.advance(5 * time.Second) // stop timeout: SIGKILL
	if done, _ := h.m.Done(); done {
		t.Fatal("done before the worker exited or was given up")
	}
	if next := h.m.Next(h.now); next.Sub(h.now) != abandonAfter {
		t.Fatalf("next deadline in %s, want %s", next.Sub(h.now), abandonAfter)
	}
	h.advance(abandonAfter)
	if done, code := h.m.Done(); !done || code != 1 {
		t.Errorf("Done() = %v, %d; want true, 1", done, code)
	}
	h.m.Exited(h.now, h.w.spawned[0].pid, 137, false) // a late exit of a lost worker changes nothing
	if h.m.Stats.Exits[ReasonStop] != 1 {
		t.Errorf("exits = %v, want the one stop", h.m.Stats.Exits)
	}
}

// TestFailedReplacementBacksOff: a lifetime replacement that dies at once (a broken release)
// must not be retried in a tight loop.
func TestFailedReplacementBacksOff(t *testing.T) {
	p := params(1)
	p.MaxLifetime = time.Hour
	h := newHarness(t, p)
	h.start()
	h.advance(time.Hour)
	for i := 0; i < 50; i++ {
		repl := h.pids(Starting)
		if len(repl) == 0 {
			break
		}
		h.m.Exited(h.now, repl[0], 1, false) // dies before it is ready
	}
	if n := len(h.w.spawned); n > 3 {
		t.Fatalf("%d spawns at one instant: the failed replacement was retried without backoff", n)
	}
	if h.m.Count(Ready) != 1 {
		t.Error("the old worker stopped serving")
	}
}

// TestRestartWhileReplacing: a rollout that begins while a memory replacement is starting must
// still end with every slot in the new generation.
func TestRestartWhileReplacing(t *testing.T) {
	h := newHarness(t, params(2))
	h.start()
	h.m.Replace(h.now, h.pids(Ready)[0], ReasonMemory)
	h.m.Restart(h.now)
	for step := 0; step < 20 && h.m.rollout != nil; step++ {
		h.advance(10 * time.Millisecond)
		h.readyAll()
		h.exitStopping()
	}
	if h.m.rollout != nil {
		t.Fatal("the rollout never completed")
	}
	for _, w := range h.m.Workers() {
		if w.Gen != 2 {
			t.Errorf("worker %d serves generation %d after the rollout to 2", w.PID, w.Gen)
		}
	}
}

// TestReadyToldOnce: the world hears of each worker that comes to serve, once, when it does
// (it boots at a lower CPU priority until then), and never of one that did not get there.
func TestReadyToldOnce(t *testing.T) {
	h := newHarness(t, params(2))
	h.m.Start(h.now)
	first := h.pids(Starting)
	if len(h.w.ready) != 0 {
		t.Fatalf("told %v ready before any was", h.w.ready)
	}
	h.readyAll()
	h.m.MarkReady(h.now, first[0]) // a second READY=1
	if !slices.Equal(h.w.ready, first) {
		t.Fatalf("told ready %v, want %v", h.w.ready, first)
	}
	h.m.Restart(h.now)
	replacement := h.pids(Starting)
	h.advance(11 * time.Second) // past ReadyTimeout: the replacement never served
	if slices.Contains(h.w.ready, replacement[0]) {
		t.Fatalf("replacement %d that timed out was told ready", replacement[0])
	}
}
