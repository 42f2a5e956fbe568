// Package command finds the program a COMMAND names, as a shell would, and says why one cannot
// run in a shell's terms: exit 127 when it does not exist, 126 when it exists but cannot be
// executed. Init mode, the pool and the LISTEN_PID shim all report through it.
package command

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// Error is a COMMAND that could not be started.
type Error struct {
	Command string
	Err     error
}

func (e *Error) Error() string { return fmt.Sprintf("cannot run %q: %v", e.Command, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// Code is the exit code a shell gives the failure: 127 not found, 126 not executable.
func (e *Error) Code() int {
	if errors.Is(e.Err, exec.ErrNotFound) || errors.Is(e.Err, fs.ErrNotExist) {
		return 127
	}
	return 126
}

// LookIn is Look for a child that will run in dir: a relative path such as ./server is
// dir's, resolved when the child starts there (dir may be a symlink that moves between
// starts), so it is returned as it is; anything else is Look's.
func LookIn(name, dir string) (string, error) {
	if dir != "" && !filepath.IsAbs(name) && strings.Contains(name, "/") {
		return name, nil
	}
	return Look(name)
}

// Look finds name: one with a '/' is a path, any other is searched in PATH. A directory, or a
// file without execute permission, is an *Error too, found before anything forks.
func Look(name string) (string, error) {
	path := name
	if !strings.Contains(name, "/") {
		var err error
		if path, err = exec.LookPath(name); err != nil {
			var ee *exec.Error
			if errors.As(err, &ee) {
				err = ee.Err // keep the reason (not found, permission denied) without the prefix
			}
			return "", &Error{Command: name, Err: err}
		}
	}
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return "", &Error{Command: name, Err: err}
	case fi.IsDir() || fi.Mode()&0o111 == 0:
		return "", &Error{Command: name, Err: syscall.EACCES}
	}
	return path, nil
}
