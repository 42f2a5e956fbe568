package pool

import (
	"testing"
	"time"
)

// TestChooseBudget: the largest ready worker is chosen; it is stopped first only when the room
// left would not hold a worker of the median size.
func TestChooseBudget(t *testing.T) {
	workers := []Worker{
		{PID: 1, State: Ready}, {PID: 2, State: Ready}, {PID: 3, State: Ready},
		{PID: 4, State: Starting}, // the largest, but not serving: never chosen
	}
	size := func(w Worker) int64 { return map[int]int64{1: 100, 2: 300, 3: 200, 4: 900}[w.PID] }
	for _, tc := range []struct {
		room      int64
		stopFirst bool
	}{{1000, false}, {200, false}, {199, true}, {0, true}} {
		b, ok := ChooseBudget(workers, size, tc.room)
		if !ok || b.Worker.PID != 2 || b.Bytes != 300 || b.Median != 200 || b.StopFirst != tc.stopFirst {
			t.Errorf("room %d: %+v, %v; want worker 2 of 300 bytes, median 200, stop first %v", tc.room, b, ok, tc.stopFirst)
		}
	}
	if _, ok := ChooseBudget(workers[3:], size, 0); ok {
		t.Error("a worker was chosen among none ready")
	}
}

// TestOOMLedger: each kill the cgroup counted explains one SIGKILL exit within the window; other
// exits, later ones and kills from before the pool started explain nothing.
func TestOOMLedger(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var l OOMLedger
	l.Base(3) // before the pool
	if l.Claim(t0, 137) {
		t.Fatal("a kill from before the pool was claimed")
	}
	l.Note(t0, 5) // two kills
	if l.Claim(t0, 1) || l.Claim(t0, 143) {
		t.Error("an exit that was not SIGKILL claimed a kill")
	}
	if !l.Claim(t0.Add(time.Second), 137) || !l.Claim(t0.Add(2*time.Second), 137) {
		t.Error("two SIGKILL exits did not claim the two kills")
	}
	if l.Claim(t0.Add(2*time.Second), 137) {
		t.Error("a third SIGKILL exit claimed a kill that was not counted")
	}
	l.Note(t0, 6)
	if l.Claim(t0.Add(oomWindow+time.Millisecond), 137) {
		t.Error("an exit after the window claimed the kill")
	}
}
