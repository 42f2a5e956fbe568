// Package worker starts workers and hears from them. A Starter starts one for a slot of a
// generation with everything a worker gets: its slot's listeners, the notify pipe, the output
// pipes, its own process group and a parent-death signal. Exec, which forks and executes
// COMMAND afresh (through the LISTEN_PID shim), is one Starter; Preload, which forks each
// worker from a template that loaded the app (NARWHAL_PRELOAD), is the other. The notify
// socket and the notify pipes carry sd_notify messages back as Messages. Nothing here decides
// anything; the pool does.
package worker

// Starter starts the worker for slot in generation gen and returns its PID and the read ends of
// its pipes. It is called inside reaper.Start, so the PID is registered before the worker can
// exit and no exit status is lost.
type Starter interface {
	Start(slot, gen int) (pid int, pipes Pipes, err error)
}

var (
	_ Starter = (*Exec)(nil)
	_ Starter = (*Preload)(nil)
)
