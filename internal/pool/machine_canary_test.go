package pool

import (
	"slices"
	"syscall"
	"testing"
	"time"
)

func canaryParams(n int) Params {
	p := params(n)
	p.Surge = 2
	p.Canary = time.Second
	return p
}

// startCanary starts a pool of n, begins a rollout and makes its canary ready; it returns the
// old workers and the canary.
func startCanary(t *testing.T, n int) (h *harness, old []int, c int) {
	h = newHarness(t, canaryParams(n))
	h.start()
	old = h.pids(Ready)
	h.minReady = n
	h.m.Restart(h.now)
	h.check()
	starting := h.pids(Starting)
	if len(starting) != 1 {
		t.Fatalf("%d new workers started with a canary, want 1 (surge is 2)", len(starting))
	}
	c = starting[0]
	h.advance(100 * time.Millisecond)
	h.m.MarkReady(h.now, c)
	h.check()
	return h, old, c
}

// untouched fails unless every old worker is alive and was sent nothing.
func untouched(t *testing.T, h *harness, old []int) {
	t.Helper()
	for _, pid := range old {
		if w := h.m.workers[pid]; w == nil || w.State != Ready {
			t.Errorf("old worker %d is not serving", pid)
		}
		for _, s := range h.w.signals {
			if s.pid == pid && !s.group {
				t.Errorf("old worker %d got %v", pid, s.sig)
			}
		}
	}
}

// TestCanaryPasses: the canary serves beside every old worker for the canary time, and only then
// does the rollout go on; it completes as usual.
func TestCanaryPasses(t *testing.T) {
	h, old, c := startCanary(t, 3)
	h.advance(999 * time.Millisecond)
	untouched(t, h, old)
	if n := len(h.pids(Starting)); n != 0 {
		t.Fatalf("%d more new workers started while the canary is watched", n)
	}
	h.advance(time.Millisecond) // the canary time is over
	if h.m.workers[c].replacement || h.m.workers[old[0]].State != Stopping {
		t.Fatal("the canary did not take over its slot once its time was over")
	}
	if n := len(h.pids(Starting)); n != 1 {
		t.Errorf("%d replacements starting after the canary passed, want 1 (its old worker still stops)", n)
	}
	for step := 0; step < 20 && h.m.rollout != nil; step++ {
		h.advance(10 * time.Millisecond)
		h.readyAll()
		h.exitStopping()
	}
	if h.m.Stats.Rollouts[RolloutCompleted] != 1 {
		t.Fatalf("rollouts: %v", h.m.Stats.Rollouts)
	}
	for _, w := range h.m.Workers() {
		if w.Gen != 2 {
			t.Errorf("worker %+v left of the old generation", w)
		}
	}
}

// TestCanaryFails: a canary that exits, misses its watchdog or grows over the memory limit while
// watched aborts the rollout: it is stopped, the old workers serve on untouched, and nothing of
// the new generation starts again by itself.
func TestCanaryFails(t *testing.T) {
	for _, how := range []string{"exit", "watchdog", "memory"} {
		t.Run(how, func(t *testing.T) {
			h, old, c := startCanary(t, 3)
			h.advance(500 * time.Millisecond)
			switch how {
			case "exit":
				h.m.Exited(h.now, c, 1, false)
			case "watchdog":
				h.m.p.WatchdogTimeout, h.m.p.WatchdogKill = 3*time.Second, 2*time.Second
				h.m.rollout.canary.until = h.now.Add(time.Hour) // watched long enough for the watchdog to bite
				for range 30 {
					h.advance(100 * time.Millisecond)
					for _, pid := range old {
						h.m.Ping(h.now, pid)
					}
				}
				if !h.w.signalled(c, syscall.SIGABRT) {
					t.Fatal("the silent canary got no SIGABRT")
				}
			case "memory":
				h.m.Replace(h.now, c, ReasonMemory)
				if !h.w.signalled(c, syscall.SIGTERM) {
					t.Fatal("the canary over the memory limit was not stopped")
				}
			}
			if h.m.rollout != nil || h.m.Stats.Rollouts[RolloutAborted] != 1 {
				t.Fatalf("rollout %+v, results %v: want aborted", h.m.rollout, h.m.Stats.Rollouts)
			}
			h.exitStopping()
			started := len(h.w.spawned)
			h.m.p.WatchdogTimeout = 0
			h.advance(time.Minute)
			untouched(t, h, old)
			if len(h.w.spawned) != started {
				t.Errorf("%d workers started after the canary failed", len(h.w.spawned)-started)
			}
		})
	}
}

// TestCanarySuperseded: a restart while the canary is watched stops it, and the new rollout has a
// canary of its own.
func TestCanarySuperseded(t *testing.T) {
	h, old, c := startCanary(t, 3)
	h.advance(300 * time.Millisecond)
	h.m.Restart(h.now)
	h.check()
	if !h.w.signalled(c, syscall.SIGTERM) {
		t.Fatal("the superseded canary was not stopped")
	}
	if h.m.Stats.Rollouts[RolloutSuperseded] != 1 {
		t.Errorf("rollouts: %v", h.m.Stats.Rollouts)
	}
	starting := h.pids(Starting)
	if len(starting) != 1 || h.m.workers[starting[0]].Gen != 3 {
		t.Fatalf("after the restart: starting %v, want one canary of generation 3", starting)
	}
	h.exitStopping()
	untouched(t, h, old)
	h.m.MarkReady(h.now, starting[0])
	h.advance(time.Second)
	if slices.Contains(h.pids(Ready), old[0]) && h.m.workers[old[0]].State != Stopping {
		t.Error("the second canary passed but its slot's old worker serves on")
	}
}

// TestCanaryHoldsOtherSlots: an old worker that crashes while the canary is watched has its slot
// refilled at once (capacity first), but no other old worker stops, and no other slot gets a
// replacement, until the canary has passed; then the rollout completes.
func TestCanaryHoldsOtherSlots(t *testing.T) {
	h, old, _ := startCanary(t, 3)
	h.minReady = -1 // the crash takes one away
	h.m.Exited(h.now, old[2], 1, false)
	h.advance(500 * time.Millisecond)
	if n := len(h.pids(Starting)); n != 1 {
		t.Fatalf("%d workers starting after an old one crashed during the watch, want its slot refilled", n)
	}
	h.readyAll()
	untouched(t, h, old[:2])
	h.advance(500 * time.Millisecond)
	for step := 0; step < 20 && h.m.rollout != nil; step++ {
		h.advance(100 * time.Millisecond)
		h.readyAll()
		h.exitStopping()
	}
	if h.m.Stats.Rollouts[RolloutCompleted] != 1 || len(h.pids(Ready)) != 3 {
		t.Fatalf("rollouts %v with %d ready, want completed with 3", h.m.Stats.Rollouts, len(h.pids(Ready)))
	}
}

// TestCanaryRecycledOrTriggered: the memory budget recycling the canary fails it, like
// NARWHAL_MAX_MEMORY; a WATCHDOG=trigger from it waits until it has passed. Its slot never gets
// a second new worker meanwhile.
func TestCanaryRecycledOrTriggered(t *testing.T) {
	h, old, c := startCanary(t, 3)
	h.m.Replace(h.now, c, ReasonWatchdog)
	if h.m.rollout == nil || h.w.signalled(c, syscall.SIGTERM) || len(h.pids(Starting)) != 0 {
		t.Fatal("a watchdog trigger from the canary changed the rollout")
	}
	h.m.Recycle(h.now, c, ReasonMemory)
	if h.m.rollout != nil || h.m.Stats.Rollouts[RolloutAborted] != 1 || !h.w.signalled(c, syscall.SIGTERM) {
		t.Fatalf("recycled canary: rollout %+v, results %v", h.m.rollout, h.m.Stats.Rollouts)
	}
	h.advance(time.Second)
	if n := len(h.pids(Starting)); n != 0 {
		t.Errorf("%d new workers started after the canary was recycled", n)
	}
	h.exitStopping()
	untouched(t, h, old)
}

// TestCanaryTriggerHonouredOnPass: a WATCHDOG=trigger from the canary on trial is kept, not
// dropped: once the canary has passed and taken over its slot, the slot gets a replacement of
// its own, which stops the canary once it is ready.
func TestCanaryTriggerHonouredOnPass(t *testing.T) {
	h, _, c := startCanary(t, 3)
	h.m.Replace(h.now, c, ReasonWatchdog)
	h.advance(time.Second) // the canary passes
	if h.m.workers[c].replacement {
		t.Fatal("the canary did not pass")
	}
	for step := 0; step < 50 && (h.m.rollout != nil || h.m.workers[c] != nil); step++ {
		h.advance(10 * time.Millisecond)
		h.readyAll()
		h.exitStopping()
	}
	if w := h.m.workers[c]; w != nil {
		t.Fatalf("the canary that asked to be replaced still serves: %+v", *w)
	}
	if h.m.Stats.Exits[ReasonWatchdog] != 1 {
		t.Errorf("exits %v, want one with reason watchdog (the trigger's)", h.m.Stats.Exits)
	}
	if h.m.Stats.Rollouts[RolloutCompleted] != 1 || len(h.pids(Ready)) != 3 {
		t.Fatalf("rollouts %v with %d ready, want completed with 3", h.m.Stats.Rollouts, len(h.pids(Ready)))
	}
}
