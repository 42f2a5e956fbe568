package worker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/narwhal-init/narwhal/internal/command"
	"github.com/narwhal-init/narwhal/internal/listen"
	"golang.org/x/sys/unix"
)

// ShimArg0 is the argv[0] under which narwhal re-executes itself between fork and the worker's
// COMMAND, to set LISTEN_PID to the worker's own PID (Go cannot change the environment between
// fork and exec). main checks for it before anything else.
const ShimArg0 = "narwhal-listen-shim"

// Exec starts workers; the supervisor calls it from its own goroutine only.
type Exec struct {
	Argv      []string
	Self      string // narwhal's own executable, for the shim
	Sockets   []*listen.Socket
	Balanced  *listen.Balancer // balanced mode: each slot's own sockets
	Reuseport bool
	Dir       string // NARWHAL_WORKER_DIR, resolved at each spawn
	Cred      *syscall.Credential
	Notify    string // NOTIFY_SOCKET
	Watchdog  string // WATCHDOG_USEC, empty when off
	Output    string // NARWHAL_WORKER_OUTPUT
	Env       []string
	// MemoryMerge marks each worker for kernel same-page merging (NARWHAL_MEMORY_MERGE).
	MemoryMerge bool
}

// workerVars are set by narwhal for each worker and dropped from its own environment first.
var workerVars = []string{"LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "NARWHAL_NOTIFY_FD", "NARWHAL_FORK_FD",
	"WATCHDOG_USEC", "WATCHDOG_PID", "NARWHAL_WORKER_ID", "NARWHAL_GENERATION", "EINHORN_FD_COUNT"}

func BaseEnv(environ []string) []string {
	var out []string
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "EINHORN_FD_") || slices.Contains(workerVars, k) {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// Pipes are the read ends of a new worker's pipes.
type Pipes struct {
	Notify         *os.File // NARWHAL_NOTIFY_FD
	Stdout, Stderr *os.File // nil with NARWHAL_WORKER_OUTPUT=inherit
}

func (p Pipes) Close() {
	for _, f := range []*os.File{p.Notify, p.Stdout, p.Stderr} {
		if f != nil {
			f.Close()
		}
	}
}

// pipe makes a pipe whose read end goes through Go's poller and whose write end, the worker's,
// blocks as a worker expects.
func pipe(name string) (*os.File, int, error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return nil, 0, fmt.Errorf("%s pipe: %w", name, err)
	}
	unix.SetNonblock(p[0], true)
	return os.NewFile(uintptr(p[0]), name), p[1], nil
}

// launch is what a worker of a slot gets beyond narwhal's own environment: its variables, and
// the file descriptors it finds at each number (files[i] is its fd i).
type launch struct {
	vars   []string
	files  []uintptr
	pipes  Pipes
	theirs []int // the worker's pipe ends, closed here once it has them
	listen bool  // it gets listeners, so LISTEN_PID must be set in it
}

func (l *launch) closeTheirs() {
	for _, fd := range l.theirs {
		unix.Close(fd)
	}
}

// prepare makes a worker's pipes and works out its variables and descriptors. On error
// nothing is left open.
func (s *Exec) prepare(slot, gen int) (l *launch, err error) {
	l = &launch{files: []uintptr{0, 1, 2}}
	defer func() {
		if err != nil {
			l.closeTheirs()
			l.pipes.Close()
		}
	}()
	if s.Output == "json" || s.Output == "text" {
		var w1, w2 int
		if l.pipes.Stdout, w1, err = pipe("stdout"); err != nil {
			return l, err
		}
		l.theirs = append(l.theirs, w1)
		if l.pipes.Stderr, w2, err = pipe("stderr"); err != nil {
			return l, err
		}
		l.theirs = append(l.theirs, w2)
		l.files[1], l.files[2] = uintptr(w1), uintptr(w2)
	}
	notify, w, err := pipe("notify")
	if err != nil {
		return l, err
	}
	l.pipes.Notify = notify
	l.theirs = append(l.theirs, w)

	l.vars = []string{"NARWHAL_WORKER_ID=" + strconv.Itoa(slot), "NARWHAL_GENERATION=" + strconv.Itoa(gen),
		"NOTIFY_SOCKET=" + s.Notify}
	if s.Watchdog != "" {
		l.vars = append(l.vars, "WATCHDOG_USEC="+s.Watchdog)
	}
	sockets := s.Sockets
	if s.Balanced != nil {
		if sockets, err = s.Balanced.ForSlot(slot); err != nil {
			return l, err
		}
	}
	if len(sockets) > 0 && !s.Reuseport {
		names := make([]string, len(sockets))
		for i, sock := range sockets {
			l.files = append(l.files, uintptr(sock.FD()))
			names[i] = sock.Name
			l.vars = append(l.vars, fmt.Sprintf("EINHORN_FD_%d=%d", i, 3+i))
		}
		n := strconv.Itoa(len(sockets))
		l.vars = append(l.vars, "LISTEN_FDS="+n, "LISTEN_FDNAMES="+strings.Join(names, ":"), "EINHORN_FD_COUNT="+n)
		l.listen = true
	}
	l.files = append(l.files, uintptr(w))
	l.vars = append(l.vars, "NARWHAL_NOTIFY_FD="+strconv.Itoa(len(l.files)-1))
	return l, nil
}

// exec runs COMMAND with l's variables and descriptors, in its own process group, dying with
// narwhal: through the shim where LISTEN_PID or the memory merge mark must be set in the process
// itself, in NARWHAL_WORKER_DIR resolved now.
func (s *Exec) exec(l *launch, extra ...string) (int, error) {
	env := append(append(append([]string(nil), s.Env...), l.vars...), extra...)
	path, argv := s.Self, append([]string{ShimArg0}, s.Argv...)
	if !l.listen && !s.MemoryMerge {
		var err error
		if path, err = command.LookIn(s.Argv[0], s.Dir); err != nil {
			return 0, err
		}
		argv = s.Argv
	}
	dir := ""
	if s.Dir != "" {
		var err error
		if dir, err = filepath.EvalSymlinks(s.Dir); err != nil {
			return 0, fmt.Errorf("NARWHAL_WORKER_DIR: %w", err)
		}
	}
	pid, err := syscall.ForkExec(path, argv, &syscall.ProcAttr{
		Dir:   dir,
		Env:   env,
		Files: l.files,
		Sys: &syscall.SysProcAttr{
			Setpgid:    true,            // its own process group, so SIGKILL reaches its children too
			Pdeathsig:  syscall.SIGKILL, // workers die with narwhal
			Credential: s.Cred,
		},
	})
	if err != nil {
		return 0, fmt.Errorf("start %s: %w", s.Argv[0], err)
	}
	return pid, nil
}

// Start runs a worker for slot in generation gen. It returns the worker's PID and the read
// ends of its pipes. It must run inside reaper.Start.
func (s *Exec) Start(slot, gen int) (int, Pipes, error) {
	l, err := s.prepare(slot, gen)
	if err != nil {
		return 0, Pipes{}, err
	}
	defer l.closeTheirs()
	pid, err := s.exec(l)
	if err != nil {
		l.pipes.Close()
		return 0, Pipes{}, err
	}
	return pid, l.pipes, nil
}

// Shim is narwhal running as ShimArg0: it sets LISTEN_PID to its own PID and becomes argv.
// pending are signals that reached it before the exec; each is raised again with its default
// action, as if it had reached the worker before the worker handled it.
func Shim(argv []string, pending []os.Signal) int {
	for _, sig := range pending {
		unix.Kill(os.Getpid(), sig.(syscall.Signal))
	}
	if len(argv) == 0 {
		fmt.Fprintln(os.Stderr, "narwhal: shim: no command")
		return 2
	}
	if merge, _ := strconv.ParseBool(os.Getenv("NARWHAL_MEMORY_MERGE")); merge {
		if err := SetMemoryMerge(); err != nil {
			fmt.Fprintf(os.Stderr, "narwhal: NARWHAL_MEMORY_MERGE: cannot mark this worker: %v\n", err)
		}
	}
	path, err := command.Look(argv[0])
	if err == nil {
		if os.Getenv("LISTEN_FDS") != "" {
			os.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()))
		}
		err = &command.Error{Command: argv[0], Err: syscall.Exec(path, argv, os.Environ())}
	}
	fmt.Fprintf(os.Stderr, "narwhal: %v\n", err)
	var ce *command.Error
	errors.As(err, &ce)
	return ce.Code()
}
