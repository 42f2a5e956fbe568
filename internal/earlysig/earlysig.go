// Package earlysig subscribes to every signal narwhal handles while the program is still
// initialising, so that a signal sent in the first milliseconds of a container's life is
// queued for the supervisor instead of killing PID 1 (Go's default for SIGTERM) or vanishing
// (its default for SIGUSR1). Its only dependencies are the runtime's own, so Go runs this
// package's init before those of narwhal's heavier dependencies.
package earlysig

import (
	"os"
	"os/signal"
	"syscall"
)

// C receives every handled signal from the start of the program. Go coalesces a signal that
// is already pending, as the kernel does, so the buffer only needs one slot per signal.
var C = make(chan os.Signal, 64)

// Handled lists the signals C receives: every signal that can be caught except SIGCHLD,
// which belongs to the reaper, and SIGURG, which the Go runtime uses to preempt goroutines.
// SIGPIPE is in the list so that a broken stderr gives write errors instead of killing
// narwhal; it is never forwarded.
var Handled = handled()

// deadly are the signals whose Go default, until Notify asks for them, is to end the program:
// exit 2 for TERM, INT and HUP, a goroutine dump for QUIT. signal.Notify enables its signals
// one at a time, each a round trip to the runtime's signal thread, so these go first.
var deadly = []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT}

func handled() []os.Signal {
	sigs := append([]os.Signal(nil), deadly...)
	for s := syscall.Signal(1); s <= 64; s++ {
		switch {
		case s == syscall.SIGTERM, s == syscall.SIGINT, s == syscall.SIGHUP, s == syscall.SIGQUIT:
		case s == syscall.SIGKILL, s == syscall.SIGSTOP, s == syscall.SIGCHLD, s == syscall.SIGURG:
		case s == syscall.SIGPROF: // the runtime keeps it for its profiler
		case s >= 32 && s <= 33: // reserved by libc for its threads
		default:
			sigs = append(sigs, s)
		}
	}
	return sigs
}

func init() { signal.Notify(C, Handled...) }

// Release hands every signal back to its default action, for the short-lived client commands
// (--status, --drain) that should die on Ctrl-C like any other program.
func Release() { signal.Reset(Handled...) }
