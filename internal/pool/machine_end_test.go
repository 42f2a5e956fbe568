package pool

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"
)

// crashLoop makes the worker in slot crash before it is ready until the slot's backoff is at
// least d, and returns with the slot empty, waiting.
func (h *harness) crashLoop(slot int, d time.Duration) {
	h.t.Helper()
	for i := 0; i < 40; i++ {
		var pid int
		for _, w := range h.m.Workers() {
			if w.Slot == slot && w.State != Stopping {
				pid = w.PID
			}
		}
		if pid == 0 {
			h.t.Fatalf("slot %d has no worker to crash", slot)
		}
		h.m.Exited(h.now, pid, 1, false)
		s := h.m.slot(slot)
		if s.notBefore.Sub(h.now) >= d {
			return
		}
		h.now = s.notBefore
		h.m.Tick(h.now)
	}
	h.t.Fatalf("slot %d never reached a backoff of %s", slot, d)
}

// TestRolloutDuringBackoffEnds: a rollout that begins while a slot waits out a long crash
// backoff ends within a ready timeout, whether the new release works or not. It used to wait
// for the backoff, then for a plain fill that no rollout counted: neither completed nor aborted.
func TestRolloutDuringBackoffEnds(t *testing.T) {
	for _, works := range []bool{true, false} {
		h := newHarness(t, params(3))
		h.start()
		h.crashLoop(2, 20*time.Second)
		h.m.Restart(h.now)
		gen := h.m.Generation()
		deadline := h.now.Add(h.m.p.ReadyTimeout)
		for h.m.rollout != nil && h.now.Before(deadline.Add(time.Millisecond)) {
			for _, w := range h.m.Workers() {
				switch {
				case w.State == Stopping:
					h.m.Exited(h.now, w.PID, 0, false)
				case w.State == Starting && w.Gen == gen && works:
					h.m.MarkReady(h.now, w.PID)
				case w.State == Starting && w.Gen == gen:
					h.m.Exited(h.now, w.PID, 1, false) // the new release dies at boot
				}
			}
			h.advance(10 * time.Millisecond)
		}
		if h.m.rollout != nil {
			t.Fatalf("works=%v: rollout still under way %s after it began", works, h.m.p.ReadyTimeout)
		}
		want := RolloutAborted
		if works {
			want = RolloutCompleted
		}
		if h.m.Stats.Rollouts[want] != 1 {
			t.Errorf("works=%v: rollouts %v, want one %s", works, h.m.Stats.Rollouts, want)
		}
	}
}

// TestRefillOfBrokenReleaseAborts: SIGWINCH empties the pool, and the SIGHUP that refills it
// is a rollout like any other: if its workers never get ready, it aborts.
func TestRefillOfBrokenReleaseAborts(t *testing.T) {
	for _, how := range []string{"crash", "hang"} {
		h := newHarness(t, params(2))
		h.start()
		h.m.Zero(h.now)
		h.exitStopping()
		h.m.Restart(h.now)
		if len(h.pids(Starting)) != 2 {
			t.Fatalf("%s: the refill started %v", how, h.pids(Starting))
		}
		if how == "crash" {
			h.m.Exited(h.now, h.pids(Starting)[0], 1, false)
		} else {
			h.advance(h.m.p.ReadyTimeout)
		}
		if h.m.rollout != nil || h.m.Stats.Rollouts[RolloutAborted] != 1 {
			t.Errorf("%s: rollout %v, rollouts %v; want it aborted", how, h.m.rollout, h.m.Stats.Rollouts)
		}
	}
}

// TestLeftoversKilledAfterStopTimeout: what a worker leaves in its process group gets the stop
// signal when the worker is reaped, and SIGKILL once NARWHAL_STOP_TIMEOUT has passed.
func TestLeftoversKilledAfterStopTimeout(t *testing.T) {
	h := newHarness(t, params(1))
	h.start()
	pid := h.pids(Ready)[0]
	h.w.groups = map[int]bool{pid: true}
	h.m.Exited(h.now, pid, 1, false)
	if !h.sentGroup(pid, syscall.SIGTERM) {
		t.Fatal("the leftover group did not get the stop signal at the worker's exit")
	}
	h.advance(h.m.p.StopTimeout - time.Millisecond)
	if h.sentGroup(pid, syscall.SIGKILL) {
		t.Fatal("SIGKILL before the stop timeout")
	}
	if next := h.m.Next(h.now); next.IsZero() || next.After(h.now.Add(time.Millisecond)) {
		t.Errorf("Next = %v, want the leftover's deadline %v", next, h.now.Add(time.Millisecond))
	}
	h.advance(time.Millisecond)
	if !h.sentGroup(pid, syscall.SIGKILL) {
		t.Fatal("the leftover group got no SIGKILL after the stop timeout")
	}
	if len(h.m.Leftovers()) != 0 {
		t.Errorf("leftovers %v after SIGKILL", h.m.Leftovers())
	}
}

func TestLeftoversGoneOrReusedAreLeftAlone(t *testing.T) {
	h := newHarness(t, params(1))
	h.start()
	pid := h.pids(Ready)[0]
	h.w.groups = map[int]bool{pid: true}
	h.m.Exited(h.now, pid, 1, false)
	h.m.LeftoverGone(pid)
	h.advance(h.m.p.StopTimeout)
	if h.sentGroup(pid, syscall.SIGKILL) {
		t.Error("SIGKILL to a group seen empty")
	}

	// The group's ID comes back as a new worker's PID (and group) before the deadline.
	h = newHarness(t, params(1))
	h.start()
	pid = h.pids(Ready)[0]
	h.w.groups = map[int]bool{pid: true}
	h.m.Exited(h.now, pid, 1, false)
	h.advance(time.Second)
	for _, w := range h.m.workers {
		delete(h.m.workers, w.PID)
		w.PID = pid
		h.m.workers[pid] = w
	}
	h.advance(h.m.p.StopTimeout)
	if h.sentGroup(pid, syscall.SIGKILL) {
		t.Error("SIGKILL to a new worker whose PID reused the leftover group's ID")
	}
}

// TestGracefulStopWaitsForLeftovers: a stopping pool is done only when the leftovers are gone.
func TestGracefulStopWaitsForLeftovers(t *testing.T) {
	h := newHarness(t, params(1))
	h.start()
	pid := h.pids(Ready)[0]
	h.w.groups = map[int]bool{pid: true}
	h.m.Stop(h.now)
	h.exitStopping()
	if done, _ := h.m.Done(); done {
		t.Fatal("done while the worker's group may still have members")
	}
	h.m.LeftoverGone(pid)
	if done, code := h.m.Done(); !done || code != 0 {
		t.Errorf("Done() = %v, %d once the group is gone; want true, 0", done, code)
	}
}

// TestGracefulStopBoundsLeftovers: a worker that exits late in a graceful stop leaves a group
// whose SIGKILL comes when the stop's own timeout ends, not a whole timeout later, and the stop
// then exits 1, as it does when a worker had to be killed.
func TestGracefulStopBoundsLeftovers(t *testing.T) {
	h := newHarness(t, params(1))
	h.start()
	pid := h.pids(Ready)[0]
	h.w.groups = map[int]bool{pid: true}
	h.m.Stop(h.now)
	h.advance(h.m.p.StopTimeout * 9 / 10)
	h.m.Exited(h.now, pid, 0, false) // in time, but its leftovers ignore the stop signal
	h.advance(h.m.p.StopTimeout / 10)
	if !h.sentGroup(pid, syscall.SIGKILL) {
		t.Fatal("no SIGKILL to the leftovers when the graceful stop's timeout ended")
	}
	if done, code := h.m.Done(); !done || code != 1 {
		t.Errorf("Done() = %v, %d; want true, 1 (a leftover had to be killed)", done, code)
	}
}

// TestNeverReadyKilledAfterTwoSeconds: a worker stopped before it was ever ready has served
// nothing, so SIGKILL comes 2s after the stop signal, not after NARWHAL_STOP_TIMEOUT.
func TestNeverReadyKilledAfterTwoSeconds(t *testing.T) {
	p := params(2)
	p.StopTimeout = 25 * time.Second
	h := newHarness(t, p)
	h.m.Start(h.now)
	ready, starting := h.w.spawned[0].pid, h.w.spawned[1].pid
	h.m.MarkReady(h.now, ready)
	h.m.Stop(h.now)
	h.advance(unreadyKill - time.Millisecond)
	if h.w.signalled(starting, syscall.SIGKILL) {
		t.Fatal("SIGKILL before 2s")
	}
	h.advance(time.Millisecond)
	if !h.w.signalled(starting, syscall.SIGKILL) {
		t.Error("a never-ready worker got no SIGKILL 2s after the stop signal")
	}
	if h.w.signalled(ready, syscall.SIGKILL) {
		t.Error("a ready worker got SIGKILL before NARWHAL_STOP_TIMEOUT")
	}
	h.advance(p.StopTimeout - unreadyKill)
	if !h.w.signalled(ready, syscall.SIGKILL) {
		t.Error("a ready worker got no SIGKILL after NARWHAL_STOP_TIMEOUT")
	}
}

// TestEveryRolloutEnds drives the machine with random events (crashes, readiness, exits, restart
// signals, scaling, time) and checks, after each, that no rollout outlives its last start (or
// the last stop to begin, which holds a place of the N + surge) by more than a ready timeout
// plus the time a stopping worker may take.
func TestEveryRolloutEnds(t *testing.T) {
	for seed := uint64(1); seed <= 300; seed++ {
		r := rand.New(rand.NewPCG(seed, 0))
		p := params(1 + r.IntN(4))
		p.Surge = 1 + r.IntN(2)
		p.ReadyTimeout = time.Second
		p.StopTimeout = time.Second
		h := newHarness(t, p)
		h.m.Start(h.now)
		var lastStart time.Time // of a spawn or a stop during a rollout: a stop holds a surge place
		spawned := 0
		stopping := map[int]bool{}
		for step := 0; step < 2000; step++ {
			ws := h.m.Workers()
			switch k := r.IntN(100); {
			case k == 0:
				h.m.Restart(h.now)
			case k < 10 && len(ws) > 0:
				w := ws[r.IntN(len(ws))]
				h.m.Exited(h.now, w.PID, 1, false)
			case k < 40 && len(ws) > 0:
				if w := ws[r.IntN(len(ws))]; w.State == Starting && r.IntN(3) > 0 {
					h.m.MarkReady(h.now, w.PID)
				}
			case k < 50 && len(ws) > 0:
				if w := ws[r.IntN(len(ws))]; w.State == Stopping {
					h.m.Exited(h.now, w.PID, 0, false)
				}
			case k == 50:
				h.m.ScaleUp(h.now)
			case k == 51:
				h.m.ScaleDown(h.now)
			default:
				h.now = h.now.Add(time.Duration(r.IntN(500)) * time.Millisecond)
				h.m.Tick(h.now)
			}
			if len(h.w.spawned) > spawned && h.m.rollout != nil {
				lastStart = h.now
			}
			for _, w := range h.m.Workers() {
				if w.State == Stopping && !stopping[w.PID] {
					stopping[w.PID] = true
					lastStart = h.now
				}
			}
			spawned = len(h.w.spawned)
			if h.m.rollout == nil {
				continue
			}
			since := lastStart
			if h.m.rollout.started.After(since) {
				since = h.m.rollout.started
			}
			if limit := p.ReadyTimeout + p.StopTimeout + abandonAfter; h.now.Sub(since) > limit {
				var state []string
				for _, w := range h.m.Workers() {
					state = append(state, fmt.Sprintf("slot %d pid %d gen %d %s repl=%v", w.Slot, w.PID, w.Gen, w.State, w.replacement))
				}
				for id := 0; id < h.m.desired; id++ {
					sl := h.m.slot(id)
					state = append(state, fmt.Sprintf("slot %d: replace=%q notBefore in %s", id, sl.replace, sl.notBefore.Sub(h.now)))
				}
				t.Fatalf("seed %d: rollout of generation %d under way %s after its last start; desired %d:\n%s",
					seed, h.m.rollout.gen, h.now.Sub(since), h.m.desired, strings.Join(state, "\n"))
			}
		}
	}
}

// sentGroup reports whether process group pgid got sig.
func (h *harness) sentGroup(pgid int, sig syscall.Signal) bool {
	for _, s := range h.w.signals {
		if s.pid == pgid && s.sig == sig && s.group {
			return true
		}
	}
	return false
}

// TestRecycleRefillsAfterExit: a worker stopped to free its memory is replaced only once it has
// exited, so the two never hold memory at once.
func TestRecycleRefillsAfterExit(t *testing.T) {
	h := newHarness(t, params(2))
	h.start()
	pid := h.pids(Ready)[0]
	spawned := len(h.w.spawned)
	h.m.Recycle(h.now, pid, ReasonMemory)
	if !h.w.signalled(pid, syscall.SIGTERM) {
		t.Fatal("the recycled worker got no stop signal")
	}
	h.advance(time.Second)
	if len(h.w.spawned) != spawned {
		t.Fatal("its slot was refilled while it was still stopping")
	}
	h.m.Exited(h.now, pid, 0, false)
	if len(h.w.spawned) != spawned+1 {
		t.Fatal("its slot was not refilled once it had exited")
	}
	if h.m.Stats.Exits[ReasonMemory] != 1 {
		t.Errorf("exits %v, want one memory", h.m.Stats.Exits)
	}
}
