package command

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestLook(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		code int // 0: found
	}{
		{"sh", 0},
		{"/bin/sh", 0},
		{"no-such-command-anywhere", 127},
		{filepath.Join(dir, "missing"), 127},
		{plain, 126},
		{dir, 126},
	}
	for _, tc := range tests {
		path, err := Look(tc.name)
		if tc.code == 0 {
			if err != nil || path == "" {
				t.Errorf("Look(%q) = %q, %v; want a path", tc.name, path, err)
			}
			continue
		}
		var ce *Error
		if !errors.As(err, &ce) {
			t.Errorf("Look(%q) error = %v, want a *command.Error", tc.name, err)
			continue
		}
		if ce.Code() != tc.code {
			t.Errorf("Look(%q): code %d (%v), want %d", tc.name, ce.Code(), err, tc.code)
		}
	}
}

// TestCodeOfExecErrors: the errors execve itself returns map as a shell maps them.
func TestCodeOfExecErrors(t *testing.T) {
	for err, want := range map[error]int{
		syscall.ENOENT: 127, syscall.EACCES: 126, syscall.ENOEXEC: 126, syscall.ETXTBSY: 126,
	} {
		if got := (&Error{Command: "x", Err: err}).Code(); got != want {
			t.Errorf("Code of %v = %d, want %d", err, got, want)
		}
	}
}

// TestLookIn: a relative path is the worker directory's, which narwhal does not enter itself,
// so it is left for the start in that directory; a bare name still goes through PATH.
func TestLookIn(t *testing.T) {
	if path, err := LookIn("./server", "/srv/current"); err != nil || path != "./server" {
		t.Errorf("LookIn(./server, dir) = %q, %v; want it unchanged", path, err)
	}
	if _, err := LookIn("./no-such-server", ""); err == nil {
		t.Error("LookIn(./no-such-server) without a dir found it")
	}
	if _, err := LookIn("no-such-command-anywhere", "/srv/current"); err == nil {
		t.Error("a bare name that is nowhere in PATH was found because a dir is set")
	}
}
