package pid1

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

// ExecError is a COMMAND that could not be started: exit 127 when it does not exist, 126 when
// it exists but cannot be executed, as a shell reports them.
type ExecError struct {
	Command string
	Err     error
}

func (e *ExecError) Error() string { return fmt.Sprintf("cannot run %q: %v", e.Command, e.Err) }
func (e *ExecError) Unwrap() error { return e.Err }

// Code is narwhal's exit code for the failure.
func (e *ExecError) Code() int {
	if errors.Is(e.Err, exec.ErrNotFound) || errors.Is(e.Err, unix.ENOENT) {
		return 127
	}
	return 126
}

// spawnOptions are how a child starts. stdin, stdout and stderr are always narwhal's own.
type spawnOptions struct {
	env        []string
	dir        string
	foreground bool // make the child's process group the terminal's foreground group
}

// spawn forks and execs argv in a process group of its own and returns its PID. It must run
// inside reaper.Start so that the child is registered before it can be reaped.
func spawn(argv []string, o spawnOptions) (int, error) {
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return 0, &ExecError{Command: argv[0], Err: unwrapExecError(err)}
	}
	pid, err := syscall.ForkExec(path, argv, &syscall.ProcAttr{
		Dir:   o.dir,
		Env:   o.env,
		Files: stdio(),
		Sys: &syscall.SysProcAttr{
			Setpgid:    true,
			Foreground: o.foreground,
			Ctty:       0, // fd 0 in the child, which is narwhal's stdin
		},
	})
	if err != nil {
		return 0, &ExecError{Command: argv[0], Err: err}
	}
	return pid, nil
}

// unwrapExecError keeps LookPath's reason (not found, permission denied) without its prefix.
func unwrapExecError(err error) error {
	var ee *exec.Error
	if errors.As(err, &ee) {
		return ee.Err
	}
	return err
}

// stdio passes fds 0, 1 and 2 as they are; one that narwhal itself does not have stays closed
// in the child instead of failing the start.
func stdio() []uintptr {
	files := make([]uintptr, 3)
	for fd := range files {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
			files[fd] = ^uintptr(0)
			continue
		}
		files[fd] = uintptr(fd)
	}
	return files
}

// ownsTerminal reports whether stdin is a terminal whose foreground process group is narwhal's,
// the only case in which handing the foreground to the child is narwhal's to do.
func ownsTerminal() bool {
	if _, err := unix.IoctlGetTermios(0, unix.TCGETS); err != nil {
		return false
	}
	fg, err := unix.IoctlGetInt(0, unix.TIOCGPGRP)
	return err == nil && fg == unix.Getpgrp()
}

// becomeReaper makes orphaned descendants narwhal's to reap when it is not PID 1. It returns
// an error only when narwhal can be neither.
func becomeReaper() error {
	if os.Getpid() == 1 {
		return nil
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_CHILD_SUBREAPER): %w", err)
	}
	return nil
}
