// Package output carries workers' stdout and stderr to narwhal's own, one whole labelled line
// at a time (NARWHAL_WORKER_OUTPUT=json or text). Every write to narwhal's stdout or stderr,
// its own log lines included, is a batch of whole lines written under that file's lock, so
// lines never interleave. A stream holds at most a fixed amount (one read of MaxLine plus
// the line being cut), so when narwhal's output blocks the workers block, as they would
// writing to it themselves.
package output

import (
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Dest is one of narwhal's own output files. Each Write is written whole, under a lock that
// every writer to the same file shares.
type Dest struct {
	mu *sync.Mutex
	w  io.Writer
}

// NewDest is w behind a lock of its own.
func NewDest(w io.Writer) *Dest { return &Dest{mu: new(sync.Mutex), w: w} }

func (d *Dest) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.w.Write(p)
}

var std = sync.OnceValues(func() (*Dest, *Dest) {
	out, err := NewDest(os.Stdout), NewDest(os.Stderr)
	var a, b unix.Stat_t
	if unix.Fstat(1, &a) == nil && unix.Fstat(2, &b) == nil && a.Dev == b.Dev && a.Ino == b.Ino {
		err.mu = out.mu // 2>&1, a terminal: one file, one lock
	}
	return out, err
})

// Std is narwhal's stdout and stderr, with one lock between them when both are the same file.
func Std() (stdout, stderr *Dest) { return std() }
