package output

import (
	"bytes"
	"errors"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// flushAt is how much a stream formats before it writes, so that one write carries many short
// lines and its buffer stays bounded.
const flushAt = MaxLine

// Worker is the output of one worker being followed.
type Worker struct{ streams [2]*stream }

// Follow reads a worker's stdout and stderr pipes, whose read ends must be non-blocking, until
// every writer has closed them, and writes their lines to out and err labelled with l:
// format is "json" or "text".
func Follow(format string, l Label, stdout, stderr *os.File, out, err io.Writer) *Worker {
	w := &Worker{}
	for i, name := range []string{"stdout", "stderr"} {
		f, dest := stdout, out
		if i == 1 {
			f, dest = stderr, err
		}
		s := &stream{
			f: f, dest: dest, enc: newEncoder(format == "json", l, name, time.Now),
			buf: make([]byte, 2*MaxLine), drained: make(chan struct{}), eof: make(chan struct{}),
		}
		w.streams[i] = s
		go s.run()
	}
	return w
}

// Drain is called once the worker has exited. It returns when every line the worker wrote has
// been written, its last unfinished line included, or false after timeout, when narwhal's own
// output stays blocked. Descendants still holding the pipes are followed on after it. Call it
// once.
func (w *Worker) Drain(timeout time.Duration) bool {
	for _, s := range w.streams {
		s.f.SetReadDeadline(time.Unix(1, 0)) // wakes the reader, which then drains without waiting
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	for _, s := range w.streams {
		select {
		case <-s.drained:
		case <-s.eof:
		case <-t.C:
			return false
		}
	}
	return true
}

// stream follows one pipe. Its goroutine owns every field but the channels.
type stream struct {
	f    *os.File
	dest io.Writer
	enc  *encoder
	buf  []byte // read and not yet written: at most the start of one line, MaxLine long
	n    int
	cont bool   // the next line is the rest of one already cut
	out  []byte // formatted, not yet written

	drained chan struct{} // closed when what was in the pipe at the worker's exit is written
	eof     chan struct{} // closed when every writer has closed the pipe and all is written
}

func (s *stream) run() {
	defer close(s.eof)
	defer s.f.Close()
	for {
		n, err := s.f.Read(s.buf[s.n:])
		s.n += n
		s.emit(false)
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded):
			s.drain()
		default: // io.EOF: the worker and all it started are gone
			s.emit(true)
			return
		}
	}
}

// drain writes what is in the pipe now, without waiting for more: the worker has exited, so
// everything it wrote is there.
func (s *stream) drain() {
	defer close(s.drained)
	s.f.SetReadDeadline(time.Time{})
	rc, err := s.f.SyscallConn()
	if err != nil {
		return
	}
	left := 0
	rc.Control(func(fd uintptr) {
		left, _ = unix.IoctlGetInt(int(fd), unix.TIOCINQ) // FIONREAD: the bytes in the pipe
	})
	for left > 0 {
		n := 0
		rc.Read(func(fd uintptr) bool {
			n, _ = unix.Read(int(fd), s.buf[s.n:])
			return true // never wait
		})
		if n <= 0 {
			break
		}
		left -= n
		s.n += n
		s.emit(false)
	}
	s.emit(true)
}

// emit writes the whole lines in buf, and the rest too when final. A line longer than MaxLine
// goes out in pieces as soon as MaxLine of it is here, so buf never holds more.
func (s *stream) emit(final bool) {
	s.enc.batch()
	data := s.buf[:s.n]
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 || i > MaxLine {
			if len(data) <= MaxLine {
				break
			}
			c := cut(data)
			s.out = s.enc.line(s.out, data[:c], true, true)
			s.cont, data = true, data[c:]
			continue
		}
		s.out = s.enc.line(s.out, data[:i], s.cont, false)
		s.cont, data = false, data[i+1:]
		if len(s.out) >= flushAt {
			s.flush()
		}
	}
	if final && len(data) > 0 {
		s.out = s.enc.line(s.out, data, s.cont, false)
		s.cont, data = false, nil
	}
	s.n = copy(s.buf, data)
	s.flush()
}

func (s *stream) flush() {
	if len(s.out) == 0 {
		return
	}
	s.dest.Write(s.out) // a failed write loses the lines, as the worker's own write would have
	s.out = s.out[:0]
	if cap(s.out) > 4*flushAt {
		s.out = nil // after a burst of escaped control bytes, give the memory back
	}
}
