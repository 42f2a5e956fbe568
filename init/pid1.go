// Package pid1 is narwhal's life as a container's first process. In init mode it runs one
// child with tini's rules: every signal forwarded, every orphan reaped, the child's exit code
// returned, and nothing left running when it returns. All exit statuses come from one reaper;
// signals come from earlysig's channel, subscribed to before any child exists.
package pid1

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"syscall"
	"time"

	"github.com/narwhal-init/narwhal/config"
	"github.com/narwhal-init/narwhal/control"
	"github.com/narwhal-init/narwhal/internal/board"
	"github.com/narwhal-init/narwhal/metrics"
	"github.com/narwhal-init/narwhal/pool"
	"github.com/narwhal-init/narwhal/reaper"
	"golang.org/x/sys/unix"
)

// killGrace bounds the wait for processes to vanish after SIGKILL, which they cannot refuse,
// but which a process stuck in uninterruptible sleep may take a while to act on.
const killGrace = 5 * time.Second

// childlessProbe bounds the wait for the reaper to say no child is left, before looking for
// left-over processes; the answer normally comes in microseconds.
const childlessProbe = 20 * time.Millisecond

// notForwarded are the signals init mode keeps to itself: job-control signals for narwhal's
// terminal and a broken pipe on narwhal's own output mean nothing to the child.
var notForwarded = map[os.Signal]bool{
	syscall.SIGPIPE: true,
	syscall.SIGTTIN: true,
	syscall.SIGTTOU: true,
}

// Run is narwhal's whole life after configuration: it becomes the reaper of its descendants,
// opens the metrics endpoint and the control socket, then runs argv in init mode or as a pool,
// and returns the code narwhal exits with. version is reported by narwhal_build_info.
func Run(cfg *config.Config, log *slog.Logger, argv []string, sigs <-chan os.Signal, version string) int {
	if err := becomeReaper(); err != nil {
		log.Warn("orphans will not be reaped: narwhal is not PID 1 and cannot be a subreaper",
			"event", "no_reaper", "error", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := reaper.New(log)
	go r.Run(ctx)
	b := board.New(int(cfg.MinReady), cfg.DrainDelay.D())

	var sup *pool.Supervisor
	queues := func(board.Listener) (int, int, bool) { return 0, 0, false }
	if cfg.Pool {
		var err error
		if sup, err = pool.New(cfg, log, argv, r, b); err != nil {
			var pe *pool.Error
			code := 1
			if errors.As(err, &pe) {
				code = pe.Code
			}
			log.Error(err.Error(), "event", "start_failed", "code", code)
			return code
		}
		queues = sup.Queue
	}
	// Probes and the control socket answer from before the first child starts.
	if addr := cfg.EffectiveMetricsAddr(); addr != "" {
		ln, err := metrics.Listen(addr)
		if err != nil {
			log.Error(err.Error(), "event", "start_failed", "code", 1)
			return 1
		}
		reg := metrics.Registry(metrics.New(b, r.Orphans, version, queues))
		go metrics.Serve(ctx, ln, metrics.Handler(reg, b, metrics.LiveTimeout), log)
	}
	if ctl, err := control.Listen(control.Name(cfg.ControlSocket), b, log); err != nil {
		log.Warn("control socket unavailable; --status, --drain and --healthcheck will not reach this narwhal",
			"event", "control", "error", err)
	} else {
		go ctl.Serve(ctx)
	}

	if !cfg.Pool {
		code, _ := runChild(ctx, cfg, log, r, argv, sigs, b, true)
		return code
	}
	if len(cfg.PreStart) > 0 {
		log.Info("running pre-start command", "event", "pre_start", "command", cfg.PreStart.String())
		code, stopped := runChild(ctx, cfg, log, r, cfg.PreStart, sigs, b, false)
		if code != 0 {
			log.Error("pre-start command failed; not starting workers", "event", "pre_start", "code", code)
			return code
		}
		if stopped {
			log.Info("asked to stop during the pre-start command; not starting workers", "event", "pre_start")
			return 0
		}
	}
	return sup.Run(ctx, sigs)
}

// stopSignals are those after which init mode reports itself stopping (unready), and after
// which a pool does not start once its pre-start command ends.
var stopSignals = map[syscall.Signal]bool{syscall.SIGTERM: true, syscall.SIGINT: true, syscall.SIGQUIT: true}

// poolSignals steer a pool; during the pre-start command there is no pool yet, and they are
// not the migration's business (SIGHUP's default action would kill it).
var poolSignals = map[syscall.Signal]bool{syscall.SIGHUP: true, syscall.SIGUSR2: true, syscall.SIGUSR1: true,
	syscall.SIGTTIN: true, syscall.SIGTTOU: true, syscall.SIGWINCH: true}

// runChild runs argv as the only child, with tini's rules, and returns its exit code and whether
// a stop signal arrived meanwhile: init mode (publish: the child is slot 0 on the board), and
// NARWHAL_PRE_START before a pool (publish false: pool signals are not forwarded to it).
func runChild(ctx context.Context, cfg *config.Config, log *slog.Logger, r *reaper.Reaper, argv []string,
	sigs <-chan os.Signal, b *board.Board, publish bool) (int, bool) {
	opts := spawnOptions{env: os.Environ(), foreground: ownsTerminal()}
	pid, exited, err := r.Start(func() (int, error) { return spawn(argv, opts) })
	if err != nil {
		var ee *ExecError
		if !errors.As(err, &ee) {
			ee = &ExecError{Command: argv[0], Err: err}
		}
		log.Error(ee.Error(), "event", "exec_failed", "command", argv[0], "code", ee.Code())
		return ee.Code(), false
	}
	log.Info("child started", "event", "start", "slot", 0, "pid", pid, "generation", 1, "command", argv[0])
	snap := initSnapshot{Mode: "init", Generation: 1, Desired: 1, ReadyCount: 1, Starts: 1,
		Workers: []board.Worker{{Slot: 0, PID: pid, Generation: 1, State: "ready", Started: time.Now()}}}
	if publish {
		b.Publish(snap.copy())
	}
	stopped := false

	target := pid
	if cfg.SignalGroup {
		target = -pid // the child's process group, which spawn made with the child's PID as its ID
	}
	for {
		select {
		case s := <-sigs:
			sig := s.(syscall.Signal)
			b.CountSignal(config.SignalName(sig))
			if !publish && poolSignals[sig] {
				log.Info("signal ignored: the pool has not started", "event", "signal", "signal", config.SignalName(sig))
				continue
			}
			forward(log, cfg.SignalRewrite, sig, target)
			stopped = stopped || stopSignals[sig]
			if publish && stopSignals[sig] && !snap.Stopping {
				snap.Stopping = true
				b.Publish(snap.copy())
			}
		case done := <-b.Pings():
			close(done)
		case exit := <-exited:
			code := exit.Code()
			attrs := []any{"event", "exit", "slot", 0, "pid", pid, "generation", 1, "code", code}
			if exit.Status.Signaled() {
				attrs = append(attrs, "signal", config.SignalName(exit.Status.Signal()))
			}
			log.Info("child exited", attrs...)
			if publish {
				b.Publish(&board.Snapshot{Mode: "init", Generation: 1, Desired: 1, Stopping: true, Starts: 1})
			}
			stopLeftovers(ctx, log, r, cfg)
			if remapped := cfg.ExitRemap.Apply(code); remapped != code {
				log.Info("exit code remapped", "event", "remap", "code", remapped, "from", code)
				code = remapped
			}
			return code, stopped
		}
	}
}

// forward sends s, rewritten, to target (a PID, or a negative process group ID).
func forward(log *slog.Logger, rewrite config.SignalRewrite, s syscall.Signal, target int) {
	if notForwarded[s] {
		return
	}
	to, ok := rewrite.Apply(s)
	if !ok {
		log.Debug("signal dropped", "event", "signal", "signal", config.SignalName(s), "reason", "rewrite")
		return
	}
	if err := unix.Kill(target, to); err != nil {
		log.Debug("signal not delivered", "event", "signal", "signal", config.SignalName(to), "pid", target, "error", err)
		return
	}
	log.Debug("signal forwarded", "event", "signal", "signal", config.SignalName(to), "received", config.SignalName(s), "pid", target)
}

// stopLeftovers ends the descendants that outlived the child (a shell's background job): the
// stop signal, then SIGKILL once NARWHAL_STOP_TIMEOUT passes, then a bounded wait for them to
// be reaped. It returns when no child is left, or after that last wait if some never die.
func stopLeftovers(ctx context.Context, log *slog.Logger, r *reaper.Reaper, cfg *config.Config) {
	// No child left means no descendant left: an orphan would have become narwhal's child. The
	// reaper answers that at once, which spares the common case a walk of /proc.
	quick, cancelQuick := context.WithTimeout(ctx, childlessProbe)
	defer cancelQuick()
	if r.WaitChildless(quick) == nil {
		return
	}
	if signalDescendants(syscall.Signal(cfg.StopSignal)) == 0 {
		// Nothing to signal: at most zombies remain, which the reaper collects at once.
		wait, cancel := context.WithTimeout(ctx, killGrace)
		defer cancel()
		r.WaitChildless(wait)
		return
	}
	log.Info("stopping left-over processes", "event", "cleanup", "signal", cfg.StopSignal.String(), "timeout", cfg.StopTimeout.String())
	wait, cancel := context.WithTimeout(ctx, cfg.StopTimeout.D())
	defer cancel()
	if r.WaitChildless(wait) == nil {
		return
	}
	log.Warn("left-over processes did not stop in time; killing them", "event", "cleanup", "signal", "SIGKILL")
	signalDescendants(syscall.SIGKILL)
	wait, cancel = context.WithTimeout(ctx, killGrace)
	defer cancel()
	if r.WaitChildless(wait) != nil {
		log.Error("left-over processes survived SIGKILL; exiting without them", "event", "cleanup")
	}
}

// initSnapshot is init mode's board entry. Readers hold what was published while the loop goes
// on changing its own, so each publish hands over a copy.
type initSnapshot board.Snapshot

func (s initSnapshot) copy() *board.Snapshot {
	c := board.Snapshot(s)
	c.Workers = append([]board.Worker(nil), s.Workers...)
	return &c
}
