// Package status is what narwhal shows of itself: the loop posts a whole Snapshot on the Board
// after every event, for the readers that must not touch its state (metrics, health endpoints,
// the control socket), which only ever see a complete one. It also owns the vocabulary they
// share: the signals narwhal acts on. What flows the other way is a liveness ping and a request
// for fresh figures, both answered by the loop itself, and the drain flag.
package status

import (
	"context"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/narwhal-init/narwhal/internal/proc"
)

// Worker is one process as the status and the metrics show it.
type Worker struct {
	Slot       int       `json:"slot"`
	PID        int       `json:"pid"`
	Generation int       `json:"generation"`
	State      string    `json:"state"`
	Started    time.Time `json:"-"`
	Restarts   int       `json:"restarts"`
	// Resident is the resident memory of it and its descendants at the last scan; Proportional
	// their PSS, each shared page counted as a share (0 when unknown); Merged what ksmd merged.
	Resident     int64 `json:"-"`
	Proportional int64 `json:"-"`
	Merged       int64 `json:"-"`
}

// Template is a generation's template (NARWHAL_PRELOAD), as --status shows it.
type Template struct {
	PID        int       `json:"pid"`
	Generation int       `json:"generation"`
	State      string    `json:"state"`
	Started    time.Time `json:"-"`
	// Proportional is its PSS (0 when unknown): what it holds beyond its workers' shares.
	Proportional int64 `json:"-"`
}

// The signals narwhal acts on itself, beyond forwarding them (see docs/signals.md).
var (
	// StopSignals stop narwhal gracefully: init mode forwards them and turns unready; a pool
	// stops its workers, and does not start after NARWHAL_PRE_START once one has come.
	StopSignals = []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT}
	// PoolSignals steer a pool: restart (HUP, USR2), scale (TTIN, TTOU, WINCH), reopen logs (USR1).
	PoolSignals = []syscall.Signal{syscall.SIGHUP, syscall.SIGUSR2, syscall.SIGUSR1, syscall.SIGTTIN,
		syscall.SIGTTOU, syscall.SIGWINCH}
)

// Listener is a listener and its accept queue, as the loop last read it.
type Listener struct {
	Name    string
	Network string
	Port    int
	// Queued and Backlog are its accept queue now and its size (0 when narwhal does not own
	// the socket: reuseport mode); QueueKnown is false where the kernel does not say.
	Queued, Backlog int
	QueueKnown      bool
}

// Snapshot is the loop's state at one moment.
type Snapshot struct {
	Mode       string
	Generation int
	Desired    int
	Stopping   bool
	ReadyCount int
	Workers    []Worker
	Templates  []Template // with NARWHAL_PRELOAD
	Listeners  []Listener

	Starts   int
	Exits    map[string]int // by reason
	Rollouts map[string]int // by result
	// SlotCPUSeconds is each slot's CPU time so far, every process it ever ran included.
	SlotCPUSeconds map[int]float64
	// SharesKnown: the workers' proportional memory could be read; MemoryMerge: workers are
	// marked for same-page merging (NARWHAL_MEMORY_MERGE), so what ksmd merged is shown.
	SharesKnown, MemoryMerge bool
	// Container is the container's memory and accept-queue overflows, at the last look.
	Container proc.Container
}

// Board holds the latest snapshot and what readers add to it.
type Board struct {
	MinReady   int
	DrainDelay time.Duration

	snap       atomic.Pointer[Snapshot]
	drainSince atomic.Int64 // when --drain first ran, in Unix nanoseconds; 0 before
	pings      chan chan struct{}
	refresh    chan chan struct{}

	refused atomic.Uint64 // control socket clients refused, for the metrics

	mu             sync.Mutex
	signals        map[string]int
	readySeconds   []float64
	rolloutSeconds []float64
}

// New returns a board whose readiness needs minReady ready workers.
func New(minReady int, drainDelay time.Duration) *Board {
	b := &Board{MinReady: minReady, DrainDelay: drainDelay, pings: make(chan chan struct{}),
		refresh: make(chan chan struct{}), signals: map[string]int{}}
	b.snap.Store(&Snapshot{})
	return b
}

// Publish replaces the snapshot; the loop calls it after every event.
func (b *Board) Publish(s *Snapshot) { b.snap.Store(s) }

// Snapshot is the latest published state.
func (b *Board) Snapshot() *Snapshot { return b.snap.Load() }

// Drain makes narwhal unready for good; workers keep serving. It returns when the drain began,
// and whether this call began it.
func (b *Board) Drain(now time.Time) (since time.Time, first bool) {
	if b.drainSince.CompareAndSwap(0, now.UnixNano()) {
		return now, true
	}
	return time.Unix(0, b.drainSince.Load()), false
}

// Draining reports whether Drain was called.
func (b *Board) Draining() bool { return b.drainSince.Load() != 0 }

// Ready is /readyz: enough ready workers, and neither draining nor stopping. It returns why not.
func (b *Board) Ready() (bool, string) {
	s := b.Snapshot()
	switch {
	case b.Draining():
		return false, "draining"
	case s.Stopping:
		return false, "stopping"
	case s.Mode == "":
		return false, "starting"
	case s.ReadyCount < b.MinReady:
		return false, "ready workers below NARWHAL_MIN_READY"
	}
	return true, ""
}

// Pings is the channel the loop must serve: it closes each request it receives.
func (b *Board) Pings() <-chan chan struct{} { return b.pings }

// Ping asks the loop to answer, and reports whether it did before ctx ended.
func (b *Board) Ping(ctx context.Context) bool { return ask(ctx, b.pings) }

// Refreshes is the channel on which the loop takes requests for fresh usage figures: it reads
// /proc, publishes, then closes the request.
func (b *Board) Refreshes() <-chan chan struct{} { return b.refresh }

// Refresh asks the loop for a snapshot with fresh memory and CPU figures, and reports whether
// one was published before ctx ended (--status; otherwise they are up to a second old).
func (b *Board) Refresh(ctx context.Context) bool { return ask(ctx, b.refresh) }

// ask sends a request to the loop on ch and waits for the loop to close it.
func ask(ctx context.Context, ch chan chan struct{}) bool {
	done := make(chan struct{})
	select {
	case ch <- done:
	case <-ctx.Done():
		return false
	}
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}

// CountSignal records a signal narwhal received.
func (b *Board) CountSignal(name string) {
	b.mu.Lock()
	b.signals[name]++
	b.mu.Unlock()
}

// Signals are the signal counts so far.
func (b *Board) Signals() map[string]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]int, len(b.signals))
	for k, v := range b.signals {
		out[k] = v
	}
	return out
}

// CountControlRefused records a control socket client refused for its uid.
func (b *Board) CountControlRefused() { b.refused.Add(1) }

// ControlRefused is how many control socket clients were refused so far.
func (b *Board) ControlRefused() uint64 { return b.refused.Load() }

// Observe records a worker's start-to-ready and a completed rollout's duration, in seconds.
func (b *Board) Observe(ready, rollouts []float64) {
	if len(ready)+len(rollouts) == 0 {
		return
	}
	b.mu.Lock()
	b.readySeconds = keepLast(append(b.readySeconds, ready...))
	b.rolloutSeconds = keepLast(append(b.rolloutSeconds, rollouts...))
	b.mu.Unlock()
}

// maxObservations bounds what waits for a scrape, for a narwhal that nobody scrapes.
const maxObservations = 4096

func keepLast(s []float64) []float64 {
	if len(s) > maxObservations {
		return append([]float64(nil), s[len(s)-maxObservations:]...)
	}
	return s
}

// TakeObservations hands the observations since the last call to the metrics' histograms.
func (b *Board) TakeObservations() (ready, rollouts []float64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ready, rollouts = b.readySeconds, b.rolloutSeconds
	b.readySeconds, b.rolloutSeconds = nil, nil
	return ready, rollouts
}
