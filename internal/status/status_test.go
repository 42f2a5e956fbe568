package status

import (
	"context"
	"testing"
	"time"
)

// TestReady is /readyz's decision, check by check: the first reason that holds is the answer.
func TestReady(t *testing.T) {
	for _, tc := range []struct {
		name     string
		minReady int
		snap     Snapshot
		drain    bool
		ready    bool
		reason   string
	}{
		{"nothing published yet", 1, Snapshot{}, false, false, "starting"},
		{"pool with none ready", 1, Snapshot{Mode: "pool", ReadyCount: 0}, false, false, "ready workers below NARWHAL_MIN_READY"},
		{"pool with one ready", 1, Snapshot{Mode: "pool", ReadyCount: 1}, false, true, ""},
		{"below NARWHAL_MIN_READY", 3, Snapshot{Mode: "pool", ReadyCount: 2}, false, false, "ready workers below NARWHAL_MIN_READY"},
		{"at NARWHAL_MIN_READY", 3, Snapshot{Mode: "pool", ReadyCount: 3}, false, true, ""},
		{"init mode, child runs", 1, Snapshot{Mode: "init", ReadyCount: 1}, false, true, ""},
		{"stopping", 1, Snapshot{Mode: "pool", ReadyCount: 4, Stopping: true}, false, false, "stopping"},
		{"draining", 1, Snapshot{Mode: "pool", ReadyCount: 4}, true, false, "draining"},
		{"draining wins over stopping", 1, Snapshot{Mode: "pool", Stopping: true}, true, false, "draining"},
		{"stopping wins over too few", 2, Snapshot{Mode: "pool", Stopping: true}, false, false, "stopping"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := New(tc.minReady, time.Second)
			b.Publish(&tc.snap)
			if tc.drain {
				b.Drain(time.Now())
			}
			ready, reason := b.Ready()
			if ready != tc.ready || reason != tc.reason {
				t.Errorf("Ready() = %v, %q; want %v, %q", ready, reason, tc.ready, tc.reason)
			}
		})
	}
}

// TestDrainOnce: the first Drain begins it; later ones are told when, and that it was not theirs.
func TestDrainOnce(t *testing.T) {
	b := New(1, 5*time.Second)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if since, first := b.Drain(t0); !first || !since.Equal(t0) {
		t.Errorf("first Drain = %v, %v; want %v, true", since, first, t0)
	}
	if since, first := b.Drain(t0.Add(time.Second)); first || !since.Equal(t0) {
		t.Errorf("second Drain = %v, %v; want %v, false", since, first, t0)
	}
	if !b.Draining() {
		t.Error("not draining after Drain")
	}
}

// TestAskNeedsTheLoop: a ping is answered only when the loop closes it, and gives up when the
// context ends first (a stuck loop makes /livez fail, not hang).
func TestAskNeedsTheLoop(t *testing.T) {
	b := New(1, 0)
	go func() { close(<-b.Pings()) }()
	if !b.Ping(context.Background()) {
		t.Error("a ping the loop answered reported unanswered")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if b.Ping(ctx) {
		t.Error("a ping nobody answered reported answered")
	}
}

// TestObservationsBounded: what waits for a scrape is bounded, keeping the newest.
func TestObservationsBounded(t *testing.T) {
	b := New(1, 0)
	for i := 0; i < maxObservations+10; i++ {
		b.Observe([]float64{float64(i)}, nil)
	}
	ready, _ := b.TakeObservations()
	if len(ready) != maxObservations || ready[len(ready)-1] != float64(maxObservations+9) {
		t.Errorf("%d observations kept, last %v; want %d, the newest", len(ready), ready[len(ready)-1], maxObservations)
	}
	if ready, _ := b.TakeObservations(); len(ready) != 0 {
		t.Errorf("%d observations taken twice", len(ready))
	}
}
