package supervisor

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/narwhal-init/narwhal/config"
	"github.com/narwhal-init/narwhal/internal/listen"
	"github.com/narwhal-init/narwhal/internal/pool"
	"github.com/narwhal-init/narwhal/internal/proc"
	"github.com/narwhal-init/narwhal/internal/ratelog"
	"github.com/narwhal-init/narwhal/internal/status"
	"github.com/narwhal-init/narwhal/internal/watch"
	"github.com/narwhal-init/narwhal/internal/worker"
)

const (
	// detectEvery is how often /proc is read while a worker is starting, to see it accept.
	detectEvery = 20 * time.Millisecond
	// scanEvery is how often /proc is read otherwise: memory limits, leftovers, and the figures
	// that metrics and --status show.
	scanEvery = time.Second
	// sharesEvery is how often, at most, the workers' proportional memory is read; sharesDuty
	// bounds the share of a core those reads take. smaps_rollup walks every page table: 2.4 ms
	// for a 200 MB process here, so 16 of them read every 2 s would take 2% of a core (see
	// bench/pss.sh); a large pool is read less often instead.
	sharesEvery = 2 * time.Second
	sharesDuty  = 0.005
	// sharesStale bounds the wait all the same: the read's duration is wall time, which a busy
	// machine stretches with waits for a CPU.
	sharesStale = 10 * time.Second
	// watchdogKill is the time between the watchdog's SIGABRT and SIGKILL.
	watchdogKill = 2 * time.Second
	// dropLogEvery bounds the warnings about dropped notify messages to one per period.
	dropLogEvery = 10 * time.Second
)

// world is everything the supervisor does to and reads of the world outside it: its clock,
// what it does to processes, and what it reads of them. It is the Machine's Effects too. New
// builds the real one; tests build their own and drive pass event by event.
type world struct {
	now   func() time.Time
	spawn func(slot, gen int) (int, error) // the exit arrives later as an exitEvent
	// spawnTemplate starts gen's template (NARWHAL_PRELOAD); its exit arrives as a worker's,
	// and its arrival at its fork point as a worker.TemplateReady.
	spawnTemplate func(gen int) (int, error)
	ready         func(pid int) // pid serves now; nil when nothing is to be done
	signal        func(pid int, sig syscall.Signal, group bool) bool
	scan          func() *proc.Snapshot
	// shares reads the proportional and merged memory of pids (smaps_rollup), every sharesEvery.
	shares func(pids []int) proc.Shares
	// container reads the container's memory and accept-queue overflows, with each scan.
	container func() proc.Container
	// oomKills is the cgroup's count of OOM kills, false where it cannot be read.
	oomKills func() (uint64, bool)
	// queues reads every listener's accept queue now.
	queues func() []status.Listener
	// accepting returns those of pids (starting workers) that snap shows waiting to accept.
	accepting func(snap *proc.Snapshot, pids []int) []int
	parent    func(pid int) (int, error)
	// route steers new connections to the slots that have a ready worker (balanced mode);
	// nil in the other modes.
	route func(live []int) error
	// slotQueued is how many connections wait on slot's own sockets, and slots how many slots
	// have sockets (balanced mode).
	slotQueued func(slot int) int
	slots      func() int
}

// Supervisor is the one goroutine that owns the pool's Machine. Signals, exits, notify
// messages and the clock arrive as events; each is one pass of its loop, at one instant: the
// event, the machine's timers, a read of /proc when one is due, and a snapshot for the readers.
type Supervisor struct {
	cfg   *config.Config
	log   *slog.Logger
	world *world
	m     *pool.Machine
	board *status.Board
	*inbox

	sockets  []*listen.Socket
	balanced *listen.Balancer // NARWHAL_SOCKET_MODE=balanced
	notify   *worker.NotifySocket
	// live are the slots new connections were last steered to; routeErr, whether that failed.
	live     []int
	routed   bool
	routeErr bool
	bound    int // slots with sockets at the last steering
	// retiring are the scale-downs under way in balanced mode, highest slot first: each slot is
	// steered away from first, and the pool shrinks past it only once nothing waits on its
	// sockets, so that no queued connection is left on a socket no worker will accept from.
	retiring []retiring

	// readyByNotify: READY=1 makes a worker ready. Always with NARWHAL_READY=notify; in auto
	// only where narwhal cannot see a worker accept, since some servers send it before their
	// workers serve (gunicorn's master does).
	readyByNotify bool

	// scale sizes a pool of NARWHAL_WORKERS=MIN-MAX; nil for a fixed size.
	scale      *pool.Scaler
	lastSample time.Time

	// maxMemory and budget are NARWHAL_MAX_MEMORY and NARWHAL_MEMORY_BUDGET in bytes; 0 is off.
	maxMemory, budget int64

	oom pool.OOMLedger // OOM kills counted by the cgroup, not yet claimed by a worker's exit

	restarted chan struct{} // with NARWHAL_WATCH: a rollout began by signal

	failed bool // a part of the pool failed, so the exit code is 1

	lastScan  time.Time
	listeners []status.Listener  // with their accept queues, at the last scan or sample
	usage     map[int]proc.Usage // by worker PID, at the last scan
	// shares are each worker's proportional and merged memory, by PID; all of them are read
	// again at nextShares.
	shares     map[int]proc.Shares
	nextShares time.Time
	whole      proc.Container // the container, at the last scan
	cpu        *proc.CPULedger
	dropped    ratelog.Limiter // warnings about dropped notify messages
}

type exitEvent struct{ pid, code int }

// retiring is a slot a balanced scale-down empties, since when, and why (for the log).
type retiring struct {
	slot   int
	since  time.Time
	why    []any
	warned bool // that it has waited longer than NARWHAL_STOP_TIMEOUT
}

// A retiring slot's worker keeps accepting for at least retireMin after new connections were
// steered away: a handshake begun before the steering still lands on its socket, one round
// trip later, or a SYN-ACK retransmission (1 s) later. It is stopped once nothing waits there,
// however long that takes: new connections go elsewhere, so the queue only shrinks, and a
// worker that stops accepting is restarted in its slot as any crashed or hung worker is.
const retireMin = 1500 * time.Millisecond

// stopEvent is the context's end: a graceful stop, as SIGTERM.
type stopEvent struct{}

// failedEvent is a part of the pool that stopped working (the notify socket).
type failedEvent struct{ err error }

// ownedWait bounds Run's wait, at its end, for the goroutines it owns.
const ownedWait = time.Second

// waitTimeout waits for wg at most d, and reports whether it was done.
func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// startEvent is the first pass.
type startEvent struct{}

// refreshEvent asks for a look at /proc in this pass (--status); it is closed after publishing.
type refreshEvent chan struct{}

// newSupervisor wires a supervisor over e; New adds the sockets and the real world.
func newSupervisor(cfg *config.Config, log *slog.Logger, w *world, in *inbox, b *status.Board, workers, maxWorkers int) *Supervisor {
	s := &Supervisor{cfg: cfg, log: log, world: w, inbox: in, board: b, cpu: proc.NewCPULedger(),
		dropped:       ratelog.Limiter{Every: dropLogEvery},
		readyByNotify: cfg.Ready == "notify" || (cfg.Ready == "auto" && len(cfg.Listen) == 0)}
	p := pool.Params{
		Workers: workers, Surge: int(cfg.RolloutSurge),
		ReadyTimeout: cfg.ReadyTimeout.D(), StopSignal: syscall.Signal(cfg.StopSignal), StopTimeout: cfg.StopTimeout.D(),
		RestartDelay: cfg.RestartDelay.D(), RestartDelayMax: cfg.RestartDelayMax.D(),
		WatchdogTimeout: cfg.WorkerTimeout.D(), WatchdogKill: watchdogKill,
		MaxLifetime: cfg.MaxLifetime.D(), Jitter: rand.Float64, Canary: cfg.RolloutCanary.D(),
		Preload: cfg.Preload,
	}
	if cfg.Ready == "delay" {
		p.ReadyDelay = max(cfg.ReadyDelay.D(), time.Nanosecond)
	}
	if maxWorkers > workers {
		p.MaxWorkers = maxWorkers
		s.scale = pool.NewScaler(cfg.ScaleUpAfter.D(), cfg.ScaleDownAfter.D())
	}
	s.maxMemory, _ = cfg.MaxMemory.Of(0) // a size; New resolves shares against the cgroup
	s.m = pool.NewMachine(p, w, log)
	return s
}

// Run starts the pool and supervises it until a graceful stop ends (a stop signal, or ctx's
// end), and returns narwhal's exit code: 0 when every worker stopped within
// NARWHAL_STOP_TIMEOUT, 1 otherwise.
//
// Run owns every goroutine it starts (the notify reader, the file watcher, each worker's exit
// waiter and notify pipe reader): when it returns, none of them sends to it any more, and it has
// waited for them, up to ownedWait for a pipe that a worker's leftover still holds open.
func (s *Supervisor) Run(ctx context.Context, sigs <-chan os.Signal) int {
	watching, stopWatching := context.WithCancel(ctx)
	defer func() {
		close(s.done)
		stopWatching()
		s.close()
		if !waitTimeout(&s.owned, ownedWait) {
			s.log.Warn("a worker's exit or notify pipe was still outstanding at exit", "event", "exit")
		}
	}()
	if s.notify != nil {
		s.owned.Go(func() {
			if err := s.notify.Run(s.done, s.events); err != nil {
				select {
				case s.events <- failedEvent{err}:
				case <-s.done:
				}
			}
		})
	}
	if len(s.cfg.Watch) > 0 {
		s.restarted = make(chan struct{}, 1)
		s.owned.Go(func() {
			watch.Run(watching, s.log, s.cfg.Watch, s.cfg.WatchDelay.D(), watch.MaxEntries, s.events, s.restarted)
		})
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	cancelled := ctx.Done() // set to nil once acted on: a closed channel is always ready
	var ev any = startEvent{}
	for {
		now := s.world.now()
		wake := s.pass(now, ev)
		if r, ok := ev.(refreshEvent); ok {
			close(r)
		}
		if done, code := s.m.Done(); done {
			if s.failed {
				code = 1
			}
			return code
		}
		timer.Reset(wake.Sub(s.world.now())) // from the pass's end: a slow scan does not delay the wake
		select {
		case sig := <-sigs:
			ev = sig.(syscall.Signal)
		case ev = <-s.events:
		case <-timer.C:
			ev = nil
		case <-cancelled:
			cancelled, ev = nil, stopEvent{}
		case done := <-s.board.Pings():
			close(done)
			ev = nil
		case done := <-s.board.Refreshes():
			ev = refreshEvent(done)
		}
	}
}

// pass is one turn of the loop at now: it handles ev (nil when only the clock woke the loop),
// runs the machine's timers, reads /proc if due, publishes, and returns when to wake next.
// Everything in it sees the same now, so no deadline falls between two clocks.
func (s *Supervisor) pass(now time.Time, ev any) time.Time {
	switch ev := ev.(type) {
	case startEvent:
		n, _ := s.world.oomKills()
		s.oom.Base(n)
		s.m.Start(now)
	case syscall.Signal:
		s.signal(now, ev)
	case exitEvent:
		if s.m.IsTemplate(ev.pid) {
			// Not one of the OOM kills a worker's exit may claim: narwhal kills each template
			// it no longer needs, and the kernel kills a template's workers first.
			s.m.Exited(now, ev.pid, ev.code, false)
		} else if s.oomKilled(now, ev.code) {
			// The figures a reader needs to size the limit or the budget, from the last scan.
			s.m.Exited(now, ev.pid, ev.code, true, "rss_bytes", s.usage[ev.pid].RSSBytes, "pss_bytes", s.shares[ev.pid].Proportional,
				"memory_limit_bytes", s.whole.Memory.Limit, "memory_working_set_bytes", s.whole.Memory.WorkingSet)
		} else {
			s.m.Exited(now, ev.pid, ev.code, false)
		}
	case worker.Message:
		s.handleNotify(now, ev)
	case worker.TemplateReady:
		s.m.TemplateReady(now, ev.PID)
	case watch.Change:
		if !s.m.Stopping() {
			s.log.Info("watched file changed: rolling restart", "event", "watch", "path", ev.Path)
			s.restart(now)
		}
	case stopEvent:
		s.retiring = nil
		s.m.Stop(now)
	case failedEvent:
		// A part of the pool that failed ends narwhal as a failed metrics server or control
		// socket does: the workers stop gracefully, and narwhal exits 1.
		s.failed = true
		s.log.Error("a part of narwhal failed; stopping", "event", "failed", "error", ev.err.Error())
		s.m.Stop(now)
	case refreshEvent:
		s.lastScan = time.Time{} // not the shares: a client must not make the loop walk every page table
	}
	s.m.Tick(now)
	s.retire(now)
	// The scan is due by the clock, not by how quiet the loop is: a flood of events (watchdog
	// pings from a large pool) must not postpone the detection of a starting worker.
	if due := s.lastScan.Add(s.scanInterval()); !now.Before(due) {
		s.scanProcesses(now)
	}
	if s.scale != nil && !now.Before(s.lastSample.Add(pool.SampleEvery)) {
		s.resize(now)
	}
	s.route()
	s.publish()
	wake := s.lastScan.Add(s.scanInterval())
	if s.scale != nil && s.lastSample.Add(pool.SampleEvery).Before(wake) {
		wake = s.lastSample.Add(pool.SampleEvery)
	}
	if next := s.m.Next(now); !next.IsZero() && next.Before(wake) {
		wake = next
	}
	if len(s.retiring) > 0 {
		// Its queue is looked at every 10 ms, and every 100 ms once NARWHAL_STOP_TIMEOUT has
		// passed (a worker slow to accept, or hung without a watchdog).
		every := 10 * time.Millisecond
		if !now.Before(s.retiring[0].since.Add(s.cfg.StopTimeout.D())) {
			every = 100 * time.Millisecond
		}
		next := now.Add(every)
		if first := s.retiring[0].since.Add(retireMin); first.After(next) {
			next = first
		}
		if next.Before(wake) {
			wake = next
		}
	}
	return wake
}

// route steers new connections to the slots that have a ready worker, when that set changed.
// With none ready, they go to the slots the pool is filling, or to slot 0, which every size
// fills first (after SIGWINCH): never to a slot that may stay empty.
func (s *Supervisor) route() {
	if s.world.route == nil {
		return
	}
	var live []int
	filling := s.target()
	for _, w := range s.m.Workers() {
		if w.State == pool.Ready && w.Slot < max(filling, 1) && !slices.Contains(live, w.Slot) {
			live = append(live, w.Slot)
		}
	}
	slices.Sort(live)
	if len(live) == 0 {
		live = []int{0}
		for slot := 1; slot < filling; slot++ {
			live = append(live, slot)
		}
	}
	// A slot's sockets are bound when it first starts: steering to it before then steered to
	// nothing, and it must be steered again once they join the group (preload forks a slot's
	// first worker later than the pass that filled the pool).
	bound := 0
	if s.world.slots != nil {
		bound = s.world.slots()
	}
	if s.routed && slices.Equal(live, s.live) && bound == s.bound {
		return
	}
	if err := s.world.route(live); err != nil {
		// Tried again at the next pass; logged once until it works.
		if !s.routeErr {
			s.routeErr = true
			s.log.Warn("cannot steer new connections to the ready workers; the last steering stays",
				"event", "config", "error", err)
		}
		return
	}
	s.live, s.routed, s.routeErr, s.bound = live, true, false, bound
}

// target is the size the pool is going to: the machine's, less the slots being retired.
func (s *Supervisor) target() int { return s.m.Desired() - len(s.retiring) }

// scaleDown removes the highest slot. In balanced mode it first steers new connections away
// from the slot and lets its worker accept what already waits on the slot's sockets, which
// would otherwise wait for the slot's next worker; see retire. A second step down retires the
// next slot beside the first.
func (s *Supervisor) scaleDown(now time.Time, why ...any) {
	if s.world.slotQueued == nil || (len(s.retiring) == 0 && s.m.Desired() <= 1) {
		s.m.ScaleDown(now, why...)
		return
	}
	t := s.target()
	if s.m.Stopping() || t <= 0 || (s.m.Params().MaxWorkers > 0 && t <= s.m.Params().Workers) {
		return // as pool.Machine.CanScaleDown, for the size the pool is going to
	}
	if t == 1 {
		// Slot 0 cannot be steered away from (it takes what comes while nothing is ready);
		// it can go in one more step once the scale-downs under way are done.
		s.log.Info("not scaling down to 0 workers while a scale-down is under way", "event", "scale",
			"workers", t)
		return
	}
	s.retiring = append(s.retiring, retiring{slot: t - 1, since: now, why: why})
	s.log.Info("scaling down: steering new connections away from the slot first",
		append([]any{"event", "scale_drain", "slot", t - 1, "workers", t - 1}, why...)...)
	s.route()
}

// scaleUp adds a slot; the latest balanced scale-down under way is called off instead, and its
// slot, whose worker still runs, is steered to again.
func (s *Supervisor) scaleUp(now time.Time, why ...any) {
	if n := len(s.retiring); n > 0 {
		s.retiring = s.retiring[:n-1]
		s.route()
		return
	}
	s.m.ScaleUp(now, why...)
}

// restart begins a rolling restart. After SIGWINCH emptied the pool, it comes back to
// NARWHAL_WORKERS (its MIN); in balanced mode a slot above that whose sockets still hold
// connections comes back too, and is retired again once they are answered.
func (s *Supervisor) restart(now time.Time) {
	emptied := s.m.Desired() == 0
	s.m.Restart(now)
	if !emptied || s.world.slotQueued == nil || s.world.slots == nil {
		return
	}
	base, top := s.m.Desired(), s.m.Desired()
	for slot := base; slot < s.world.slots(); slot++ {
		if s.world.slotQueued(slot) > 0 {
			top = slot + 1
		}
	}
	for s.m.Desired() < top {
		before := s.m.Desired()
		s.m.ScaleUp(now, "reason", "queued")
		if s.m.Desired() == before {
			break // a range's MAX
		}
	}
	for slot := s.m.Desired() - 1; slot >= base; slot-- { // highest first, as retire takes them
		s.retiring = append(s.retiring, retiring{slot: slot, since: now, why: []any{"reason", "queued"}})
	}
	s.route()
}

// retire completes the balanced scale-downs whose slots are drained, highest first: the pool
// shrinks past a slot once retireMin has passed since it was steered away from and nothing
// waits on its sockets. Nothing else completes one: a rollout, a watched change or another
// step meanwhile leave it under way (a rollout replaces its worker too, so what waits there is
// answered by old or new code), and SIGWINCH or a graceful stop, which stop every worker, end it.
func (s *Supervisor) retire(now time.Time) {
	for len(s.retiring) > 0 {
		r := &s.retiring[0]
		if r.slot != s.m.Desired()-1 || s.m.Stopping() {
			s.retiring = nil // the pool was emptied (SIGWINCH) or is stopping
			return
		}
		if now.Before(r.since.Add(retireMin)) {
			return
		}
		if n := s.world.slotQueued(r.slot); n > 0 {
			if !r.warned && !now.Before(r.since.Add(s.cfg.StopTimeout.D())) {
				r.warned = true
				s.log.Warn("scale-down waits: connections still queued on the slot; its worker keeps accepting them",
					"event", "scale", "slot", r.slot, "queued", n, "timeout", s.cfg.StopTimeout.String())
			}
			return
		}
		why := r.why
		s.retiring = s.retiring[1:]
		s.m.ScaleDown(now, why...)
	}
}

// resize samples the accept queues and lets the scaler move a ranged pool by one worker.
// Nothing moves while the pool stops, or after SIGWINCH emptied it on purpose.
func (s *Supervisor) resize(now time.Time) {
	s.lastSample = now
	s.readQueues()
	waiting := false
	for _, l := range s.listeners {
		waiting = waiting || l.Queued > 0
	}
	s.scale.SampleQueue(now, waiting)
	if s.m.Stopping() || s.m.Desired() == 0 {
		return
	}
	switch step, why := s.scale.Decide(now, s.target(), s.m.Params().Workers, s.m.Params().MaxWorkers); step {
	case +1:
		s.scaleUp(now, why...)
	case -1:
		s.scaleDown(now, why...)
	}
}

// scanInterval is detectEvery while /proc has something urgent to show (a starting worker to
// see accept, leftovers to see gone), scanEvery otherwise.
func (s *Supervisor) scanInterval() time.Duration {
	if (s.world.accepting != nil && s.m.Count(pool.Starting) > 0) || len(s.m.Leftovers()) > 0 {
		return detectEvery
	}
	return scanEvery
}

// scanProcesses reads the process table once and gives it to everything that needs it:
// readiness by accept, NARWHAL_MAX_MEMORY, leftover groups, and the usage figures.
func (s *Supervisor) scanProcesses(now time.Time) {
	s.lastScan = now
	snap := s.world.scan()
	seen := s.world.now() // when the table was read, maybe well after the pass began
	if seen.Before(now) {
		seen = now
	}
	// The figures first: detection logs "ready", and the board, published at the end of the
	// pass, must follow that line at once for a reader who waits for it.
	workers := s.m.Workers()
	templates := s.m.Templates()
	s.usage = make(map[int]proc.Usage, len(workers)+len(templates))
	for _, t := range templates {
		s.usage[t.PID] = snap.Usage(t.PID)
	}
	roots := make(map[int]int, len(workers))
	for _, w := range workers {
		s.usage[w.PID] = snap.Usage(w.PID)
		roots[w.PID] = w.Slot
	}
	s.cpu.Observe(snap, roots)
	s.readShares(now, snap, workers, templates)
	if s.scale != nil {
		total := 0.0
		for _, secs := range s.cpu.Totals() {
			total += secs
		}
		s.scale.SampleCPU(now, total)
	}
	s.whole = s.world.container()
	s.readQueues()
	s.noteOOMKills(now)
	for _, pgid := range s.m.Leftovers() {
		if !snap.HasGroup(pgid) {
			s.m.LeftoverGone(pgid)
		}
	}
	if s.world.accepting != nil {
		var starting []int
		for _, w := range workers {
			if w.State == pool.Starting {
				starting = append(starting, w.PID)
			}
		}
		if len(starting) > 0 {
			// Ready when the table that shows it accepting was read: a worker started in this
			// very pass was not ready at the pass's start.
			for _, pid := range s.world.accepting(snap, starting) {
				s.m.MarkReady(seen, pid)
			}
		}
	}
	if limit := s.maxMemory; limit > 0 {
		for _, w := range workers {
			if bytes := s.memoryOf(w.PID); w.State == pool.Ready && bytes > limit {
				s.log.Info("worker over NARWHAL_MAX_MEMORY", "event", "memory", "slot", w.Slot, "pid", w.PID,
					"generation", w.Gen, "bytes", bytes, "limit", limit)
				s.m.Replace(now, w.PID, pool.ReasonMemory)
			}
		}
	}
	s.keepBudget(now, snap, workers)
}

// readShares reads the workers' proportional memory: every worker's every sharesEvery, or less
// often where the reads would take more than sharesDuty of a core, and a worker's first at the
// scan that first sees it, so that a new worker is never judged by its resident memory, which
// counts every shared page in full.
func (s *Supervisor) readShares(now time.Time, snap *proc.Snapshot, workers []pool.Worker, templates []pool.Template) {
	if s.world.shares == nil {
		return
	}
	all := !now.Before(s.nextShares)
	began := s.world.now()
	pids := make([]int, 0, len(workers)+len(templates))
	for _, w := range workers {
		pids = append(pids, w.PID)
	}
	for _, t := range templates {
		pids = append(pids, t.PID)
	}
	shares := make(map[int]proc.Shares, len(pids))
	for _, pid := range pids {
		if sh, ok := s.shares[pid]; ok && !all {
			shares[pid] = sh
		} else {
			shares[pid] = s.world.shares(snap.Tree(pid))
		}
	}
	s.shares = shares
	if all {
		took := s.world.now().Sub(began)
		s.nextShares = now.Add(min(max(sharesEvery, time.Duration(float64(took)/sharesDuty)), sharesStale))
	}
}

// memoryOf is the memory pid holds for NARWHAL_MAX_MEMORY and the budget: its proportional
// memory (PSS) with its descendants, so that pages shared with siblings or a template are not
// counted in full by each; its resident memory where that cannot be read.
func (s *Supervisor) memoryOf(pid int) int64 {
	if sh, ok := s.shares[pid]; ok && sh.Known {
		return sh.Proportional
	}
	return s.usage[pid].RSSBytes
}

// keepBudget acts when the container's working set is over NARWHAL_MEMORY_BUDGET, before the
// kernel's OOM killer would (see pool.Budget). One worker at a time: nothing more while any
// worker starts or stops, since the figures are moving.
func (s *Supervisor) keepBudget(now time.Time, snap *proc.Snapshot, workers []pool.Worker) {
	mem := s.whole.Memory
	if s.budget == 0 || !s.whole.MemoryKnown || mem.WorkingSet <= s.budget ||
		s.m.Count(pool.Starting)+s.m.Count(pool.Stopping) > 0 {
		return
	}
	// The choice needs each worker's memory now, not as of the last full read (seconds ago,
	// before the worker that grew did): this is rare, and the OOM killer is near.
	if s.world.shares != nil {
		for _, w := range workers {
			if w.State == pool.Ready {
				s.shares[w.PID] = s.world.shares(snap.Tree(w.PID))
			}
		}
	}
	size := func(w pool.Worker) int64 { return s.memoryOf(w.PID) }
	b, ok := pool.ChooseBudget(workers, size, mem.Limit-mem.WorkingSet)
	if !ok {
		return
	}
	action := map[bool]string{false: "replace", true: "stop first"}[b.StopFirst]
	s.log.Warn("container memory over NARWHAL_MEMORY_BUDGET; replacing the largest worker", "event", "memory_budget",
		"slot", b.Worker.Slot, "pid", b.Worker.PID, "generation", b.Worker.Gen, "bytes", b.Bytes,
		"working_set", mem.WorkingSet, "budget", s.budget, "limit", mem.Limit, "median", b.Median, "action", action)
	if b.StopFirst {
		s.m.Recycle(now, b.Worker.PID, pool.ReasonMemory)
	} else {
		s.m.Replace(now, b.Worker.PID, pool.ReasonMemory)
	}
}

// readQueues reads the listeners' accept queues, for the snapshot and the dynamic size: here,
// in the loop, so that no reader calls into the sockets it owns.
func (s *Supervisor) readQueues() {
	if s.world.queues != nil {
		s.listeners = s.world.queues()
	}
}

// noteOOMKills takes the kills the cgroup has counted since the last look.
func (s *Supervisor) noteOOMKills(now time.Time) {
	if n, ok := s.world.oomKills(); ok {
		s.oom.Note(now, n)
	}
}

// oomKilled reports whether an exit with code was the kernel OOM killer's (see pool.OOMLedger).
func (s *Supervisor) oomKilled(now time.Time, code int) bool {
	s.noteOOMKills(now)
	return s.oom.Claim(now, code)
}

// publish posts the machine's state to the board for metrics, health and the control socket.
func (s *Supervisor) publish() {
	st := &s.m.Stats
	s.board.Observe(st.ReadySeconds, st.RolloutSeconds)
	st.ReadySeconds, st.RolloutSeconds = nil, nil
	snap := &status.Snapshot{
		Mode: "pool", Generation: s.m.Generation(), Desired: s.m.Desired(), Stopping: s.m.Stopping(),
		ReadyCount: s.m.Count(pool.Ready), Starts: st.Starts,
		Exits: copyMap(st.Exits), Rollouts: copyMap(st.Rollouts), Listeners: s.listeners,
		SlotCPUSeconds: s.cpu.Totals(), Container: s.whole, MemoryMerge: s.cfg.MemoryMerge,
	}
	for _, w := range s.m.Workers() {
		snap.Workers = append(snap.Workers, status.Worker{
			Slot: w.Slot, PID: w.PID, Generation: w.Gen, State: w.State.String(), Started: w.Started,
			Restarts: w.Restarts, Resident: s.usage[w.PID].RSSBytes,
			Proportional: s.shares[w.PID].Proportional, Merged: s.shares[w.PID].Merged,
		})
		snap.SharesKnown = snap.SharesKnown || s.shares[w.PID].Known
	}
	for _, t := range s.m.Templates() {
		if t.State != pool.Stopping {
			snap.Templates = append(snap.Templates, status.Template{PID: t.PID, Generation: t.Gen, State: t.State.String(),
				Started: t.Started, Proportional: s.shares[t.PID].Proportional})
			snap.SharesKnown = snap.SharesKnown || s.shares[t.PID].Known
		}
	}
	s.board.Publish(snap)
}

func copyMap[K comparable, V any](m map[K]V) map[K]V {
	out := make(map[K]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// signal maps a signal narwhal received to what the pool does.
func (s *Supervisor) signal(now time.Time, sig syscall.Signal) {
	s.board.CountSignal(config.SignalName(sig))
	s.log.Debug("signal received", "event", "signal", "signal", config.SignalName(sig))
	if s.scale != nil && (sig == syscall.SIGTTIN || sig == syscall.SIGTTOU) {
		s.scale.Stepped(now) // the operator's step is not undone at the next sample
	}
	switch sig {
	case syscall.SIGHUP, syscall.SIGUSR2:
		s.restart(now)
		select {
		case s.restarted <- struct{}{}: // the watcher takes the files as they are now
		default: // one is pending already, or nothing is watched
		}
	case syscall.SIGTTIN:
		s.scaleUp(now, "signal", "SIGTTIN")
	case syscall.SIGTTOU:
		s.scaleDown(now, "signal", "SIGTTOU")
	case syscall.SIGWINCH:
		s.retiring = nil // every worker stops; what waits on a slot waits for its next worker
		s.m.Zero(now)
	case syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT:
		if !s.m.Stopping() {
			s.log.Info("stopping gracefully", "event", "stopping", "signal", config.SignalName(sig),
				"timeout", s.cfg.StopTimeout.String())
		}
		s.m.Stop(now)
	case syscall.SIGUSR1:
		s.m.Signal(sig)
	}
}

func (s *Supervisor) handleNotify(now time.Time, ev worker.Message) {
	pid := ev.Sender
	if !ev.FromPipe {
		pid = s.workerOf(ev.Sender)
	}
	if pid == 0 {
		s.dropped.Warn(now, s.log, "notify message from a process that is not a worker, dropped", "event", "notify_dropped", "pid", ev.Sender)
		return
	}
	n, err := worker.ParseNotify(ev.Text)
	if err != nil {
		s.dropped.Warn(now, s.log, "malformed notify message, dropped", "event", "notify_dropped", "pid", pid, "error", err.Error())
		return
	}
	if n.Ready && s.readyByNotify {
		s.m.MarkReady(now, pid)
	}
	if n.Watchdog {
		s.m.Ping(now, pid)
	}
	if n.WatchdogTrigger {
		s.m.Replace(now, pid, pool.ReasonWatchdog)
	}
	if n.HasStatus {
		s.log.Debug("worker status", "event", "status", "pid", pid, "status", n.Status)
	}
}

// workerOf maps a sender PID to the worker it is or descends from, or 0. A sender may have been
// born since the last scan, so its parents are read now.
func (s *Supervisor) workerOf(pid int) int {
	var workers []int
	for _, w := range s.m.Workers() {
		workers = append(workers, w.PID)
	}
	for depth := 0; pid > 1 && depth < 64; depth++ {
		if slices.Contains(workers, pid) {
			return pid
		}
		ppid, err := s.world.parent(pid)
		if err != nil {
			return 0
		}
		pid = ppid
	}
	return 0
}

func (s *Supervisor) close() {
	if s.notify != nil {
		s.notify.Close()
	}
	listen.CloseAll(s.sockets)
	if s.balanced != nil {
		s.balanced.Close()
	}
}

// Spawn, Signal and Ready carry out the machine's decisions (pool.Effects).
func (w *world) Spawn(slot, gen int) (int, time.Time, error) {
	pid, err := w.spawn(slot, gen)
	return pid, w.now(), err
}

func (w *world) SpawnTemplate(gen int) (int, time.Time, error) {
	if w.spawnTemplate == nil {
		return 0, time.Time{}, errors.New("NARWHAL_PRELOAD is not wired here")
	}
	pid, err := w.spawnTemplate(gen)
	return pid, w.now(), err
}

func (w *world) Signal(pid int, sig syscall.Signal, group bool) bool {
	return w.signal(pid, sig, group)
}

func (w *world) Ready(pid int) {
	if w.ready != nil {
		w.ready(pid)
	}
}

// inbox is where the loop's events arrive, and the goroutines that send them, which the loop
// owns: done is closed when Run returns, after which none of them sends any more.
type inbox struct {
	events chan any
	done   chan struct{}
	owned  sync.WaitGroup
}

func newInbox() *inbox { return &inbox{events: make(chan any, 64), done: make(chan struct{})} }
