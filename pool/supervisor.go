package pool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/narwhal-init/narwhal/config"
	"github.com/narwhal-init/narwhal/internal/board"
	"github.com/narwhal-init/narwhal/internal/proc"
	"github.com/narwhal-init/narwhal/reaper"
	"golang.org/x/sys/unix"
)

const (
	// detectEvery is how often a starting worker is checked for accepting on a listener.
	detectEvery = 20 * time.Millisecond
	// memoryEvery is how often NARWHAL_MAX_MEMORY is checked.
	memoryEvery = time.Second
	// watchdogKill is the time between the watchdog's SIGABRT and SIGKILL.
	watchdogKill = 2 * time.Second
)

// Supervisor is the one goroutine that owns the pool's Machine: signals, exits, notify
// messages and timers arrive as events on its loop, and it turns the machine's decisions into
// processes. Nothing else touches the machine.
type Supervisor struct {
	cfg     *config.Config
	log     *slog.Logger
	reaper  *reaper.Reaper
	sockets []*Socket
	spawner *spawner
	notify  *notifySocket
	detect  *detector // nil unless NARWHAL_READY=auto
	m       *Machine
	events  chan any
	board   *board.Board

	// NotifyDropped counts notify messages from processes that are not workers, or garbage.
	NotifyDropped int
}

type exitEvent struct{ pid, code int }

// Error is a pool that could not start; Code is narwhal's exit code.
type Error struct {
	Code int
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// New binds the listeners and prepares the pool; nothing is started yet. A COMMAND that cannot
// be found or run is an *Error with code 127 or 126, found before any listener is bound.
func New(cfg *config.Config, log *slog.Logger, argv []string, r *reaper.Reaper, b *board.Board) (*Supervisor, error) {
	if err := checkCommand(argv[0], cfg.WorkerDir); err != nil {
		return nil, err
	}
	cred, err := credential(cfg.WorkerUser, cfg.WorkerGroup)
	if err != nil {
		return nil, &Error{Code: 78, Err: err}
	}
	self, err := os.Executable()
	if err != nil {
		return nil, &Error{Code: 1, Err: fmt.Errorf("find narwhal's own executable for the LISTEN_PID shim: %w", err)}
	}
	reuseport := cfg.SocketMode == "reuseport"
	var sockets []*Socket
	if !reuseport {
		if sockets, err = Bind(cfg.Listen, int(cfg.Backlog)); err != nil {
			return nil, &Error{Code: 1, Err: err}
		}
	}
	ns, err := listenNotify()
	if err != nil {
		CloseAll(sockets)
		return nil, &Error{Code: 1, Err: err}
	}
	env := baseEnv(os.Environ())
	if l := cfg.Listen.FirstTCP(); reuseport && l != nil {
		env = append(removeVar(env, "PORT"), "PORT="+strconv.Itoa(l.Port()))
	}
	s := &Supervisor{
		cfg: cfg, log: log, reaper: r, sockets: sockets, notify: ns, board: b,
		events: make(chan any, 64),
		spawner: &spawner{
			argv: argv, self: self, sockets: sockets, reuseport: reuseport,
			dir: cfg.WorkerDir, cred: cred, notify: ns.addr, env: env,
		},
	}
	if cfg.WorkerTimeout > 0 {
		s.spawner.watchdog = strconv.FormatInt(cfg.WorkerTimeout.D().Microseconds(), 10)
	}
	if cfg.Ready == "auto" {
		s.detect = s.detector(reuseport)
		if cred != nil && int(cred.Uid) != os.Getuid() && !hasCapability(capSysPtrace) {
			log.Warn("workers run as another user and narwhal lacks CAP_SYS_PTRACE, so it cannot see them accepting; "+
				"they become ready only by READY=1. Add the capability, or set NARWHAL_READY=notify or delay",
				"event", "config", "uid", cred.Uid)
		}
	}
	n := int(cfg.Workers)
	if n == 0 {
		var why string
		n, why = AutoWorkers()
		log.Info("NARWHAL_WORKERS=auto", "event", "config", "workers", n, "reason", why)
	}
	p := Params{
		Workers: n, Surge: int(cfg.RolloutSurge),
		ReadyTimeout: cfg.ReadyTimeout.D(), StopSignal: syscall.Signal(cfg.StopSignal), StopTimeout: cfg.StopTimeout.D(),
		RestartDelay: cfg.RestartDelay.D(), RestartDelayMax: cfg.RestartDelayMax.D(),
		WatchdogTimeout: cfg.WorkerTimeout.D(), WatchdogKill: watchdogKill,
		MaxLifetime: cfg.MaxLifetime.D(), Jitter: rand.Float64,
	}
	if cfg.Ready == "delay" {
		p.ReadyDelay = max(cfg.ReadyDelay.D(), time.Nanosecond)
	}
	s.m = NewMachine(p, (*effects)(s), log)
	return s, nil
}

// detector picks what counts as accepting: in inherit mode the passed listeners; otherwise the
// worker's own socket listening on the first TCP port (or on any port, with no listener).
func (s *Supervisor) detector(reuseport bool) *detector {
	if !reuseport && len(s.sockets) > 0 {
		want := map[uint64]bool{}
		for _, sock := range s.sockets {
			want[sock.Inode] = true
		}
		return &detector{proc: "/proc", wanted: func() map[uint64]bool { return want }}
	}
	port := 0
	if l := s.cfg.Listen.FirstTCP(); l != nil {
		port = l.Port()
	}
	return &detector{proc: "/proc", wanted: portListeners("/proc", port), owning: true}
}

// capSysPtrace is CAP_SYS_PTRACE, which reading another user's /proc/PID/fd needs.
const capSysPtrace = 19

// hasCapability reports whether narwhal's effective capabilities hold capability n.
func hasCapability(n uint) bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && mask&(1<<n) != 0
		}
	}
	return false
}

func checkCommand(name, dir string) error {
	if dir != "" && !filepath.IsAbs(name) && strings.Contains(name, "/") {
		return nil // relative to a directory resolved at each spawn
	}
	path, err := lookPath(name)
	if err == nil {
		var fi os.FileInfo
		if fi, err = os.Stat(path); err == nil {
			if fi.IsDir() || fi.Mode()&0o111 == 0 {
				err = unix.EACCES
			}
		}
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, exec.ErrNotFound), errors.Is(err, os.ErrNotExist):
		return &Error{Code: 127, Err: fmt.Errorf("cannot run %q: %w", name, err)}
	default:
		return &Error{Code: 126, Err: fmt.Errorf("cannot run %q: %w", name, err)}
	}
}

// Run starts the pool and supervises it until a graceful stop ends, and returns narwhal's
// exit code: 0 when every worker stopped within NARWHAL_STOP_TIMEOUT, 1 otherwise.
func (s *Supervisor) Run(ctx context.Context, sigs <-chan os.Signal) int {
	defer s.close()
	go s.notify.run(s.events)
	if s.cfg.SocketMode == "reuseport" {
		if on, err := tcpMigrateReq(); err == nil && !on {
			s.log.Warn("net.ipv4.tcp_migrate_req is 0: connections queued on a stopping worker's socket will be reset; set it to 1",
				"event", "config")
		}
	}
	for _, sock := range s.sockets {
		s.log.Info("listening", "event", "listen", "listener", sock.Name, "address", sock.Network+"://"+sock.Address)
	}
	s.m.Start(time.Now())
	s.publish()

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var memory <-chan time.Time
	if s.cfg.MaxMemory > 0 {
		t := time.NewTicker(memoryEvery)
		defer t.Stop()
		memory = t.C
	}
	cancelled := ctx.Done() // set to nil once acted on: a closed channel is always ready
	for {
		// Timers first, on every pass: a deadline that passed while another event was handled
		// would otherwise wait for the timer, which is set only for deadlines still ahead.
		s.m.Tick(time.Now())
		if done, code := s.m.Done(); done {
			return code
		}
		now := time.Now()
		wake := s.m.Next(now)
		if s.detect != nil && s.m.Count(Starting) > 0 {
			if d := now.Add(detectEvery); wake.IsZero() || d.Before(wake) {
				wake = d
			}
		}
		if wake.IsZero() {
			wake = now.Add(time.Hour)
		}
		timer.Reset(wake.Sub(now))
		select {
		case sig := <-sigs:
			s.signal(sig.(syscall.Signal))
		case ev := <-s.events:
			s.handle(ev)
		case <-timer.C:
			s.m.Tick(time.Now())
			s.detectReady()
		case <-cancelled:
			cancelled = nil
			s.m.Stop(time.Now())
		case done := <-s.board.Pings():
			close(done)
		case <-memory:
			s.checkMemory()
		}
		s.publish()
	}
}

// checkMemory replaces, replacement ready first, each ready worker whose process tree holds more
// resident memory than NARWHAL_MAX_MEMORY.
func (s *Supervisor) checkMemory() {
	for _, w := range s.m.Workers() {
		if w.State != Ready {
			continue
		}
		if rss := proc.TreeUsage("/proc", w.PID).RSSBytes; rss > int64(s.cfg.MaxMemory) {
			s.log.Info("worker over NARWHAL_MAX_MEMORY", "event", "memory", "slot", w.Slot, "pid", w.PID,
				"generation", w.Gen, "bytes", rss, "limit", int64(s.cfg.MaxMemory))
			s.m.Replace(time.Now(), w.PID, ReasonMemory)
		}
	}
}

// publish posts the machine's state to the board for metrics, health and the control socket.
func (s *Supervisor) publish() {
	st := s.m.Stats
	s.board.Observe(st.ReadySeconds, st.RolloutSeconds)
	s.m.Stats.ReadySeconds, s.m.Stats.RolloutSeconds = nil, nil
	snap := &board.Snapshot{
		Mode: "pool", Generation: s.m.Generation(), Desired: s.m.Desired(), Stopping: s.m.Stopping(),
		ReadyCount: s.m.Count(Ready), Starts: st.Starts,
		Exits: copyMap(st.Exits), Rollouts: copyMap(st.Rollouts), Listeners: s.listenerInfo(),
	}
	for _, w := range s.m.Workers() {
		snap.Workers = append(snap.Workers, board.Worker{
			Slot: w.Slot, PID: w.PID, Generation: w.Gen, State: w.State.String(), Started: w.Started, Restarts: w.Restarts,
		})
	}
	s.board.Publish(snap)
}

func (s *Supervisor) listenerInfo() []board.Listener {
	if s.cfg.SocketMode == "reuseport" {
		var out []board.Listener
		for _, l := range s.cfg.Listen {
			out = append(out, board.Listener{Name: l.Name, Network: l.Network, Port: l.Port()})
		}
		return out
	}
	out := make([]board.Listener, len(s.sockets))
	for i, sock := range s.sockets {
		out[i] = board.Listener{Name: sock.Name, Network: sock.Network, Inode: sock.Inode, Port: sock.Port()}
	}
	return out
}

// Queue is the accept queue of listener l, for the metrics: narwhal's own socket in inherit mode,
// the sum over the workers' sockets on the port in reuseport mode.
func (s *Supervisor) Queue(l board.Listener) (queued, backlog int, ok bool) {
	for _, sock := range s.sockets {
		if sock.Name == l.Name {
			return sock.Queue()
		}
	}
	if l.Port == 0 {
		return 0, 0, false
	}
	n := 0
	for _, name := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		if b, err := os.ReadFile(name); err == nil {
			q, socks := listenQueue(string(b), l.Port)
			queued += q
			n += socks
		}
	}
	return queued, 0, n > 0
}

func copyMap(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (s *Supervisor) signal(sig syscall.Signal) {
	now := time.Now()
	s.board.CountSignal(config.SignalName(sig))
	s.log.Debug("signal received", "event", "signal", "signal", config.SignalName(sig))
	switch sig {
	case syscall.SIGHUP, syscall.SIGUSR2:
		s.m.Restart(now)
	case syscall.SIGTTIN:
		s.m.ScaleUp(now)
	case syscall.SIGTTOU:
		s.m.ScaleDown(now)
	case syscall.SIGWINCH:
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

func (s *Supervisor) handle(ev any) {
	now := time.Now()
	switch ev := ev.(type) {
	case exitEvent:
		s.m.Exited(now, ev.pid, ev.code)
	case notifyEvent:
		s.handleNotify(now, ev)
	}
}

func (s *Supervisor) handleNotify(now time.Time, ev notifyEvent) {
	pid := ev.sender
	if !ev.fromPipe {
		pid = s.workerOf(ev.sender)
	}
	if pid == 0 {
		s.NotifyDropped++
		s.log.Warn("notify message from a process that is not a worker, dropped", "event", "notify_dropped",
			"pid", ev.sender)
		return
	}
	n, err := ParseNotify(ev.msg)
	if err != nil {
		s.NotifyDropped++
		s.log.Warn("malformed notify message, dropped", "event", "notify_dropped", "pid", pid, "error", err)
		return
	}
	if n.Ready && s.cfg.Ready != "delay" {
		s.m.MarkReady(now, pid)
	}
	if n.Watchdog {
		s.m.Ping(now, pid)
	}
	if n.WatchdogTrigger {
		s.m.Replace(now, pid, ReasonWatchdog)
	}
	if n.HasStatus {
		s.log.Debug("worker status", "event", "status", "pid", pid, "status", n.Status)
	}
}

// workerOf maps a sender PID to the worker it is or descends from, or 0.
func (s *Supervisor) workerOf(pid int) int {
	workers := map[int]bool{}
	for _, w := range s.m.Workers() {
		workers[w.PID] = true
	}
	for depth := 0; pid > 1 && depth < 64; depth++ {
		if workers[pid] {
			return pid
		}
		ppid, err := proc.PPID("/proc", pid)
		if err != nil {
			return 0
		}
		pid = ppid
	}
	return 0
}

func (s *Supervisor) detectReady() {
	if s.detect == nil {
		return
	}
	for _, w := range s.m.Workers() {
		if w.State == Starting && s.detect.accepting(w.PID) {
			s.m.MarkReady(time.Now(), w.PID)
		}
	}
}

func (s *Supervisor) close() {
	s.notify.Close()
	CloseAll(s.sockets)
}

// effects carries out the machine's decisions.
type effects Supervisor

func (e *effects) Spawn(slot, gen int) (int, error) {
	var notifyR *os.File
	pid, exited, err := e.reaper.Start(func() (int, error) {
		pid, r, err := e.spawner.spawn(slot, gen)
		notifyR = r
		return pid, err
	})
	if err != nil {
		return 0, err
	}
	go func() {
		ex := <-exited
		e.events <- exitEvent{pid: pid, code: ex.Code()}
	}()
	go readPipe(notifyR, pid, e.events)
	return pid, nil
}

func (e *effects) Signal(pid int, sig syscall.Signal, group bool) {
	target := pid
	if group {
		target = -pid
	}
	if err := unix.Kill(target, sig); err != nil && !errors.Is(err, unix.ESRCH) {
		e.log.Warn("cannot signal worker", "event", "signal", "pid", pid, "signal", config.SignalName(sig), "error", err)
	}
}

func removeVar(env []string, name string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if len(kv) <= len(name) || kv[:len(name)+1] != name+"=" {
			out = append(out, kv)
		}
	}
	return out
}
