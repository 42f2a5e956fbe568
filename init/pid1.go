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
	"github.com/narwhal-init/narwhal/pool"
	"github.com/narwhal-init/narwhal/reaper"
	"golang.org/x/sys/unix"
)

// killGrace bounds the wait for processes to vanish after SIGKILL, which they cannot refuse,
// but which a process stuck in uninterruptible sleep may take a while to act on.
const killGrace = 5 * time.Second

// notForwarded are the signals init mode keeps to itself: job-control signals for narwhal's
// terminal and a broken pipe on narwhal's own output mean nothing to the child.
var notForwarded = map[os.Signal]bool{
	syscall.SIGPIPE: true,
	syscall.SIGTTIN: true,
	syscall.SIGTTOU: true,
}

// Run is narwhal's whole life after configuration: it becomes the reaper of its descendants,
// then runs argv in init mode or as a pool, and returns the code narwhal exits with.
func Run(cfg *config.Config, log *slog.Logger, argv []string, sigs <-chan os.Signal) int {
	if err := becomeReaper(); err != nil {
		log.Warn("orphans will not be reaped: narwhal is not PID 1 and cannot be a subreaper",
			"event", "no_reaper", "error", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := reaper.New(log)
	go r.Run(ctx)

	if !cfg.Pool {
		return runChild(ctx, cfg, log, r, argv, sigs)
	}
	sup, err := pool.New(cfg, log, argv, r)
	if err != nil {
		var pe *pool.Error
		code := 1
		if errors.As(err, &pe) {
			code = pe.Code
		}
		log.Error(err.Error(), "event", "start_failed", "code", code)
		return code
	}
	if len(cfg.PreStart) > 0 {
		log.Info("running pre-start command", "event", "pre_start", "command", cfg.PreStart.String())
		if code := runChild(ctx, cfg, log, r, cfg.PreStart, sigs); code != 0 {
			log.Error("pre-start command failed; not starting workers", "event", "pre_start", "code", code)
			return code
		}
	}
	return sup.Run(ctx, sigs)
}

// runChild runs argv as the only child, with tini's rules, and returns its exit code: init
// mode, and NARWHAL_PRE_START before a pool.
func runChild(ctx context.Context, cfg *config.Config, log *slog.Logger, r *reaper.Reaper, argv []string, sigs <-chan os.Signal) int {
	opts := spawnOptions{env: os.Environ(), foreground: ownsTerminal()}
	pid, exited, err := r.Start(func() (int, error) { return spawn(argv, opts) })
	if err != nil {
		var ee *ExecError
		if !errors.As(err, &ee) {
			ee = &ExecError{Command: argv[0], Err: err}
		}
		log.Error(ee.Error(), "event", "exec_failed", "command", argv[0], "code", ee.Code())
		return ee.Code()
	}
	log.Info("child started", "event", "start", "slot", 0, "pid", pid, "command", argv[0])

	target := pid
	if cfg.SignalGroup {
		target = -pid // the child's process group, which spawn made with the child's PID as its ID
	}
	for {
		select {
		case s := <-sigs:
			forward(log, cfg.SignalRewrite, s.(syscall.Signal), target)
		case exit := <-exited:
			code := exit.Code()
			attrs := []any{"event", "exit", "slot", 0, "pid", pid, "code", code}
			if exit.Status.Signaled() {
				attrs = append(attrs, "signal", config.SignalName(exit.Status.Signal()))
			}
			log.Info("child exited", attrs...)
			stopLeftovers(ctx, log, r, cfg)
			if remapped := cfg.ExitRemap.Apply(code); remapped != code {
				log.Info("exit code remapped", "event", "remap", "code", remapped, "from", code)
				code = remapped
			}
			return code
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
