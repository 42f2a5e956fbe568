package pid1

import (
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"syscall"

	"github.com/narwhal-init/narwhal/internal/command"

	"golang.org/x/sys/unix"
)

// spawnOptions are how a child starts. stdin, stdout and stderr are always narwhal's own.
type spawnOptions struct {
	env        []string
	dir        string
	foreground bool // make the child's process group the terminal's foreground group
}

// spawn forks and execs argv in a process group of its own and returns its PID. It must run
// inside reaper.Start so that the child is registered before it can be reaped.
func spawn(argv []string, o spawnOptions) (int, error) {
	path, err := command.Look(argv[0])
	if err != nil {
		return 0, err
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
		return 0, &command.Error{Command: argv[0], Err: err}
	}
	return pid, nil
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

// takeForeground makes narwhal's process group the terminal's foreground again, after a
// pre-start command had it, so that Ctrl-C reaches the pool. A background process group may
// only do this with SIGTTOU blocked or ignored; the pool catches SIGTTOU (scale down), so it is
// blocked on this thread for the call.
func takeForeground(log *slog.Logger) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var ttou, old unix.Sigset_t
	ttou.Val[(unix.SIGTTOU-1)/64] |= 1 << ((unix.SIGTTOU - 1) % 64)
	if err := unix.PthreadSigmask(unix.SIG_BLOCK, &ttou, &old); err != nil {
		log.Warn("cannot take the terminal back after the pre-start command", "event", "pre_start", "error", err)
		return
	}
	defer unix.PthreadSigmask(unix.SIG_SETMASK, &old, nil)
	if err := unix.IoctlSetPointerInt(0, unix.TIOCSPGRP, unix.Getpgrp()); err != nil {
		log.Warn("cannot take the terminal back after the pre-start command", "event", "pre_start", "error", err)
	}
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
