package pool

import (
	"context"
	"log/slog"
	"sort"
	"syscall"
	"time"
)

// State is where a worker is in its life.
type State int

const (
	Starting State = iota // spawned, not yet ready
	Ready                 // serving
	Stopping              // asked to stop; gone when its exit is reaped
)

func (s State) String() string { return [...]string{"starting", "ready", "stopping"}[s] }

// Exit reasons, the label values of narwhal_worker_exits_total.
const (
	ReasonCrash        = "crash"
	ReasonOOM          = "oom"
	ReasonStop         = "stop"
	ReasonWatchdog     = "watchdog"
	ReasonMemory       = "memory"
	ReasonLifetime     = "lifetime"
	ReasonReadyTimeout = "ready_timeout"
)

// Rollout results, the label values of narwhal_rollouts_total.
const (
	RolloutCompleted  = "completed"
	RolloutAborted    = "aborted"
	RolloutSuperseded = "superseded"
)

// The label values of narwhal_workers, narwhal_worker_exits_total and narwhal_rollouts_total:
// every value each can take, so that the metrics expose each from the start.
var (
	States         = []State{Starting, Ready, Stopping}
	ExitReasons    = []string{ReasonCrash, ReasonOOM, ReasonStop, ReasonWatchdog, ReasonMemory, ReasonLifetime, ReasonReadyTimeout}
	RolloutResults = []string{RolloutCompleted, RolloutAborted, RolloutSuperseded}
)

// readyResetAfter is how long a worker must stay ready before its slot's crash backoff resets.
const readyResetAfter = 30 * time.Second

// unreadyKill is how long a worker that was never ready gets between the stop signal and
// SIGKILL: it has served nothing, so a hung release must not hold a surge slot, or the next
// deploy, for the whole NARWHAL_STOP_TIMEOUT.
const unreadyKill = 2 * time.Second

// abandonAfter bounds the wait for a worker to exit after SIGKILL, which it cannot refuse but may
// be slow to act on in uninterruptible sleep. Past it the worker is given up as lost.
const abandonAfter = 5 * time.Second

// Worker is one process of the pool.
type Worker struct {
	PID      int
	Slot     int
	Gen      int
	State    State
	Started  time.Time
	ReadyAt  time.Time
	Restarts int // earlier restarts of this slot after crashes

	replacement bool      // started to take over its slot from an older worker
	reason      string    // why it is stopping; empty means it was not asked
	killAt      time.Time // when a stopping worker gets SIGKILL
	killed      bool
	lastPing    time.Time // last WATCHDOG=1, or when it became ready
	retireAt    time.Time // MaxLifetime: when it is replaced; zero for never
}

// Effects are what the machine does to the world; the supervisor runs processes, tests record.
type Effects interface {
	// Spawn starts a worker for slot in generation gen and returns its PID and when it started
	// (zero for the time the machine was given).
	Spawn(slot, gen int) (pid int, started time.Time, err error)
	// Signal sends sig to pid, or to its whole process group, and reports whether any
	// process received it.
	Signal(pid int, sig syscall.Signal, group bool) bool
	// Ready tells the world that pid serves now (it booted at a lower CPU priority).
	Ready(pid int)
	// SpawnTemplate starts generation gen's template (NARWHAL_PRELOAD); with preload, Spawn
	// forks the worker from gen's template, which is at its fork point.
	SpawnTemplate(gen int) (pid int, started time.Time, err error)
}

// Params are the settings the machine follows.
type Params struct {
	Workers         int // desired size at start, and after SIGWINCH + SIGHUP; a range's MIN
	MaxWorkers      int // a range's MAX, within which the size moves; 0 without a range
	Surge           int
	ReadyTimeout    time.Duration
	ReadyDelay      time.Duration // > 0 when readiness is a fixed delay after start
	StopSignal      syscall.Signal
	StopTimeout     time.Duration
	RestartDelay    time.Duration
	RestartDelayMax time.Duration
	// WatchdogTimeout > 0: a ready worker silent (no WATCHDOG=1) this long gets SIGABRT, then
	// SIGKILL after WatchdogKill, and is replaced.
	WatchdogTimeout time.Duration
	WatchdogKill    time.Duration
	// MaxLifetime > 0: a worker is replaced, replacement ready first, after MaxLifetime plus
	// Jitter() (a fraction from 0 to 1) of 10% of it, so a pool does not retire all at once.
	MaxLifetime time.Duration
	Jitter      func() float64
	// Canary > 0: a rollout first replaces one slot, and watches the new worker for this long
	// once it is ready, beside the old one, before any old worker stops.
	Canary time.Duration
	// Preload: workers are forked from their generation's template (see Template).
	Preload bool
}

type slot struct {
	crashes   int       // consecutive failed runs, for the backoff
	restarts  int       // every restart after a crash, for --status
	notBefore time.Time // backoff: no spawn before then
	replace   string    // non-empty: replace the serving worker, for this reason
	// refillAfterExit: the slot's worker was stopped to free its memory (Recycle), so its next
	// one starts only once it has exited.
	refillAfterExit bool
	gen             int // the generation of the slot's last worker, for preload's crash restarts
}

// Machine is the pool as plain data. Every method takes the current time, changes state, and
// calls Effects; nothing in it blocks, sleeps or reads a clock. One goroutine owns it.
type Machine struct {
	p   Params
	fx  Effects
	log *slog.Logger

	desired  int
	gen      int
	workers  map[int]*Worker
	slots    map[int]*slot
	rollout  *rollout
	stopping bool      // graceful stop of the whole pool
	stopBy   time.Time // when the graceful stop's NARWHAL_STOP_TIMEOUT ends, for everything
	exitCode int       // 1 once a worker or a leftover had to be killed during the graceful stop
	// leftovers are the process groups of exited workers that still had members when the
	// worker was reaped, each with the time it gets SIGKILL.
	leftovers map[int]time.Time
	tmpl      templates

	Stats Stats
}

type rollout struct {
	gen     int
	started time.Time
	canary  *canary // while a canary is on trial; nil without one, or once it has passed
}

// canary is the first worker of a rollout's generation, serving beside the old workers. Until
// it has been ready for Params.Canary, no other slot gets the new code and no old worker stops.
type canary struct {
	slot  int
	pid   int       // 0 until it is started
	until time.Time // zero until it is ready
	// replace is a replacement the canary asked for while on trial (WATCHDOG=trigger); its slot
	// gets it once the canary has passed and taken the slot over.
	replace string
}

// Stats are the machine's counters, read by metrics.
type Stats struct {
	Starts         int
	Exits          map[string]int
	Rollouts       map[string]int
	RolloutSeconds []float64 // durations of completed rollouts, drained by the reader
	ReadySeconds   []float64 // start-to-ready of each worker, drained by the reader
}

// NewMachine returns a pool at generation 1 with nothing started; call Start.
func NewMachine(p Params, fx Effects, log *slog.Logger) *Machine {
	return &Machine{
		p: p, fx: fx, log: log,
		desired:   p.Workers,
		gen:       1,
		workers:   map[int]*Worker{},
		slots:     map[int]*slot{},
		leftovers: map[int]time.Time{},
		tmpl:      templates{byPID: map[int]*Template{}, base: 1},
		Stats:     Stats{Exits: map[string]int{}, Rollouts: map[string]int{}},
	}
}

// Start spawns the first generation.
func (m *Machine) Start(now time.Time) { m.reconcile(now) }

// Params are the settings the machine follows.
func (m *Machine) Params() Params { return m.p }

// Generation is the newest generation asked for.
func (m *Machine) Generation() int { return m.gen }

// Desired is the number of slots the pool keeps filled.
func (m *Machine) Desired() int { return m.desired }

// Stopping reports whether a graceful stop of the whole pool has begun.
func (m *Machine) Stopping() bool { return m.stopping }

// Done reports whether the pool has stopped, leftovers included, and the code narwhal exits with.
func (m *Machine) Done() (bool, int) {
	return m.stopping && len(m.workers) == 0 && len(m.leftovers) == 0 && len(m.tmpl.byPID) == 0, m.exitCode
}

// Leftovers are the process groups of exited workers that may still have members.
func (m *Machine) Leftovers() []int {
	out := make([]int, 0, len(m.leftovers))
	for pgid := range m.leftovers {
		out = append(out, pgid)
	}
	return out
}

// LeftoverGone records that process group pgid has no member left.
func (m *Machine) LeftoverGone(pgid int) { delete(m.leftovers, pgid) }

// Workers lists the live workers by slot, then age.
func (m *Machine) Workers() []Worker {
	out := make([]Worker, 0, len(m.workers))
	for _, w := range m.workers {
		c := *w
		c.Restarts = m.slot(w.Slot).restarts
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Slot != out[j].Slot {
			return out[i].Slot < out[j].Slot
		}
		return out[i].Started.Before(out[j].Started)
	})
	return out
}

// Count is the number of live workers in state s.
func (m *Machine) Count(s State) int {
	n := 0
	for _, w := range m.workers {
		if w.State == s {
			n++
		}
	}
	return n
}

// Restart begins a rolling restart into a new generation: every slot gets a replacement, at
// most Surge at a time, and each old worker stops only once its replacement is ready. A
// rollout already under way is superseded; its replacements still starting are stopped.
func (m *Machine) Restart(now time.Time) {
	if m.stopping {
		return
	}
	if m.rollout != nil {
		m.endRollout(now, RolloutSuperseded)
	}
	// Replacements not yet serving their slot (of a superseded rollout, its canary included,
	// or for memory, lifetime or a watchdog trigger) would bring up an older generation: the
	// rollout replaces those slots.
	for _, w := range m.workers {
		if w.replacement && w.State != Stopping {
			m.stop(now, w, ReasonStop)
		}
	}
	if m.desired == 0 {
		m.desired = m.p.Workers // SIGWINCH emptied the pool; SIGHUP brings it back
	}
	m.gen++
	m.rollout = &rollout{gen: m.gen, started: now}
	m.tmpl.notBefore = time.Time{} // a new release's template gets a fresh try too
	for i := 0; i < m.desired; i++ {
		s := m.slot(i)
		// A new release gets a fresh try: a slot waiting out a crash backoff starts now, so
		// that the rollout ends, one way or the other, within a ready timeout.
		s.notBefore = time.Time{}
		if m.serving(i) != nil {
			s.replace = "rollout"
			if m.p.Canary > 0 && m.rollout.canary == nil {
				m.rollout.canary = &canary{slot: i}
			}
		}
	}
	m.log.Info("rolling restart", "event", "rollout", "generation", m.gen, "workers", m.desired)
	m.reconcile(now)
}

// Replace asks for a graceful replacement of the worker pid (replacement ready first).
func (m *Machine) Replace(now time.Time, pid int, reason string) {
	w := m.workers[pid]
	if m.stopping || w == nil || w.State == Stopping {
		return
	}
	if m.onTrial(w) {
		if reason == ReasonMemory {
			m.failCanary(now, w, reason)
			m.reconcile(now)
			return
		}
		// A watchdog trigger waits until the canary has taken over its slot: replacing it now
		// would bring a second new worker into a rollout still on trial.
		if c := m.canaryOf(w); c.replace == "" {
			c.replace = reason
			m.log.Info("replacing worker once its canary time has passed", "event", "replace", "slot", w.Slot,
				"pid", pid, "generation", w.Gen, "reason", reason)
		}
		return
	}
	if w.replacement {
		return
	}
	if s := m.slot(w.Slot); s.replace == "" {
		s.replace = reason
		m.log.Info("replacing worker", "event", "replace", "slot", w.Slot, "pid", pid, "generation", w.Gen, "reason", reason)
	}
	m.reconcile(now)
}

// Recycle stops the ready worker pid for reason at once and starts its slot's next worker only
// once it has exited: the memory budget's way when the room left would not hold a replacement
// beside it.
func (m *Machine) Recycle(now time.Time, pid int, reason string) {
	w := m.workers[pid]
	if m.stopping || w == nil || w.State != Ready {
		return
	}
	if m.onTrial(w) {
		m.failCanary(now, w, reason)
		m.reconcile(now)
		return
	}
	m.slot(w.Slot).refillAfterExit = true
	m.stop(now, w, reason)
	m.reconcile(now)
}

// ScaleUp adds a slot (SIGTTIN).
// attrs say what decided it (a signal, or the figures of the dynamic size); within a range
// (NARWHAL_WORKERS=MIN-MAX) the size stays inside it.
func (m *Machine) ScaleUp(now time.Time, attrs ...any) {
	if m.stopping || (m.p.MaxWorkers > 0 && m.desired >= m.p.MaxWorkers) {
		return
	}
	m.desired++
	m.log.Info("scaling up", append([]any{"event", "scale", "workers", m.desired}, attrs...)...)
	m.reconcile(now)
}

// ScaleDown removes the highest slot, gracefully (SIGTTOU); see ScaleUp.
func (m *Machine) ScaleDown(now time.Time, attrs ...any) {
	if !m.CanScaleDown() {
		return
	}
	m.desired--
	m.log.Info("scaling down", append([]any{"event", "scale", "workers", m.desired}, attrs...)...)
	m.reconcile(now)
}

// CanScaleDown reports whether ScaleDown would remove a slot: not while stopping, not below a
// range's MIN, not from an empty pool.
func (m *Machine) CanScaleDown() bool {
	return !m.stopping && m.desired > 0 && (m.p.MaxWorkers == 0 || m.desired > m.p.Workers)
}

// Zero stops every worker but keeps the listeners (SIGWINCH); the next Restart refills.
func (m *Machine) Zero(now time.Time) {
	if m.stopping {
		return
	}
	if m.rollout != nil {
		m.endRollout(now, RolloutAborted)
	}
	m.desired = 0
	m.log.Info("stopping all workers, keeping the listeners", "event", "scale", "workers", 0)
	m.reconcile(now)
}

// Stop begins the graceful stop of the pool: every worker gets the stop signal, and SIGKILL to
// its process group when StopTimeout passes.
func (m *Machine) Stop(now time.Time) {
	if m.stopping {
		return
	}
	m.stopping, m.stopBy = true, now.Add(m.p.StopTimeout)
	for pgid, killAt := range m.leftovers {
		m.leftovers[pgid] = earliest(killAt, m.stopBy)
	}
	if m.rollout != nil {
		m.endRollout(now, RolloutAborted)
	}
	for _, w := range m.workers {
		m.stop(now, w, ReasonStop)
	}
	m.reconcile(now)
}

// Signal forwards sig to every worker (SIGUSR1: reopen logs).
func (m *Machine) Signal(sig syscall.Signal) {
	for _, w := range m.workers {
		m.fx.Signal(w.PID, sig, false)
	}
}

// MarkReady records that pid is ready (READY=1, or seen accepting).
func (m *Machine) MarkReady(now time.Time, pid int) {
	if w := m.workers[pid]; w != nil && w.State == Starting {
		m.markReady(now, w)
		m.reconcile(now)
	}
}

// markReady makes w ready; a replacement takes over its slot and the old worker stops.
func (m *Machine) markReady(now time.Time, w *Worker) {
	w.State, w.ReadyAt, w.lastPing = Ready, now, now
	m.fx.Ready(w.PID)
	m.Stats.ReadySeconds = append(m.Stats.ReadySeconds, now.Sub(w.Started).Seconds())
	m.log.Info("worker ready", "event", "ready", "slot", w.Slot, "pid", w.PID, "generation", w.Gen,
		"seconds", now.Sub(w.Started).Seconds())
	if c := m.canaryOf(w); c != nil {
		c.until = now.Add(m.p.Canary)
		m.log.Info("canary ready: watching it before any old worker stops", "event", "canary", "slot", w.Slot,
			"pid", w.PID, "generation", w.Gen, "seconds", m.p.Canary.Seconds())
		return
	}
	m.takeOver(now, w)
}

// takeOver ends w's time as a replacement: it serves its slot, and the worker it replaces stops.
func (m *Machine) takeOver(now time.Time, w *Worker) {
	if w.replacement {
		w.replacement = false
		s := m.slot(w.Slot)
		reason := ReasonStop // a rollout's old worker
		if s.replace != "" && s.replace != "rollout" {
			reason = s.replace // memory, lifetime, watchdog trigger
		}
		for _, old := range m.workers {
			if old != w && old.Slot == w.Slot && old.State != Stopping {
				m.stop(now, old, reason)
			}
		}
		s.replace = ""
	}
}

// Ping records a worker's WATCHDOG=1.
func (m *Machine) Ping(now time.Time, pid int) {
	if w := m.workers[pid]; w != nil {
		w.lastPing = now
	}
}

// Exited records the end of pid with its exit code; oom says the kernel's OOM killer ended it.
// An OOM kill of a worker nobody asked to stop is restarted as a crash is, under its own name.
func (m *Machine) Exited(now time.Time, pid, code int, oom bool, attrs ...any) {
	if m.templateExited(now, pid, code) {
		return
	}
	w := m.workers[pid]
	if w == nil {
		return
	}
	delete(m.workers, pid)
	// Whatever the worker left in its process group (a shell's background job) would go on
	// holding the listener and serving old code: it gets the stop signal, then SIGKILL.
	if m.fx.Signal(pid, m.p.StopSignal, true) {
		killAt := now.Add(m.p.StopTimeout)
		if m.stopping {
			killAt = earliest(killAt, m.stopBy) // the pool's stop timeout bounds its leftovers too
		}
		m.leftovers[pid] = killAt
	}
	reason := w.reason
	switch {
	case reason == "" && oom:
		reason = ReasonOOM
	case reason == "":
		reason = ReasonCrash
	}
	m.Stats.Exits[reason]++
	level, msg := slog.LevelInfo, "worker exited"
	switch reason {
	case ReasonCrash:
		level = slog.LevelWarn
	case ReasonOOM:
		level, msg = slog.LevelWarn, "worker killed by the kernel's OOM killer: the container's memory limit was reached"
	}
	m.log.Log(context.Background(), level, msg, append([]any{"event", "exit", "slot", w.Slot, "pid", pid,
		"generation", w.Gen, "code", code, "reason", reason}, attrs...)...)
	if m.canaryOf(w) != nil && w.reason != "" {
		m.abort(now, w, w.reason) // stopped before it passed (a scale down): no canary, no rollout
	}
	switch {
	case m.stopping, w.reason != "":
	case w.State == Starting:
		m.failedStart(now, w, reason)
	case m.rollout != nil && w.Gen >= m.rollout.gen:
		// New code that served, then crashed, while its rollout is still under way: stop
		// rolling it out, and keep the old workers that remain.
		m.abort(now, w, reason)
	default:
		m.crashed(now, w)
	}
	m.reconcile(now)
}

// failedStart handles a worker that died or timed out before it was ready. If it was to bring
// in new code (a replacement, or any worker of a rollout under way), the rollout aborts.
func (m *Machine) failedStart(now time.Time, w *Worker, reason string) {
	if w.replacement || (m.rollout != nil && w.Gen >= m.rollout.gen) {
		m.abort(now, w, reason)
		return
	}
	m.crashed(now, w)
}

// spawnFailed is a worker that could not even be started.
func (m *Machine) spawnFailed(now time.Time, slotID, gen int, replacement bool, err error) {
	m.log.Error("cannot start worker", "event", "exec_failed", "slot", slotID, "generation", gen, "error", err)
	m.Stats.Exits[ReasonCrash]++
	m.failedStart(now, &Worker{Slot: slotID, Gen: gen, replacement: replacement}, ReasonCrash)
}

// crashed schedules the slot's restart after its backoff.
func (m *Machine) crashed(now time.Time, w *Worker) {
	s := m.slot(w.Slot)
	s.crashes++
	s.restarts++
	delay := m.p.RestartDelay << min(s.crashes-1, 30)
	if delay > m.p.RestartDelayMax || delay <= 0 {
		delay = m.p.RestartDelayMax
	}
	if m.rollout != nil && w.Gen < m.rollout.gen && (!m.p.Preload || m.templateReady(m.rollout.gen)) {
		// Old code crashed while new code is on its way: the slot gets the new code at once,
		// and the rollout is not held up by the old code's backoff. (With preload, once the
		// rollout's template can fork it: until then the slot would get the old code again.)
		delay = 0
	}
	s.notBefore = now.Add(delay)
	m.log.Info("restarting slot after backoff", "event", "backoff", "slot", w.Slot, "delay", delay.String(), "crashes", s.crashes)
}

// abort handles a replacement that failed to become ready: the old worker keeps serving, the
// slot backs off as after a crash (so a broken release cannot make replacements spin), and a
// rollout under way ends.
func (m *Machine) abort(now time.Time, w *Worker, reason string) {
	m.slot(w.Slot).replace = ""
	m.crashed(now, w)
	if m.rollout == nil {
		return
	}
	if m.canaryOf(w) != nil {
		m.log.Error("rollout aborted: its canary failed; the old workers keep serving", "event", "rollout_aborted",
			"slot", w.Slot, "pid", w.PID, "generation", m.rollout.gen, "reason", "canary", "cause", reason)
	} else {
		m.log.Error("rollout aborted: a replacement did not become ready; the old workers keep serving",
			"event", "rollout_aborted", "slot", w.Slot, "pid", w.PID, "generation", m.rollout.gen, "reason", reason)
	}
	m.endRollout(now, RolloutAborted)
	for _, o := range m.workers {
		if o.replacement && o.State == Starting {
			m.stop(now, o, ReasonStop)
		}
	}
}

func (m *Machine) endRollout(now time.Time, result string) {
	m.Stats.Rollouts[result]++
	if result == RolloutCompleted {
		m.tmpl.base = m.rollout.gen
		d := now.Sub(m.rollout.started)
		m.Stats.RolloutSeconds = append(m.Stats.RolloutSeconds, d.Seconds())
		m.log.Info("rollout completed", "event", "rollout_completed", "generation", m.rollout.gen, "seconds", d.Seconds())
	}
	for _, s := range m.slots {
		if s.replace == "rollout" {
			s.replace = ""
		}
	}
	m.rollout = nil
}

// stop asks w to stop gracefully: NARWHAL_STOP_SIGNAL, then SIGKILL after NARWHAL_STOP_TIMEOUT,
// or after unreadyKill for a worker that never served.
func (m *Machine) stop(now time.Time, w *Worker, reason string) {
	grace := m.p.StopTimeout
	if w.ReadyAt.IsZero() {
		grace = min(grace, unreadyKill)
	}
	m.halt(now, w, reason, m.p.StopSignal, grace)
	m.log.Info("stopping worker", "event", "stop", "slot", w.Slot, "pid", w.PID, "generation", w.Gen, "reason", reason)
}

// halt moves w to Stopping for reason: it gets sig now and SIGKILL once grace has passed.
func (m *Machine) halt(now time.Time, w *Worker, reason string, sig syscall.Signal, grace time.Duration) {
	if w.State == Stopping {
		return
	}
	w.State, w.reason, w.killAt = Stopping, reason, now.Add(grace)
	m.fx.Signal(w.PID, sig, false)
}

// Tick runs the timers: ready timeouts, readiness by delay, kills after a stop timeout, backoffs.
func (m *Machine) Tick(now time.Time) { m.reconcile(now) }

// Next is the earliest time after now at which Tick has something to do, or zero if none.
// A deadline already past is waiting on an event (an exit that makes room), not on time.
func (m *Machine) Next(now time.Time) time.Time {
	var next time.Time
	at := func(t time.Time) {
		if t.After(now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for _, w := range m.workers {
		switch w.State {
		case Starting:
			at(w.Started.Add(m.p.ReadyTimeout))
			if m.p.ReadyDelay > 0 {
				at(w.Started.Add(m.p.ReadyDelay))
			}
		case Ready:
			if s := m.slot(w.Slot); s.crashes > 0 {
				at(w.ReadyAt.Add(readyResetAfter))
			}
			if m.p.WatchdogTimeout > 0 {
				at(w.lastPing.Add(m.p.WatchdogTimeout))
			}
			if !w.replacement && m.slot(w.Slot).replace == "" {
				at(w.retireAt)
			}
			if c := m.canaryOf(w); c != nil && !c.until.IsZero() {
				at(c.until)
			}
		case Stopping:
			if !w.killed {
				at(w.killAt)
			} else {
				at(w.killAt.Add(abandonAfter))
			}
		}
	}
	for _, killAt := range m.leftovers {
		at(killAt)
	}
	if m.p.Preload {
		m.templateNext(at)
	}
	if !m.stopping {
		for id, s := range m.slots {
			if id < m.desired && (m.occupant(id) == nil || s.replace != "") {
				at(s.notBefore)
			}
		}
	}
	return next
}

// reconcile moves the pool toward what is asked of it, and runs the timers that are due.
func (m *Machine) reconcile(now time.Time) {
	for _, w := range m.sortedWorkers() {
		switch w.State {
		case Starting:
			switch {
			case m.p.ReadyDelay > 0 && !now.Before(w.Started.Add(m.p.ReadyDelay)):
				m.markReady(now, w)
			case !now.Before(w.Started.Add(m.p.ReadyTimeout)):
				m.log.Warn("worker not ready in time", "event", "ready_timeout", "slot", w.Slot, "pid", w.PID,
					"generation", w.Gen, "timeout", m.p.ReadyTimeout.String())
				m.stop(now, w, ReasonReadyTimeout)
				m.failedStart(now, w, ReasonReadyTimeout)
			}
		case Ready:
			s := m.slot(w.Slot)
			if s.crashes > 0 && !now.Before(w.ReadyAt.Add(readyResetAfter)) {
				s.crashes = 0
			}
			if m.p.WatchdogTimeout > 0 && !now.Before(w.lastPing.Add(m.p.WatchdogTimeout)) && !m.stopping {
				trial := m.onTrial(w)
				m.halt(now, w, ReasonWatchdog, syscall.SIGABRT, m.p.WatchdogKill)
				m.log.Warn("worker watchdog expired: no WATCHDOG=1 in time; sent SIGABRT", "event", "watchdog",
					"slot", w.Slot, "pid", w.PID, "generation", w.Gen, "signal", "SIGABRT", "reason", ReasonWatchdog)
				if trial {
					m.failCanary(now, w, ReasonWatchdog)
				}
				continue
			}
			if c := m.canaryOf(w); c != nil && !c.until.IsZero() && !now.Before(c.until) {
				m.log.Info("canary passed: rolling out to every slot", "event", "canary", "slot", w.Slot,
					"pid", w.PID, "generation", w.Gen)
				m.rollout.canary = nil
				m.takeOver(now, w)
				if c.replace != "" {
					s.replace = c.replace
				}
				continue
			}
			if !w.retireAt.IsZero() && !now.Before(w.retireAt) && s.replace == "" && !m.stopping {
				s.replace = ReasonLifetime
				m.log.Info("worker reached NARWHAL_MAX_LIFETIME; replacing it", "event", "replace",
					"slot", w.Slot, "pid", w.PID, "generation", w.Gen, "reason", ReasonLifetime)
			}
		case Stopping:
			if w.killed && !now.Before(w.killAt.Add(abandonAfter)) {
				delete(m.workers, w.PID)
				m.Stats.Exits[w.reason]++
				if m.stopping {
					m.exitCode = 1
				}
				m.log.Error("worker still running after SIGKILL; giving up on it", "event", "lost",
					"slot", w.Slot, "pid", w.PID, "generation", w.Gen, "reason", w.reason)
				if m.canaryOf(w) != nil {
					m.abort(now, w, w.reason)
				}
				continue
			}
			if !w.killed && !now.Before(w.killAt) {
				w.killed = true
				if m.stopping {
					m.exitCode = 1 // not every worker stopped within the timeout
				}
				m.fx.Signal(w.PID, syscall.SIGKILL, true)
				m.log.Warn("worker did not stop in time; killed its process group", "event", "kill",
					"slot", w.Slot, "pid", w.PID, "generation", w.Gen, "signal", "SIGKILL")
			}
		}
	}
	m.killLeftovers(now)
	if m.stopping {
		if m.p.Preload {
			m.keepTemplates(now)
		}
		return
	}
	// Slots beyond the desired size go, highest first (SIGTTOU, SIGWINCH).
	for _, w := range m.workers {
		if w.Slot >= m.desired && w.State != Stopping {
			m.stop(now, w, ReasonStop)
		}
	}
	for id := range m.slots {
		if id >= m.desired {
			delete(m.slots, id)
		}
	}
	// Fill empty slots (first start, crash restarts after their backoff, scale up).
	for id := 0; id < m.desired; id++ {
		s := m.slot(id)
		if s.refillAfterExit {
			if m.stoppingIn(id) {
				continue
			}
			s.refillAfterExit = false
		}
		if m.occupant(id) == nil && !now.Before(s.notBefore) && m.room() {
			m.spawn(now, id, false)
		}
	}
	// Replacements (rollout, watchdog trigger, recycling), at most Surge starting at once.
	for id := 0; id < m.desired; id++ {
		s := m.slot(id)
		if s.replace == "" || m.inFlight() >= m.p.Surge || !m.room() || now.Before(s.notBefore) {
			continue
		}
		if m.serving(id) == nil || m.replacementOf(id) != nil || m.heldByCanary(id) {
			continue
		}
		m.spawn(now, id, true)
	}
	if m.rollout != nil && m.rolloutDone() {
		m.endRollout(now, RolloutCompleted)
	}
	if m.p.Preload {
		m.keepTemplates(now)
	}
}

// killLeftovers sends SIGKILL to the leftover groups whose stop timeout has passed. A group ID
// cannot be reused while the group has a member; one that emptied and was reused by a new
// worker (whose group ID is its PID) is left alone.
func (m *Machine) killLeftovers(now time.Time) {
	for pgid, killAt := range m.leftovers {
		if now.Before(killAt) {
			continue
		}
		delete(m.leftovers, pgid)
		if m.workers[pgid] != nil {
			continue
		}
		if m.fx.Signal(pgid, syscall.SIGKILL, true) {
			if m.stopping {
				m.exitCode = 1
			}
			m.log.Warn("left-over processes of a worker did not stop in time; killed their process group",
				"event", "kill", "pgid", pgid, "signal", "SIGKILL")
		}
	}
}

// room reports whether one more process keeps the pool within desired + Surge, counting
// workers that are still stopping.
func (m *Machine) room() bool { return len(m.workers) < m.desired+m.p.Surge }

func (m *Machine) inFlight() int {
	n := 0
	for _, w := range m.workers {
		if w.replacement && w.State == Starting {
			n++
		}
	}
	return n
}

// rolloutDone: every slot is served by a ready worker of the rollout's generation or newer.
func (m *Machine) rolloutDone() bool {
	for id := 0; id < m.desired; id++ {
		if m.slot(id).replace != "" || m.replacementOf(id) != nil {
			return false
		}
		if w := m.serving(id); w == nil || w.Gen < m.rollout.gen || w.State != Ready {
			return false
		}
	}
	return true
}

func (m *Machine) spawn(now time.Time, id int, replacement bool) {
	gen := m.gen
	if m.p.Preload {
		if gen = m.forkGen(m.slot(id), replacement); gen == 0 {
			return // once a template it may fork from is at its fork point
		}
	}
	pid, started, err := m.fx.Spawn(id, gen)
	if err != nil {
		m.spawnFailed(now, id, gen, replacement, err)
		return
	}
	m.Stats.Starts++
	if s := m.slot(id); !replacement {
		s.replace = "" // a fresh worker in an empty slot needs no replacement...
		if m.rollout != nil && gen < m.rollout.gen {
			s.replace = "rollout" // ...unless forked from an older template than the rollout's
		}
	}
	m.slot(id).gen = gen
	// Its start is its own, not the pass's: the workers spawned before it in the same pass took
	// time, and its start-to-ready time must not count theirs.
	w := &Worker{PID: pid, Slot: id, Gen: gen, State: Starting, Started: latest(now, started), replacement: replacement}
	if m.p.MaxLifetime > 0 {
		jitter := 0.0
		if m.p.Jitter != nil {
			jitter = m.p.Jitter()
		}
		w.retireAt = now.Add(m.p.MaxLifetime + time.Duration(jitter*0.1*float64(m.p.MaxLifetime)))
	}
	m.workers[pid] = w
	if c := m.rolloutCanary(); c != nil && c.pid == 0 && id == c.slot {
		c.pid = pid
	}
	m.log.Info("worker started", "event", "start", "slot", id, "pid", pid, "generation", gen)
}

func (m *Machine) rolloutCanary() *canary {
	if m.rollout == nil {
		return nil
	}
	return m.rollout.canary
}

// canaryOf is the canary w is, or nil.
func (m *Machine) canaryOf(w *Worker) *canary {
	if c := m.rolloutCanary(); c != nil && c.pid == w.PID {
		return c
	}
	return nil
}

// onTrial: w is a canary that is ready and being watched.
func (m *Machine) onTrial(w *Worker) bool {
	c := m.canaryOf(w)
	return c != nil && w.State == Ready
}

// heldByCanary: slot id gets no replacement while the rollout has a canary that has not passed:
// other slots wait for it, and its own slot has it (stopping or not).
func (m *Machine) heldByCanary(id int) bool {
	c := m.rolloutCanary()
	return c != nil && (id != c.slot || c.pid != 0)
}

// failCanary aborts the rollout because its canary failed for reason (an exit is handled by
// Exited): the canary stops, the old workers serve on untouched.
func (m *Machine) failCanary(now time.Time, w *Worker, reason string) {
	if w.State != Stopping {
		m.stop(now, w, reason)
	}
	m.abort(now, w, reason)
}

func (m *Machine) slot(id int) *slot {
	s := m.slots[id]
	if s == nil {
		s = &slot{}
		m.slots[id] = s
	}
	return s
}

// occupant is the slot's starting or ready worker, preferring the serving one.
func (m *Machine) occupant(id int) *Worker {
	if w := m.serving(id); w != nil {
		return w
	}
	return m.replacementOf(id)
}

// serving is the slot's worker that is not a replacement and not stopping.
func (m *Machine) serving(id int) *Worker {
	for _, w := range m.workers {
		if w.Slot == id && !w.replacement && w.State != Stopping {
			return w
		}
	}
	return nil
}

func (m *Machine) stoppingIn(id int) bool {
	for _, w := range m.workers {
		if w.Slot == id && w.State == Stopping {
			return true
		}
	}
	return false
}

func (m *Machine) replacementOf(id int) *Worker {
	for _, w := range m.workers {
		if w.Slot == id && w.replacement && w.State != Stopping {
			return w
		}
	}
	return nil
}

func (m *Machine) sortedWorkers() []*Worker {
	ws := make([]*Worker, 0, len(m.workers))
	for _, w := range m.workers {
		ws = append(ws, w)
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i].PID < ws[j].PID })
	return ws
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
