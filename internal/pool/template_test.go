package pool

import (
	"syscall"
	"testing"
	"time"
)

func preloadHarness(t *testing.T, n int) *harness {
	p := params(n)
	p.Preload = true
	h := newHarness(t, p)
	h.m.Start(h.now)
	return h
}

// template returns the live template of gen, failing the test if there is none.
func (h *harness) template(gen int) Template {
	h.t.Helper()
	for _, tp := range h.m.Templates() {
		if tp.Gen == gen && tp.State != Stopping {
			return tp
		}
	}
	h.t.Fatalf("no live template of generation %d: %+v", gen, h.m.Templates())
	return Template{}
}

// servingPool is a preload pool of n ready workers of generation 1.
func servingPool(t *testing.T, n int) *harness {
	h := preloadHarness(t, n)
	h.m.TemplateReady(h.now, h.template(1).PID)
	h.readyAll()
	if got := h.m.Count(Ready); got != n {
		t.Fatalf("%d ready workers, want %d", got, n)
	}
	return h
}

func TestPreloadForksOnlyOnceTheTemplateIsReady(t *testing.T) {
	h := preloadHarness(t, 3)
	if len(h.w.templates) != 1 || h.w.templates[0].gen != 1 {
		t.Fatalf("templates started: %+v, want one of generation 1", h.w.templates)
	}
	if len(h.w.spawned) != 0 {
		t.Fatalf("%d workers forked before the template reached its fork point", len(h.w.spawned))
	}
	h.m.TemplateReady(h.now, h.template(1).PID)
	if len(h.w.spawned) != 3 {
		t.Fatalf("%d workers forked, want 3", len(h.w.spawned))
	}
	for _, c := range h.w.spawned {
		if c.gen != 1 {
			t.Errorf("slot %d forked from generation %d, want 1", c.slot, c.gen)
		}
	}
}

func TestPreloadRolloutForksFromTheNewTemplate(t *testing.T) {
	h := servingPool(t, 2)
	old := h.template(1)
	h.minReady = 2
	h.m.Restart(h.now)
	if len(h.w.templates) != 2 || h.w.templates[1].gen != 2 {
		t.Fatalf("templates started: %+v, want generation 2's", h.w.templates)
	}
	if h.m.Count(Starting) != 0 {
		t.Fatal("a replacement was forked before the new template reached its fork point")
	}
	h.advance(time.Second)
	h.m.TemplateReady(h.now, h.template(2).PID)
	for i := 0; i < 4 && h.m.rollout != nil; i++ {
		h.readyAll()
		h.exitStopping()
	}
	if h.m.rollout != nil || h.m.Stats.Rollouts[RolloutCompleted] != 1 {
		t.Fatalf("rollout not completed: %+v", h.m.Stats.Rollouts)
	}
	for _, w := range h.m.Workers() {
		if w.Gen != 2 {
			t.Errorf("slot %d serves generation %d after the rollout", w.Slot, w.Gen)
		}
	}
	if !h.w.signalled(old.PID, syscall.SIGKILL) {
		t.Error("the old template was not stopped once the rollout completed")
	}
	h.m.Exited(h.now, old.PID, 137, false)
	if got := h.m.Templates(); len(got) != 1 || got[0].Gen != 2 {
		t.Fatalf("templates after the rollout: %+v, want generation 2's only", got)
	}
	// A crash now forks from generation 2's template.
	h.minReady = -1
	w := h.m.Workers()[0]
	h.m.Exited(h.now, w.PID, 1, false)
	h.advance(time.Second)
	if last := h.w.spawned[len(h.w.spawned)-1]; last.gen != 2 || last.slot != w.Slot {
		t.Fatalf("crash restart %+v, want slot %d from generation 2", last, w.Slot)
	}
}

func TestPreloadTemplateThatNeverReachesItsForkPointAbortsTheRollout(t *testing.T) {
	for _, how := range []string{"timeout", "exit"} {
		t.Run(how, func(t *testing.T) {
			h := servingPool(t, 2)
			before := h.m.Workers()
			h.m.Restart(h.now)
			tp := h.template(2)
			switch how {
			case "timeout":
				h.advance(h.m.p.ReadyTimeout)
				if !h.w.signalled(tp.PID, syscall.SIGKILL) {
					t.Fatal("the template past its ready timeout was not killed")
				}
			case "exit":
				h.advance(time.Second)
				h.m.Exited(h.now, tp.PID, 1, false)
			}
			if h.m.Stats.Rollouts[RolloutAborted] != 1 || h.m.rollout != nil {
				t.Fatalf("rollout not aborted: %+v", h.m.Stats.Rollouts)
			}
			for _, w := range before {
				if h.w.signalled(w.PID, syscall.SIGTERM) || h.m.workers[w.PID] == nil {
					t.Errorf("old worker %d was touched", w.PID)
				}
			}
			h.template(1) // the old generation's template is kept
			h.advance(time.Minute)
			if len(h.w.templates) != 2 {
				t.Errorf("%d templates started after the abort, want no more", len(h.w.templates))
			}
		})
	}
}

func TestPreloadTemplateDeathLeavesItsWorkers(t *testing.T) {
	h := servingPool(t, 2)
	tp := h.template(1)
	signals := len(h.w.signals)
	h.m.Exited(h.now, tp.PID, 137, false)
	for _, sig := range h.w.signals[signals:] {
		if sig.pid != tp.PID {
			t.Fatalf("workers were signalled when their template died: %+v", h.w.signals[signals:])
		}
	}
	if h.m.Count(Ready) != 2 {
		t.Fatal("workers lost with their template")
	}
	h.advance(time.Second)
	next := h.template(1) // started again after the backoff
	if next.PID == tp.PID {
		t.Fatal("not started again")
	}
	// A crash meanwhile waits for the template, then forks from it.
	w := h.m.Workers()[1]
	h.m.Exited(h.now, w.PID, 1, false)
	h.advance(time.Second)
	spawned := len(h.w.spawned)
	h.m.TemplateReady(h.now, next.PID)
	if len(h.w.spawned) != spawned+1 || h.w.spawned[spawned].slot != w.Slot {
		t.Fatalf("crashed slot not forked once its template was back: %+v", h.w.spawned)
	}
}

func TestPreloadTemplateFailingAtBootBacksOff(t *testing.T) {
	h := preloadHarness(t, 1)
	var gaps []time.Duration
	last := h.now
	for i := 0; i < 4; i++ {
		tp := h.template(1)
		h.m.Exited(h.now, tp.PID, 1, false)
		n := len(h.w.templates)
		for len(h.w.templates) == n {
			h.advance(10 * time.Millisecond)
		}
		gaps = append(gaps, h.now.Sub(last))
		last = h.now
	}
	for i := 1; i < len(gaps); i++ {
		if gaps[i] < 2*gaps[i-1]-20*time.Millisecond {
			t.Fatalf("backoff does not double: %v", gaps)
		}
	}
}

func TestPreloadStopEndsTheTemplate(t *testing.T) {
	h := servingPool(t, 1)
	tp := h.template(1)
	h.m.Stop(h.now)
	if !h.w.signalled(tp.PID, syscall.SIGKILL) {
		t.Fatal("the template was not killed at the graceful stop")
	}
	h.exitStopping()
	if done, _ := h.m.Done(); done {
		t.Fatal("done before the template exited")
	}
	h.m.Exited(h.now, tp.PID, 137, false)
	if done, code := h.m.Done(); !done || code != 0 {
		t.Fatalf("done %v code %d after every process exited", done, code)
	}
}

func TestPreloadCanaryWaitsForTheTemplate(t *testing.T) {
	p := params(2)
	p.Preload, p.Canary = true, 5*time.Second
	h := newHarness(t, p)
	h.m.Start(h.now)
	h.m.TemplateReady(h.now, h.template(1).PID)
	h.readyAll()
	h.m.Restart(h.now)
	h.m.TemplateReady(h.now, h.template(2).PID)
	if h.m.Count(Starting) != 1 {
		t.Fatalf("%d workers starting, want the canary alone", h.m.Count(Starting))
	}
}

// TestPreloadRolloutReachesEverySlot: a slot filled while a rollout waits for its template is
// forked from the old one and replaced once the new one is ready, so the rollout completes
// whatever filled the slot: SIGWINCH then SIGHUP, a slot in crash backoff, SIGTTIN, a rollout
// begun before the first template was ready.
func TestPreloadRolloutReachesEverySlot(t *testing.T) {
	for _, how := range []string{"winch", "backoff", "scale up", "early"} {
		t.Run(how, func(t *testing.T) {
			h := preloadHarness(t, 2)
			if how != "early" {
				h.m.TemplateReady(h.now, h.template(1).PID)
				h.readyAll()
			}
			switch how {
			case "winch":
				h.m.Zero(h.now)
				h.exitStopping()
				h.m.Restart(h.now)
			case "backoff":
				w := h.m.Workers()[0]
				h.m.Exited(h.now, w.PID, 1, false)
				h.m.Restart(h.now)
			case "scale up":
				h.m.Restart(h.now)
				h.m.ScaleUp(h.now)
			case "early":
				h.m.Restart(h.now)
				h.m.TemplateReady(h.now, h.template(1).PID)
			}
			h.advance(time.Second)
			h.readyAll()
			h.m.TemplateReady(h.now, h.template(2).PID)
			for i := 0; i < 10 && h.m.rollout != nil; i++ {
				h.readyAll()
				h.exitStopping()
				h.advance(100 * time.Millisecond)
			}
			if h.m.rollout != nil {
				t.Fatalf("rollout still under way; workers %+v", h.m.Workers())
			}
			for _, w := range h.m.Workers() {
				if w.Gen != 2 && w.State != Stopping {
					t.Errorf("slot %d serves generation %d after the rollout", w.Slot, w.Gen)
				}
			}
		})
	}
}

// TestPreloadCrashDuringRolloutBacksOff: an old worker that crashes while the rollout's template
// boots comes back from the old template after its backoff, not at once in a loop.
func TestPreloadCrashDuringRolloutBacksOff(t *testing.T) {
	h := servingPool(t, 1)
	h.m.Restart(h.now)
	w := h.m.Workers()[0]
	spawned := len(h.w.spawned)
	h.m.Exited(h.now, w.PID, 1, false)
	if len(h.w.spawned) != spawned {
		t.Fatal("the crashed slot was forked again at once, with no backoff, from the old template")
	}
	h.advance(time.Second)
	if len(h.w.spawned) != spawned+1 || h.w.spawned[spawned].gen != 1 {
		t.Fatalf("after the backoff: %+v, want one fork from generation 1", h.w.spawned[spawned:])
	}
}
