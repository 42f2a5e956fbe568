package pool

import "time"

// SampleEvery is how often the accept queues are read for the dynamic size.
const SampleEvery = 100 * time.Millisecond

// Scaler decides the dynamic size of NARWHAL_WORKERS=MIN-MAX from what narwhal sees of any
// worker in any language: its listeners' accept queues and the workers' CPU time. It adds one
// worker when connections have waited in a queue for most of the up window, and removes one
// when none has waited for the whole down window and the workers' CPU use would have fitted in
// one worker fewer. One step at a time: each step starts the windows afresh. It is plain data.
type Scaler struct {
	up, down time.Duration
	since    time.Time // start of the current windows: the first sample, or the last step
	queue    []queueSample
	cpu      []cpuSample
}

type queueSample struct {
	at      time.Time
	waiting bool
}

type cpuSample struct {
	at      time.Time
	seconds float64 // the pool's CPU time so far
}

// NewScaler returns a scaler that adds a worker after connections waited for most of up, and
// removes one after down without any waiting.
func NewScaler(up, down time.Duration) *Scaler { return &Scaler{up: up, down: down} }

// SampleQueue records whether any connection waits in an accept queue now.
func (c *Scaler) SampleQueue(now time.Time, waiting bool) {
	if c.since.IsZero() {
		c.since = now
	}
	c.queue = append(trimBefore(c.queue, now.Add(-c.down), func(q queueSample) time.Time { return q.at }),
		queueSample{now, waiting})
}

// SampleCPU records the pool's CPU time so far.
func (c *Scaler) SampleCPU(now time.Time, seconds float64) {
	c.cpu = append(trimBefore(c.cpu, now.Add(-c.down-time.Minute), func(s cpuSample) time.Time { return s.at }),
		cpuSample{now, seconds})
}

// Stepped starts the windows afresh after a step of the size, the Scaler's own or an
// operator's (SIGTTIN, SIGTTOU): a step holds for at least one whole window.
func (c *Scaler) Stepped(now time.Time) { c.since = now }

// Decide returns +1, -1 or 0 for a pool of desired workers within [min, max], and the figures
// that decided it, for the log.
func (c *Scaler) Decide(now time.Time, desired, min, max int) (int, []any) {
	if c.since.IsZero() {
		return 0, nil
	}
	if desired < max && now.Sub(c.since) >= c.up {
		waited, n := 0, 0
		for _, q := range c.queue {
			if !q.at.Before(now.Add(-c.up)) {
				n++
				if q.waiting {
					waited++
				}
			}
		}
		if n > 0 && 2*waited > n {
			c.Stepped(now)
			return +1, []any{"reason", "queue", "waited_share", float64(waited) / float64(n), "window", c.up.String()}
		}
	}
	if desired > min && now.Sub(c.since) >= c.down {
		for _, q := range c.queue {
			if q.waiting && !q.at.Before(now.Add(-c.down)) {
				return 0, nil
			}
		}
		// CPU over the window: from the last sample at or before its start to the newest.
		base := -1
		for i, s := range c.cpu {
			if !s.at.After(now.Add(-c.down)) {
				base = i
			}
		}
		if base < 0 || base == len(c.cpu)-1 {
			return 0, nil // not a window's worth of figures yet
		}
		a, b := c.cpu[base], c.cpu[len(c.cpu)-1]
		cores := (b.seconds - a.seconds) / b.at.Sub(a.at).Seconds()
		if cores <= float64(desired-1) {
			c.Stepped(now)
			return -1, []any{"reason", "idle", "cpu_cores", cores, "window", c.down.String()}
		}
	}
	return 0, nil
}

// trimBefore drops the leading items older than t.
func trimBefore[T any](items []T, t time.Time, at func(T) time.Time) []T {
	i := 0
	for i < len(items) && at(items[i]).Before(t) {
		i++
	}
	return append(items[:0], items[i:]...)
}
