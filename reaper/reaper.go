// Package reaper is the only code in narwhal that collects exit statuses. One goroutine calls
// wait4(-1, WNOHANG) until nothing is left, on every SIGCHLD and on a slow tick, and hands each
// status to whoever registered that PID. A process is registered by starting it through Start,
// which holds the reaper's lock from fork to registration, so an exit can never be reaped before
// its PID is known; every other status is an orphan's, counted and logged at debug.
package reaper

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Tick bounds how long a lost SIGCHLD can delay a reap.
const Tick = time.Second

// Exit is the end of a process.
type Exit struct {
	PID    int
	Status unix.WaitStatus
}

// Code is the exit code a shell would report: the exit status, or 128+N when signal N killed it.
func (e Exit) Code() int {
	if e.Status.Signaled() {
		return 128 + int(e.Status.Signal())
	}
	return e.Status.ExitStatus()
}

// Reaper collects the exit statuses of this process's children.
type Reaper struct {
	log     *slog.Logger
	sigchld chan os.Signal
	kick    chan struct{}
	orphans atomic.Uint64

	mu      sync.Mutex // held across fork+register and across each wait4+lookup
	waiting map[int]chan Exit
	idle    []chan struct{} // closed when wait4 says there are no children
}

// New subscribes to SIGCHLD at once, so no exit that happens after it returns goes unnoticed.
func New(log *slog.Logger) *Reaper {
	r := &Reaper{
		log:     log,
		sigchld: make(chan os.Signal, 1),
		kick:    make(chan struct{}, 1),
		waiting: map[int]chan Exit{},
	}
	signal.Notify(r.sigchld, unix.SIGCHLD)
	return r
}

// Run reaps until ctx ends. It returns without waiting for SIGCHLD to be unsubscribed: that
// costs a round trip to the runtime's signal thread and a wait for os/signal's loop to go
// idle (tens of microseconds, at times a millisecond), and narwhal exits right after Run.
func (r *Reaper) Run(ctx context.Context) error {
	defer func() { go signal.Stop(r.sigchld) }()
	tick := time.NewTicker(Tick)
	defer tick.Stop()
	for {
		r.reap()
		select {
		case <-ctx.Done():
			return nil
		case <-r.sigchld:
		case <-r.kick:
		case <-tick.C:
		}
	}
}

// Start runs spawn, which must fork a child and return its PID, and registers that PID before
// any exit can be reaped. The returned channel receives the child's Exit exactly once.
func (r *Reaper) Start(spawn func() (int, error)) (int, <-chan Exit, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pid, err := spawn()
	if err != nil {
		return 0, nil, err
	}
	ch := make(chan Exit, 1)
	r.waiting[pid] = ch
	return pid, ch, nil
}

// Orphans is the number of exits reaped that nobody registered.
func (r *Reaper) Orphans() uint64 { return r.orphans.Load() }

// WaitChildless returns nil once this process has no children left, or ctx's error.
func (r *Reaper) WaitChildless(ctx context.Context) error {
	done := make(chan struct{})
	r.mu.Lock()
	r.idle = append(r.idle, done)
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// reap collects every exit that is ready, then returns.
func (r *Reaper) reap() {
	for {
		var ws unix.WaitStatus
		r.mu.Lock()
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			r.mu.Unlock()
			continue
		}
		if pid <= 0 {
			if errors.Is(err, unix.ECHILD) {
				for _, c := range r.idle {
					close(c)
				}
				r.idle = nil
			}
			r.mu.Unlock()
			return
		}
		ch, registered := r.waiting[pid]
		delete(r.waiting, pid)
		r.mu.Unlock()

		exit := Exit{PID: pid, Status: ws}
		if registered {
			ch <- exit
			continue
		}
		r.orphans.Add(1)
		r.log.Debug("orphan reaped", "event", "orphan", "pid", pid, "code", exit.Code())
	}
}
