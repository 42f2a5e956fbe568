// Package pid1 is narwhal's life as a container's first process. In init mode it runs one
// child with tini's rules: every signal forwarded, every orphan reaped, the child's exit code
// returned, and nothing left running when it returns. All exit statuses come from one reaper;
// signals come from earlysig's channel, subscribed to before any child exists.
//
// Run starts its parts as one group of actors (oklog/run): the reaper, the metrics server, the
// control socket and the mode runner (init or pool). The first to return ends the group: a part
// that fails stops the workers gracefully and makes narwhal exit non-zero.
package pid1

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"syscall"
	"time"

	"github.com/narwhal-init/narwhal/config"
	"github.com/narwhal-init/narwhal/control"
	"github.com/narwhal-init/narwhal/internal/command"
	"github.com/narwhal-init/narwhal/internal/earlysig"
	"github.com/narwhal-init/narwhal/internal/proc"
	"github.com/narwhal-init/narwhal/internal/status"
	"github.com/narwhal-init/narwhal/internal/supervisor"
	"github.com/narwhal-init/narwhal/metrics"
	"github.com/narwhal-init/narwhal/reaper"
	"github.com/oklog/run"
	"golang.org/x/sys/unix"
)

// killGrace bounds the wait for processes to vanish after SIGKILL, which they cannot refuse,
// but which a process stuck in uninterruptible sleep may take a while to act on.
const killGrace = 5 * time.Second

// childlessProbe bounds the wait for the reaper to say no child is left, before looking for
// left-over processes; the answer normally comes in microseconds.
const childlessProbe = 20 * time.Millisecond

// usageEvery is how often init mode reads its child's memory and CPU, when metrics are served.
const usageEvery = time.Second

// notForwarded are the signals init mode keeps to itself: job-control signals for narwhal's
// terminal and a broken pipe on narwhal's own output mean nothing to the child.
var notForwarded = map[syscall.Signal]bool{
	syscall.SIGPIPE: true,
	syscall.SIGTTIN: true,
	syscall.SIGTTOU: true,
}

// errExited is how the mode runner ends the group: narwhal's work is done.
var errExited = errors.New("exited")

// Run is narwhal's whole life after configuration: it becomes the reaper of its descendants,
// opens the metrics endpoint and the control socket, then runs argv in init mode or as a pool,
// and returns the code narwhal exits with. version is reported by narwhal_build_info; it is
// called only when metrics are served, since reading the build information costs a parse.
func Run(cfg *config.Config, log *slog.Logger, argv []string, sigs <-chan os.Signal, version func() string) int {
	if err := becomeReaper(); err != nil {
		log.Warn("orphans will not be reaped: narwhal is not PID 1 and cannot be a subreaper",
			"event", "no_reaper", "error", err)
	}
	r := reaper.New(log)
	b := status.New(int(cfg.MinReady), cfg.DrainDelay.D())

	var sup *supervisor.Supervisor
	if cfg.Pool {
		var err error
		if sup, err = supervisor.New(cfg, log, argv, r, b); err != nil {
			var pe *supervisor.Error
			code := 1
			if errors.As(err, &pe) {
				code = pe.Code
			}
			log.Error(err.Error(), "event", "start_failed", "code", code)
			return code
		}
	}

	var g run.Group
	// The reaper must outlive the mode runner, which waits for exits even after an interrupt;
	// so it stops when the runner returns, not when interrupted, and then reports what the
	// runner does: its own result may reach the group first.
	reaping, stopReaping := context.WithCancel(context.Background())
	defer stopReaping()
	g.Add(func() error {
		if err := r.Run(reaping); err != nil {
			return err
		}
		return errExited
	}, func(error) {})

	// Probes and the control socket answer from before the first child starts.
	if addr := cfg.EffectiveMetricsAddr(); addr != "" {
		ln, err := metrics.Listen(addr)
		if err != nil {
			log.Error(err.Error(), "event", "start_failed", "code", 1)
			return 1
		}
		reg := metrics.Registry(metrics.New(b, r.Orphans, version()))
		srv := metrics.NewServer(metrics.Handler(reg, b, metrics.LiveTimeout))
		log.Info("serving metrics and health", "event", "listen", "address", ln.Addr().String())
		g.Add(func() error {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return failed(log, "metrics server", err)
			}
			return nil // interrupted
		}, func(error) { srv.Close() })
	}
	if ctl, err := control.Listen(control.Name(cfg.ControlSocket), b, log); err != nil {
		if cfg.ControlSocket != "" { // asked for by name: a preStop --drain would miss it
			log.Error(err.Error(), "event", "start_failed", "code", 1)
			return 1
		}
		log.Warn("control socket unavailable; --status, --drain and --healthcheck will not reach this narwhal",
			"event", "control", "error", err)
	} else {
		serving, stop := context.WithCancel(context.Background())
		g.Add(func() error {
			if err := ctl.Serve(serving); err != nil {
				return failed(log, "control socket", err)
			}
			return nil
		}, func(error) { stop() })
	}

	code := 0
	running, interrupt := context.WithCancel(context.Background())
	defer interrupt()
	g.Add(func() error {
		defer stopReaping()
		code = runMode(running, cfg, log, r, argv, sigs, b, sup)
		return errExited
	}, func(error) { interrupt() })

	if err := g.Run(); !errors.Is(err, errExited) && code == 0 {
		code = 1 // a part failed; failed logged it when it happened
	}
	return code
}

// failed logs that a part of narwhal stopped working, when it does (the workers are stopped
// next, and their log lines should follow the reason), and returns the error for the group.
func failed(log *slog.Logger, part string, err error) error {
	err = fmt.Errorf("%s: %w", part, err)
	log.Error("a part of narwhal failed; stopping", "event", "failed", "error", err.Error())
	return err
}

// runMode runs init mode's child, or the pool after its pre-start command, until done or until
// ctx ends (a part of narwhal failed), which stops it as SIGTERM would.
func runMode(ctx context.Context, cfg *config.Config, log *slog.Logger, r *reaper.Reaper, argv []string,
	sigs <-chan os.Signal, b *status.Board, sup *supervisor.Supervisor) int {
	earlysig.Wait() // every signal reaches sigs before the first child exists
	if !cfg.Pool {
		code, _ := runChild(ctx, cfg, log, r, argv, sigs, b, true)
		if remapped := cfg.ExitRemap.Apply(code); remapped != code {
			log.Info("exit code remapped", "event", "remap", "code", remapped, "from", code)
			code = remapped
		}
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

// runChild runs argv as the only child, with tini's rules, and returns its exit code and whether
// a stop signal arrived meanwhile: init mode (initMode: the child is slot 0 on the board), and
// NARWHAL_PRE_START before a pool (pool signals are not forwarded to it, and the terminal's
// foreground comes back to narwhal afterwards, for the pool's Ctrl-C). ctx's end is a stop.
func runChild(ctx context.Context, cfg *config.Config, log *slog.Logger, r *reaper.Reaper, argv []string,
	sigs <-chan os.Signal, b *status.Board, initMode bool) (int, bool) {
	opts := spawnOptions{env: os.Environ(), foreground: ownsTerminal()}
	if opts.foreground && !initMode {
		defer takeForeground(log)
	}
	pid, exited, err := r.Start(func() (int, error) { return spawn(argv, opts) })
	if initMode {
		// PID 1 must never stop on its own terminal, as tini ensures. Ignored only now: the child
		// was forked while they were caught, so it starts with their default actions.
		earlysig.IgnoreJobControl()
	}
	if err != nil {
		var ce *command.Error
		if !errors.As(err, &ce) {
			ce = &command.Error{Command: argv[0], Err: err}
		}
		log.Error(ce.Error(), "event", "exec_failed", "command", argv[0], "code", ce.Code())
		return ce.Code(), false
	}
	log.Info("child started", "event", "start", "slot", 0, "pid", pid, "generation", 1, "command", argv[0])
	snap := initSnapshot{Mode: "init", Generation: 1, Desired: 1, ReadyCount: 1, Starts: 1,
		Workers: []status.Worker{{Slot: 0, PID: pid, Generation: 1, State: "ready", Started: time.Now()}}}
	publish := func() {
		if initMode {
			b.Publish(snap.copy())
		}
	}
	publish()
	if initMode {
		// From here an init only waits: give back the pages of its binary that starting mapped.
		if n, err := proc.ShedExecutable(); err != nil {
			log.Debug("could not let go of the executable's pages", "error", err)
		} else {
			log.Debug("let go of the executable's pages", "bytes", n)
		}
	}
	cpu := proc.NewCPULedger()
	var nextShares time.Time
	readUsage := func() {
		tree := proc.Host.Snapshot()
		cpu.Observe(tree, map[int]int{pid: 0})
		snap.Workers[0].Resident = tree.Usage(pid).RSSBytes
		// smaps_rollup walks every page table: read it at most 0.5% of the time, as a pool does.
		if now := time.Now(); !now.Before(nextShares) {
			shares := proc.Host.Shares(tree.Tree(pid))
			snap.Workers[0].Proportional, snap.SharesKnown = shares.Proportional, shares.Known
			nextShares = now.Add(min(max(2*time.Second, time.Since(now)*200), 10*time.Second))
		}
		snap.SlotCPUSeconds = cpu.Totals()
		snap.Container = proc.Host.Container()
	}
	stopped := false

	target := pid
	if cfg.SignalGroup {
		target = -pid // the child's process group, which spawn made with the child's PID as its ID
	}
	var usage <-chan time.Time
	if initMode && cfg.EffectiveMetricsAddr() != "" {
		t := time.NewTicker(usageEvery)
		defer t.Stop()
		usage = t.C
		readUsage()
		publish()
	}
	cancelled := ctx.Done()
	var kill <-chan time.Time // armed when a failure of narwhal stops the child
	for {
		select {
		case s := <-sigs:
			sig := s.(syscall.Signal)
			b.CountSignal(config.SignalName(sig))
			if !initMode && slices.Contains(status.PoolSignals, sig) {
				log.Info("signal ignored: the pool has not started", "event", "signal", "signal", config.SignalName(sig))
				continue
			}
			forward(log, cfg.SignalRewrite, sig, target)
			if slices.Contains(status.StopSignals, sig) && !stopped {
				stopped, snap.Stopping = true, true
				publish()
			}
		case <-cancelled:
			cancelled = nil
			log.Info("stopping the child: a part of narwhal failed", "event", "stopping", "signal", cfg.StopSignal.String())
			unix.Kill(target, syscall.Signal(cfg.StopSignal))
			stopped, snap.Stopping = true, true
			publish()
			kill = time.After(cfg.StopTimeout.D())
		case <-kill:
			log.Warn("the child did not stop in time; killing it", "event", "kill", "pid", pid, "signal", "SIGKILL")
			unix.Kill(-pid, syscall.SIGKILL)
			signalDescendants(syscall.SIGKILL)
		case <-usage:
			readUsage()
			publish()
		case done := <-b.Refreshes():
			readUsage()
			publish()
			close(done)
		case done := <-b.Pings():
			close(done)
		case exit := <-exited:
			code := exit.Code()
			attrs := []any{"event", "exit", "slot", 0, "pid", pid, "generation", 1, "code", code}
			if exit.Status.Signaled() {
				attrs = append(attrs, "signal", config.SignalName(exit.Status.Signal()))
			}
			log.Info("child exited", attrs...)
			snap.Stopping, snap.ReadyCount, snap.Workers = true, 0, nil
			publish()
			stopLeftovers(ctx, log, r, cfg)
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
	quick, cancelQuick := context.WithTimeout(context.WithoutCancel(ctx), childlessProbe)
	defer cancelQuick()
	if r.WaitChildless(quick) == nil {
		return
	}
	wait := func(d time.Duration) error {
		c, cancel := context.WithTimeout(context.WithoutCancel(ctx), d)
		defer cancel()
		return r.WaitChildless(c)
	}
	if signalDescendants(syscall.Signal(cfg.StopSignal)) == 0 {
		// Nothing to signal: at most zombies remain, which the reaper collects at once.
		wait(killGrace)
		return
	}
	log.Info("stopping left-over processes", "event", "cleanup", "signal", cfg.StopSignal.String(), "timeout", cfg.StopTimeout.String())
	if wait(cfg.StopTimeout.D()) == nil {
		return
	}
	log.Warn("left-over processes did not stop in time; killing them", "event", "cleanup", "signal", "SIGKILL")
	signalDescendants(syscall.SIGKILL)
	if wait(killGrace) != nil {
		log.Error("left-over processes survived SIGKILL; exiting without them", "event", "cleanup")
	}
}

// initSnapshot is init mode's board entry. Readers hold what was published while the loop goes
// on changing its own, so each publish hands over a copy.
type initSnapshot status.Snapshot

func (s initSnapshot) copy() *status.Snapshot {
	c := status.Snapshot(s)
	c.Workers = append([]status.Worker(nil), s.Workers...)
	return &c
}
