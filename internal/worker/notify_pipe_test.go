package worker

import (
	"os"
	"strings"
	"testing"
	"time"
)

// pipeWorker is the sender ReadPipe is told the pipe belongs to.
const pipeWorker = 42

// startPipe runs the real pipe reader on a fresh os.Pipe and returns its write end, its events
// and a channel closed once the reader has returned.
func startPipe(t *testing.T) (*os.File, <-chan any, <-chan struct{}) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	// Buffered, so that the reader never waits on a test that is still writing.
	out := make(chan any, 16)
	done := make(chan struct{})
	go func() { ReadPipe(r, pipeWorker, make(chan struct{}), out); close(done) }()
	t.Cleanup(func() {
		w.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("ReadPipe still running 5s after the write end was closed")
		}
	})
	return w, out, done
}

func nextPipeEvent(t *testing.T, out <-chan any, waitingFor string) Message {
	t.Helper()
	select {
	case ev := <-out:
		n, ok := ev.(Message)
		if !ok {
			t.Fatalf("ReadPipe sent %T, want a Message", ev)
		}
		if n.Sender != pipeWorker || !n.FromPipe {
			t.Fatalf("ReadPipe sent %+v, want sender %d from the pipe", n, pipeWorker)
		}
		return n
	case <-time.After(5 * time.Second):
		t.Fatalf("no %s from the notify pipe within 5s", waitingFor)
	}
	return Message{}
}

// TestReadPipeDropsOverlongLine: one line over MaxNotify is reported as too long and dropped, and
// the pipe stays open, so the worker's later READY=1 and WATCHDOG=1 arrive and its writes never
// meet EPIPE (which kills a shell worker with SIGPIPE at every restart).
func TestReadPipeDropsOverlongLine(t *testing.T) {
	t.Parallel()
	w, out, _ := startPipe(t)
	// Far beyond the pipe's buffer, so the reader must discard as it goes.
	long := "STATUS=" + strings.Repeat("x", 1<<20) + "\n"
	wrote := make(chan error, 1)
	go func() {
		_, err := w.WriteString(long + "READY=1\n")
		wrote <- err
	}()

	bad := nextPipeEvent(t, out, "report of the over-long line")
	if len(bad.Text) > MaxNotify+1 {
		t.Errorf("ReadPipe passed on %d bytes of the over-long line, want at most %d", len(bad.Text), MaxNotify+1)
	}
	if _, err := ParseNotify(bad.Text); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Errorf("the over-long line parses with error %v, want one saying it is too long", err)
	}

	if n, err := ParseNotify(nextPipeEvent(t, out, "READY=1 after the over-long line").Text); err != nil || !n.Ready {
		t.Errorf("line after the over-long one parses to %+v, %v; want READY", n, err)
	}
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatalf("writing the over-long line and READY=1: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("writing to the notify pipe still blocked after 5s")
	}

	if _, err := w.WriteString("WATCHDOG=1\n"); err != nil {
		t.Fatalf("writing WATCHDOG=1 after the over-long line: %v", err)
	}
	if n, err := ParseNotify(nextPipeEvent(t, out, "WATCHDOG=1").Text); err != nil || !n.Watchdog {
		t.Errorf("WATCHDOG=1 parses to %+v, %v; want a watchdog ping", n, err)
	}
}

// TestReadPipeLines: the bounds of a line, and the end of the pipe.
func TestReadPipeLines(t *testing.T) {
	t.Parallel()
	w, out, done := startPipe(t)
	longest := "STATUS=" + strings.Repeat("y", MaxNotify-len("STATUS="))
	in := longest + "\n" + longest + "z\nSTATUS=crlf\r\nREADY=1"
	go func() {
		w.WriteString(in)
		w.Close() // the worker exits: the unterminated last line still counts
	}()
	if ev := nextPipeEvent(t, out, "line of MaxNotify bytes"); ev.Text != longest {
		t.Errorf("line of MaxNotify bytes came as %d bytes %q", len(ev.Text), clip(ev.Text))
	}
	if _, err := ParseNotify(nextPipeEvent(t, out, "line of MaxNotify+1 bytes").Text); err == nil {
		t.Error("line of MaxNotify+1 bytes accepted")
	}
	for _, want := range []string{"STATUS=crlf", "READY=1"} {
		if ev := nextPipeEvent(t, out, "line "+want); ev.Text != want {
			t.Errorf("line %q came as %q", want, ev.Text)
		}
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("ReadPipe still running 5s after the write end was closed")
	}
	select {
	case ev := <-out:
		t.Errorf("ReadPipe sent %+v after the last line", ev)
	default:
	}
}
