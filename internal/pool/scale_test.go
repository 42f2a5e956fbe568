package pool

import (
	"testing"
	"time"
)

// feed samples the queue every 100 ms from t for d, waiting or not.
func feed(c *Scaler, t time.Time, d time.Duration, waiting bool) time.Time {
	for end := t.Add(d); t.Before(end); t = t.Add(SampleEvery) {
		c.SampleQueue(t, waiting)
	}
	return t
}

func TestScalerUp(t *testing.T) {
	c := &Scaler{up: time.Second, down: time.Minute}
	now := feed(c, t0, time.Second, false)
	if step, _ := c.Decide(now, 2, 1, 4); step != 0 {
		t.Fatalf("nothing waited, step %d", step)
	}
	now = feed(c, now, 400*time.Millisecond, true) // waiting for 40% of the last second
	if step, _ := c.Decide(now, 2, 1, 4); step != 0 {
		t.Fatalf("waiting 40%% of the window, step %d", step)
	}
	now = feed(c, now, 300*time.Millisecond, true) // 70%
	step, why := c.Decide(now, 2, 1, 4)
	if step != +1 || len(why) == 0 {
		t.Fatalf("waiting 70%% of the window: step %d, %v; want +1 with the figures", step, why)
	}
	if step, _ := c.Decide(now.Add(SampleEvery), 3, 1, 4); step != 0 {
		t.Error("a second step before a new window")
	}
	now = feed(c, now, time.Second, true)
	if step, _ := c.Decide(now, 4, 1, 4); step != 0 {
		t.Error("grew past MAX")
	}
}

func TestScalerDown(t *testing.T) {
	c := &Scaler{up: time.Second, down: time.Minute}
	now := t0
	cpu := 0.0
	for i := 0; i < 61; i++ { // a minute of quiet, the pool using 1.5 CPUs
		feed(c, now, time.Second, false)
		c.SampleCPU(now, cpu)
		now, cpu = now.Add(time.Second), cpu+1.5
	}
	if step, why := c.Decide(now, 3, 1, 4); step != -1 {
		t.Fatalf("1.5 CPUs of 3 workers for a quiet minute: step %d (%v), want -1", step, why)
	}
	if step, _ := c.Decide(now, 2, 1, 4); step != 0 {
		t.Error("a second step before a new window")
	}

	c = &Scaler{up: time.Second, down: time.Minute}
	now, cpu = t0, 0
	for i := 0; i < 61; i++ { // quiet, but 2.5 CPUs: would not fit in 2 workers
		feed(c, now, time.Second, false)
		c.SampleCPU(now, cpu)
		now, cpu = now.Add(time.Second), cpu+2.5
	}
	if step, _ := c.Decide(now, 3, 1, 4); step != 0 {
		t.Error("shrank a pool whose CPU would not fit in one worker fewer")
	}
	if step, _ := c.Decide(now, 1, 1, 4); step != 0 {
		t.Error("shrank below MIN")
	}
}

// TestScalerDownShortWindow: a down window no longer than the CPU sampling period (1s) still
// has figures: the baseline is the last CPU sample at or before the window's start.
func TestScalerDownShortWindow(t *testing.T) {
	c := &Scaler{up: time.Second, down: time.Second}
	now := t0
	for i := 0; i < 3; i++ {
		feed(c, now, time.Second, false)
		c.SampleCPU(now, 0.01*float64(i))
		now = now.Add(time.Second)
	}
	c.SampleCPU(now, 0.03)
	if step, why := c.Decide(now, 3, 1, 3); step != -1 {
		t.Errorf("idle for 3 one-second windows: step %d (%v), want -1", step, why)
	}
}
