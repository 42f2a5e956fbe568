// Command narwhal is a container-native init: PID 1 that reaps, forwards signals, and runs a
// prefork pool of workers on shared listeners. See README.md and docs/.
package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/lmittmann/tint"
	"github.com/narwhal-init/narwhal/config"
	"github.com/narwhal-init/narwhal/control"
	"github.com/narwhal-init/narwhal/internal/earlysig"
	"github.com/narwhal-init/narwhal/internal/fit"
	"github.com/narwhal-init/narwhal/internal/output"
	"github.com/narwhal-init/narwhal/internal/proc"
	"github.com/narwhal-init/narwhal/internal/worker"
	"github.com/narwhal-init/narwhal/pid1"
	"golang.org/x/sys/unix"
)

// version is stamped at build time with -ldflags "-X main.version=…".
var version = ""

// Exit codes of narwhal itself; a child's own code passes through unchanged.
const (
	exitUsage  = 2
	exitConfig = 78 // EX_CONFIG from sysexits.h
)

const usage = `usage:
  narwhal [--] COMMAND [ARG...]   run COMMAND in init mode or pool mode (chosen by the environment)
  narwhal --help                  this text and every NARWHAL_* variable
  narwhal --version               version and Go version
  narwhal --check-config          validate the environment and print the effective settings (exit 0 or 78)
  narwhal --status                the running narwhal's state as JSON (exit 1 if none answers)
  narwhal --drain                 make the running narwhal unready, return after its NARWHAL_DRAIN_DELAY
  narwhal --healthcheck           exit 0 when the running narwhal is ready, 1 otherwise
`

// The main goroutine stays on the main thread. The LISTEN_PID shim must exec the worker from the
// thread its parent forked, because PR_SET_PDEATHSIG belongs to that thread: an exec from
// another thread makes that thread the process and leaves the worker without a parent-death
// signal, so it would outlive narwhal. Init mode, which sets no parent-death signal, lets go
// once configured (see run).
func init() { runtime.LockOSThread() }

func main() {
	if os.Args[0] == worker.ShimArg0 {
		earlysig.Release()
		os.Exit(worker.Shim(os.Args[1:], pendingSignals()))
	}
	os.Exit(run(os.Args[1:]))
}

// pendingSignals drains what earlysig queued before the shim released the signals.
func pendingSignals() []os.Signal {
	var sigs []os.Signal
	for {
		select {
		case s := <-earlysig.C:
			sigs = append(sigs, s)
		default:
			return sigs
		}
	}
}

func run(args []string) int {
	action, argv, err := parseArgs(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "narwhal: %v\n\n%s", err, usage)
		return exitUsage
	}
	switch action {
	case "--help":
		fmt.Print(usage, "\nEnvironment (pool mode when NARWHAL_WORKERS or NARWHAL_LISTEN is set, init mode otherwise):\n\n")
		config.WriteHelp(os.Stdout)
		return 0
	case "--version":
		fmt.Printf("narwhal %s %s\n", buildVersion(), runtime.Version())
		return 0
	}

	if action == "--status" || action == "--drain" || action == "--healthcheck" {
		earlysig.Release() // a client dies on Ctrl-C like any other command
		socket, err := config.ControlSocket()
		if err != nil {
			fmt.Fprintf(os.Stderr, "narwhal: %v\n", err)
			return exitConfig
		}
		return client(action, control.Name(socket))
	}
	cfg, err := config.Load()
	if err != nil {
		fmt.Fprintf(os.Stderr, "narwhal: %v\n", err)
		return exitConfig
	}
	switch action {
	case "--check-config":
		maxMemory, budget, err := fit.MemoryLimits(cfg, proc.Host)
		var lo, hi int
		var why string
		if err == nil && cfg.Pool {
			lo, hi, why, err = fit.Size(cfg)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "narwhal: %v\n", err)
			return exitConfig
		}
		cfg.WriteEffective(os.Stdout)
		if cfg.MaxMemory.Share > 0 {
			fmt.Printf("# NARWHAL_MAX_MEMORY=%s is %d bytes here\n", cfg.MaxMemory, maxMemory)
		}
		if budget > 0 {
			fmt.Printf("# NARWHAL_MEMORY_BUDGET=%s is %d bytes here\n", cfg.MemoryBudget, budget)
		}
		if cfg.Pool && cfg.Workers.Auto() {
			size := strconv.Itoa(lo)
			if hi > lo {
				size += "-" + strconv.Itoa(hi)
			}
			fmt.Printf("# NARWHAL_WORKERS=%s is %s here (%s)\n", cfg.Workers, size, why)
		}
		return 0
	}
	if !cfg.Pool {
		// Locked, the main thread would sleep each time the main goroutine blocks, and a wake-up
		// of that very thread would be needed to go on.
		runtime.UnlockOSThread()
	}
	// narwhal's log lines and its workers' labelled lines share stderr's lock, so none interleave.
	_, stderr := output.Std()
	return pid1.Run(cfg, newLogger(cfg, stderr), argv, earlysig.C, buildVersion)
}

// client runs --status, --drain or --healthcheck against the running narwhal: exit 0 on
// success (ready, for --healthcheck), 1 otherwise or when none answers.
func client(action, socket string) int {
	var err error
	switch action {
	case "--status":
		var raw []byte
		if raw, err = control.GetStatus(socket); err == nil {
			fmt.Printf("%s\n", raw)
			return 0
		}
	case "--healthcheck":
		var ready bool
		var reason string
		if ready, reason, err = control.Healthcheck(socket); err == nil {
			if ready {
				return 0
			}
			fmt.Fprintf(os.Stderr, "narwhal: not ready: %s\n", reason)
			return 1
		}
	case "--drain":
		err = control.Drain(socket, func(d, since time.Duration) {
			if since > 0 {
				fmt.Fprintf(os.Stderr, "narwhal: already draining, for %s; waiting the %s left\n", since.Round(time.Millisecond), d.Round(time.Millisecond))
				return
			}
			fmt.Fprintf(os.Stderr, "narwhal: draining: unready now, still serving; waiting %s\n", d)
		})
		if err == nil {
			return 0
		}
	}
	fmt.Fprintf(os.Stderr, "narwhal %s: %v\n", action, err)
	return 1
}

// parseArgs splits the command line into an action (a --flag) or the COMMAND to run.
func parseArgs(args []string) (action string, argv []string, err error) {
	if len(args) == 0 {
		return "", nil, errors.New("no COMMAND given")
	}
	switch a := args[0]; a {
	case "--":
		if len(args) == 1 {
			return "", nil, errors.New("no COMMAND given after --")
		}
		return "", args[1:], nil
	case "--check-config":
		return a, nil, nil // a COMMAND after it is allowed, as in the real invocation
	case "--help", "--version", "--status", "--drain", "--healthcheck":
		if len(args) > 1 {
			return "", nil, fmt.Errorf("%s takes no arguments", a)
		}
		return a, nil, nil
	default:
		if strings.HasPrefix(a, "-") {
			return "", nil, fmt.Errorf("unknown flag %q", a)
		}
		return "", args, nil
	}
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// newLogger logs to w (stderr): coloured text when stderr is a terminal, JSON otherwise,
// unless NARWHAL_LOG_FORMAT says which.
func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(cfg.LogLevel)) // validated by config
	tty := isTerminal(2)
	format := string(cfg.LogFormat)
	if format == "auto" {
		format = map[bool]string{true: "text", false: "json"}[tty]
	}
	var h slog.Handler
	if format == "text" {
		h = tint.NewHandler(w, &tint.Options{Level: level, NoColor: !tty, TimeFormat: "15:04:05.000"})
	} else {
		h = slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})
	}
	return slog.New(h)
}

func isTerminal(fd int) bool {
	_, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	return err == nil
}
