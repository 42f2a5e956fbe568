package supervisor

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/narwhal-init/narwhal/config"
	"github.com/narwhal-init/narwhal/internal/command"
	"github.com/narwhal-init/narwhal/internal/fit"
	"github.com/narwhal-init/narwhal/internal/listen"
	"github.com/narwhal-init/narwhal/internal/output"
	"github.com/narwhal-init/narwhal/internal/proc"
	"github.com/narwhal-init/narwhal/internal/status"
	"github.com/narwhal-init/narwhal/internal/worker"
	"github.com/narwhal-init/narwhal/reaper"
	"golang.org/x/sys/unix"
)

// Error is a pool that could not start; Code is narwhal's exit code.
type Error struct {
	Code int
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// capSysPtrace is CAP_SYS_PTRACE, which reading another user's /proc/PID/fd needs.
const capSysPtrace = 19

// New checks COMMAND, binds the listeners and prepares the pool; nothing is started yet. A
// COMMAND that cannot be found or run is an *Error with code 127 or 126, found before any
// listener is bound.
func New(cfg *config.Config, log *slog.Logger, argv []string, r *reaper.Reaper, b *status.Board) (*Supervisor, error) {
	if _, err := command.LookIn(argv[0], cfg.WorkerDir); err != nil {
		var ce *command.Error
		errors.As(err, &ce)
		return nil, &Error{Code: ce.Code(), Err: err}
	}
	fs := proc.Host // every read of /proc and the cgroups goes through fs
	maxMemory, budget, err := fit.MemoryLimits(cfg, fs)
	if err != nil {
		return nil, &Error{Code: 78, Err: err}
	}
	min, max, why, err := fit.Size(cfg)
	if err != nil {
		return nil, &Error{Code: 78, Err: err}
	}
	cred := cfg.Credential
	self, err := os.Executable()
	if err != nil {
		return nil, &Error{Code: 1, Err: fmt.Errorf("find narwhal's own executable for the LISTEN_PID shim: %w", err)}
	}
	reuseport := cfg.SocketMode == "reuseport"
	var sockets []*listen.Socket
	var bal *listen.Balancer
	switch cfg.SocketMode {
	case "inherit":
		sockets, err = listen.Bind(cfg.Listen, int(cfg.Backlog))
	case "balanced":
		if bal, err = listen.NewBalancer(cfg.Listen, int(cfg.Backlog)); err == nil {
			sockets = bal.First()
		} else if errors.Is(err, listen.ErrNoBalance) {
			log.Warn("NARWHAL_SOCKET_MODE=balanced: running as inherit", "event", "config", "reason", err.Error())
			sockets, err = listen.Bind(cfg.Listen, int(cfg.Backlog))
		}
	}
	if err != nil {
		return nil, &Error{Code: 1, Err: err}
	}
	ns, err := worker.ListenNotify()
	if err != nil {
		listen.CloseAll(sockets)
		if bal != nil {
			bal.Close()
		}
		return nil, &Error{Code: 1, Err: err}
	}
	environ := worker.BaseEnv(os.Environ())
	if l := cfg.Listen.FirstTCP(); reuseport && l != nil {
		environ = append(removeVar(environ, "PORT"), "PORT="+strconv.Itoa(l.Port()))
	}
	sp := &worker.Exec{
		Argv: argv, Self: self, Sockets: sockets, Balanced: bal, Reuseport: reuseport,
		Dir: cfg.WorkerDir, Cred: cred, Notify: ns.Addr, Env: environ, Output: string(cfg.WorkerOutput),
		MemoryMerge: cfg.MemoryMerge,
	}
	if cfg.WorkerTimeout > 0 {
		sp.Watchdog = strconv.FormatInt(cfg.WorkerTimeout.D().Microseconds(), 10)
	}

	if cfg.Workers.Auto() {
		log.Info("NARWHAL_WORKERS="+cfg.Workers.String(), "event", "config", "workers", min, "max", max, "reason", why)
	}
	in := newInbox()
	var starter worker.Starter = sp
	var pre *worker.Preload
	if cfg.Preload {
		pre = worker.NewPreload(sp)
		starter = pre
	}
	w := &world{
		now:       time.Now,
		spawn:     func(slot, gen int) (int, error) { return in.start(r, starter, string(cfg.WorkerOutput), slot, gen) },
		signal:    func(pid int, sig syscall.Signal, group bool) bool { return signal(log, pid, sig, group) },
		scan:      fs.Snapshot,
		shares:    fs.Shares,
		container: fs.Container,
		oomKills:  fs.OOMKills,
		queues:    func() []status.Listener { return listenerQueues(fs, cfg, sockets, bal) },
		parent:    fs.PPID,
	}
	if bal != nil {
		w.route, w.slotQueued, w.slots = bal.Route, bal.SlotQueued, bal.Slots
	}
	if pre != nil {
		w.spawnTemplate = func(gen int) (int, error) { return in.startTemplate(r, pre, string(cfg.WorkerOutput), gen) }
	}
	if boot := worker.NewBootPriority(); boot != nil {
		// A booting worker runs at a lower priority. With preload nothing boots per worker: a
		// worker forked from the template gets narwhal's priority at once, and the template,
		// one boot per rollout rather than one per worker, keeps narwhal's (bench/preload.sh:
		// at a lower one, a rollout under full load took 1.8 s rather than 1.4, and the tails
		// were no better).
		started := boot.Booting
		if w.spawnTemplate != nil {
			started = boot.Serving
		}
		start := w.spawn
		w.spawn = func(slot, gen int) (int, error) {
			pid, err := start(slot, gen)
			if err == nil {
				started(pid)
			}
			return pid, err
		}
		w.ready = boot.Serving
	}
	readyByNotify := false
	if cfg.Ready == "auto" {
		w.accepting = acceptDetector(fs, sockets, bal, cfg.Listen, reuseport)
		if cred != nil && int(cred.Uid) != os.Getuid() && !fs.HasCapability(capSysPtrace) {
			readyByNotify, w.accepting = true, nil // its fds cannot be read: no point looking
			log.Warn("workers run as another user and narwhal lacks CAP_SYS_PTRACE, so it cannot see them accepting; "+
				"they become ready only by READY=1. Add the capability, or set NARWHAL_READY=notify or delay",
				"event", "config", "uid", cred.Uid)
		}
	}
	if cfg.MemoryMerge {
		logMemoryMerge(log, fs)
	}
	if fs.OOMGroup() {
		log.Warn("memory.oom.group is set: one worker's OOM kill ends every process in the container, narwhal "+
			"included; keep workers within the memory limit (NARWHAL_MAX_MEMORY)", "event", "config")
	}
	if reuseport {
		if on, err := fs.TCPMigrateReq(); err == nil && !on {
			log.Warn("net.ipv4.tcp_migrate_req is 0: connections queued on a stopping worker's socket will be reset; set it to 1",
				"event", "config")
		}
	}
	for _, sock := range sockets {
		log.Info("listening", "event", "listen", "listener", sock.Name, "address", sock.Network+"://"+sock.Address)
	}
	if bal != nil {
		log.Info("balanced: one SO_REUSEPORT socket per slot; "+bal.Guarantee(), "event", "config",
			"steering", bal.Steering())
	}
	s := newSupervisor(cfg, log, w, in, b, min, max)
	s.sockets, s.balanced, s.notify = sockets, bal, ns
	s.maxMemory, s.budget = maxMemory, budget
	s.readyByNotify = s.readyByNotify || readyByNotify
	return s, nil
}

// logMemoryMerge says at start what NARWHAL_MEMORY_MERGE will do here: mark the workers, and
// whether the node's ksmd will merge anything.
func logMemoryMerge(log *slog.Logger, fs proc.FS) {
	if !worker.MemoryMergeSupported() {
		log.Warn("NARWHAL_MEMORY_MERGE: this kernel lacks PR_SET_MEMORY_MERGE (Linux 6.4 and later); workers are not marked",
			"event", "config")
		return
	}
	switch running, known := fs.KSMRunning(); {
	case running:
		log.Info("NARWHAL_MEMORY_MERGE: workers are marked for same-page merging, and the node's ksmd runs",
			"event", "config", "ksm", "running")
	case known:
		log.Warn("NARWHAL_MEMORY_MERGE: workers are marked for same-page merging, but the node's ksmd does not run "+
			"(/sys/kernel/mm/ksm/run is not 1): nothing will merge until the node enables it", "event", "config", "ksm", "stopped")
	default:
		log.Warn("NARWHAL_MEMORY_MERGE: workers are marked for same-page merging; whether the node's ksmd runs "+
			"cannot be read here (/sys/kernel/mm/ksm/run)", "event", "config", "ksm", "unknown")
	}
}

// acceptDetector picks what counts as accepting: in inherit mode, waiting on a passed listener;
// otherwise owning a socket that listens on the first TCP port (on any port, with none).
func acceptDetector(fs proc.FS, sockets []*listen.Socket, bal *listen.Balancer, ls config.Listeners, reuseport bool) func(*proc.Snapshot, []int) []int {
	wanted, owning := func() map[uint64]bool { return nil }, false
	if bal != nil {
		wanted = bal.Inodes
	} else if !reuseport && len(sockets) > 0 {
		want := map[uint64]bool{}
		for _, sock := range sockets {
			want[sock.Inode] = true
		}
		wanted = func() map[uint64]bool { return want }
	} else {
		port := 0
		if l := ls.FirstTCP(); l != nil {
			port = l.Port()
		}
		wanted, owning = func() map[uint64]bool { return fs.ListeningInodes(port) }, true
	}
	return func(snap *proc.Snapshot, pids []int) []int {
		want := wanted()
		var out []int
		for _, pid := range pids {
			if fs.Accepting(snap, pid, want, owning) {
				out = append(out, pid)
			}
		}
		return out
	}
}

// start spawns a worker through the reaper, which registers it before it can exit; its exit
// and the lines of its notify pipe come back to the loop as events. With NARWHAL_WORKER_OUTPUT
// json or text, its exit comes back only once its last lines are written (or after
// drainTimeout, while narwhal's own output stays blocked).
func (in *inbox) start(r *reaper.Reaper, sp worker.Starter, outputMode string, slot, gen int) (int, error) {
	var pipes worker.Pipes
	pid, exited, err := r.Start(func() (pid int, err error) {
		pid, pipes, err = sp.Start(slot, gen)
		return pid, err
	})
	if err != nil {
		return 0, err
	}
	in.follow(exited, pipes, outputMode, output.Label{Slot: slot, Generation: gen, PID: pid})
	return pid, nil
}

// startTemplate starts generation gen's template (NARWHAL_PRELOAD) as start does a worker, and
// reads its fork socket: its arrival at its fork point comes back as an event.
func (in *inbox) startTemplate(r *reaper.Reaper, p *worker.Preload, outputMode string, gen int) (int, error) {
	var t *worker.Template
	var pipes worker.Pipes
	pid, exited, err := r.Start(func() (pid int, err error) {
		if t, pipes, err = p.StartTemplate(gen); err != nil {
			return 0, err
		}
		return t.PID, nil
	})
	if err != nil {
		return 0, err
	}
	in.follow(exited, pipes, outputMode, output.Label{Slot: output.Template, Generation: gen, PID: pid})
	in.owned.Go(func() { p.Read(t, in.done, in.events) })
	return pid, nil
}

// follow sends a started process's exit, and the lines of its notify pipe, to the loop, and
// labels its output.
func (in *inbox) follow(exited <-chan reaper.Exit, pipes worker.Pipes, outputMode string, l output.Label) {
	pid := l.PID
	var out *output.Worker
	if pipes.Stdout != nil {
		stdout, stderr := output.Std()
		out = output.Follow(outputMode, l, pipes.Stdout, pipes.Stderr, stdout, stderr)
	}
	in.owned.Go(func() {
		ex := <-exited
		if out != nil {
			out.Drain(drainTimeout)
		}
		select {
		case in.events <- exitEvent{pid: pid, code: ex.Code()}:
		case <-in.done:
		}
	})
	in.owned.Go(func() { worker.ReadPipe(pipes.Notify, pid, in.done, in.events) })
}

// drainTimeout bounds how long a worker's exit waits for its last lines to be written, while
// narwhal's own output is blocked: the machine learns of the exit that much later, and short of
// oomWindow.
const drainTimeout = time.Second

// signal sends sig to pid, or to its process group, and reports whether anything received it.
func signal(log *slog.Logger, pid int, sig syscall.Signal, group bool) bool {
	target := pid
	if group {
		target = -pid
	}
	err := unix.Kill(target, sig)
	if err != nil && !errors.Is(err, unix.ESRCH) {
		log.Warn("cannot signal worker", "event", "signal", "pid", target, "signal", config.SignalName(sig), "error", err)
	}
	return err == nil
}

// listenerQueues reads every listener's accept queue now: narwhal's own socket in inherit mode,
// the sum over the slots' sockets in balanced mode, over the workers' sockets on the port in
// reuseport mode.
func listenerQueues(fs proc.FS, cfg *config.Config, sockets []*listen.Socket, bal *listen.Balancer) []status.Listener {
	if cfg.SocketMode == "reuseport" {
		var out []status.Listener
		for _, l := range cfg.Listen {
			ls := status.Listener{Name: l.Name, Network: l.Network, Port: l.Port()}
			if ls.Port != 0 {
				var n int
				ls.Queued, n = fs.ListenQueue(ls.Port)
				ls.QueueKnown = n > 0
			}
			out = append(out, ls)
		}
		return out
	}
	out := make([]status.Listener, len(sockets))
	for i, sock := range sockets {
		l := status.Listener{Name: sock.Name, Network: sock.Network, Port: sock.Port()}
		if bal != nil {
			l.Queued, l.Backlog, l.QueueKnown = bal.Queue(l.Name)
		} else {
			l.Queued, l.Backlog, l.QueueKnown = sock.Queue()
		}
		out[i] = l
	}
	return out
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
