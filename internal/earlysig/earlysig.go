// Package earlysig subscribes to every signal narwhal handles while the program is still
// initialising, so that a signal sent in the first milliseconds of a container's life is
// queued for the supervisor instead of killing PID 1 (Go's default for SIGTERM) or vanishing
// (its default for SIGUSR1). Its only dependencies are the runtime's own, so Go runs this
// package's init before those of narwhal's heavier dependencies.
//
// The invariant: when this package's init returns, the deadly and the common signals (First)
// reach C; once Wait returns, every signal in Handled does. Whatever starts a child calls Wait
// first, so no signal that arrives once a child exists is lost.
package earlysig

import (
	"os"
	"os/signal"
	"syscall"
)

// C receives every handled signal from the start of the program. The kernel and Go's runtime
// each coalesce a signal that is already pending, but os/signal drops a delivery when C is
// full: the buffer is how many deliveries may wait for the loop, which takes one every pass
// (a millisecond or so). No real sender comes near it; a script that sends hundreds of
// signals at once could lose some.
var C = make(chan os.Signal, 256)

// First are subscribed before init returns. signal.Notify enables its signals one at a time,
// and each costs a round trip to the runtime's signal-mask thread (tens of microseconds, more
// on a busy machine), but the runtime starts delivering a signal to C before that round trip,
// so order matters: first the signals that cost no round trip (those the runtime only throws
// or panics on: they reach C when another process sends them, a real fault still crashes);
// then those whose Go default ends the program (exit 2 for TERM, INT and HUP; a goroutine dump
// for QUIT and ABRT); then those an orchestrator or a terminal commonly sends.
var First = []os.Signal{
	syscall.SIGILL, syscall.SIGTRAP, syscall.SIGBUS, syscall.SIGFPE, syscall.SIGSEGV, syscall.SIGSTKFLT, syscall.SIGSYS,
	syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGABRT,
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH, syscall.SIGALRM, syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGPIPE,
}

// Handled lists the signals C receives: every signal that can be caught except SIGCHLD,
// which belongs to the reaper, and SIGURG, which the Go runtime uses to preempt goroutines.
// SIGPIPE is in the list so that a broken stderr gives write errors instead of killing
// narwhal; it is never forwarded. First comes first, then the rare ones (SIGTSTP, SIGCONT,
// resource limits, real-time signals), which init leaves to a goroutine.
var Handled = handled()

func handled() []os.Signal {
	sigs := append([]os.Signal(nil), First...)
	first := make(map[os.Signal]bool, len(First))
	for _, s := range First {
		first[s] = true
	}
	sigs = append(sigs, syscall.SIGTSTP) // a stop, unless PID 1: the likeliest of the rest to hurt
	for s := syscall.Signal(1); s <= 64; s++ {
		switch {
		case first[s], s == syscall.SIGTSTP:
		case s == syscall.SIGKILL, s == syscall.SIGSTOP, s == syscall.SIGCHLD, s == syscall.SIGURG:
		// The runtime's own handler consumes SIGPROF for its profiler before os/signal sees it.
		case s == syscall.SIGPROF:
		// 32 and 33 are the C library's, for its threads, and 34 is musl's; the runtime
		// leaves 32 and 34 at their default action and takes 33, so none can be caught.
		case s >= 32 && s <= 34:
		default:
			sigs = append(sigs, s)
		}
	}
	return sigs
}

// subscribed is closed once every signal in Handled reaches C.
var subscribed = make(chan struct{})

// init subscribes from a goroutine rather than from the main goroutine itself: during package
// initialisation the runtime locks the main goroutine to the main thread, which doubles the
// thread wake-ups of each round trip. It returns once First is subscribed; the rest goes on
// beside the other packages' init and main's configuration.
func init() {
	first := make(chan struct{})
	go func() {
		signal.Notify(C, First...)
		close(first)
		// One call per signal: Notify holds os/signal's lock across its whole list, and the
		// reaper's subscription to SIGCHLD, with narwhal's setup behind it, would wait for all
		// of the rare ones instead of one round trip.
		for _, s := range Handled[len(First):] {
			signal.Notify(C, s)
		}
		close(subscribed)
	}()
	<-first
}

// Wait returns once every signal in Handled reaches C. Call it before starting any child: a
// rare signal sent before then may still take Go's default action (most vanish).
func Wait() { <-subscribed }

// Release hands every signal back to its default action, for the short-lived client commands
// (--status, --drain) that should die on Ctrl-C like any other program, and for the shim.
func Release() {
	Wait()
	signal.Reset(Handled...)
}

// IgnoreJobControl switches SIGTTIN and SIGTTOU from caught to ignored, as tini does in init
// mode. A background process that writes to its terminal (with tostop set) or reads from it
// gets one of them; while it is caught, the kernel sends it and restarts the call once the
// handler returns, again and again, so narwhal would spin on its own log line once the child
// has the terminal's foreground. Ignored, the write goes through. Call it right after the
// child is forked, before anything is logged, and not before the fork: a child keeps an
// ignored signal ignored through exec, while a caught one goes back to its default action,
// which the child's own job control expects. A pool keeps them caught: they resize it.
// It costs no round trip.
func IgnoreJobControl() { signal.Ignore(syscall.SIGTTIN, syscall.SIGTTOU) }
