//go:build e2e

package supervisor_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/narwhal-init/narwhal/internal/e2e"
	"github.com/narwhal-init/narwhal/internal/output"
	"github.com/narwhal-init/narwhal/internal/proc"
)

// outputPool starts narwhal with n chatter workers and NARWHAL_WORKER_OUTPUT=mode.
func outputPool(t *testing.T, o e2e.Options, mode string, n int, args ...string) *e2e.Proc {
	t.Helper()
	o.Env = append([]string{"NARWHAL_WORKERS=" + strconv.Itoa(n), "NARWHAL_METRICS_ADDR=off",
		"NARWHAL_READY=notify", "NARWHAL_WORKER_OUTPUT=" + mode}, o.Env...)
	return e2e.Start(t, o, e2e.Chatter(t, args...)...)
}

// stopWhenDone waits for every worker's "chatter done", stops narwhal and waits for its exit,
// after which every line is out.
func stopWhenDone(t *testing.T, p *e2e.Proc, n int) {
	t.Helper()
	if !e2e.Eventually(timeout, func() bool { return e2e.Count(p.Stderr(), "chatter done") >= n }) {
		t.Fatalf("%d of %d workers done writing within %s", e2e.Count(p.Stderr(), "chatter done"), n, timeout)
	}
	p.Signal(syscall.SIGTERM)
	if code := p.Wait(timeout); code != 0 {
		t.Fatalf("narwhal exited %d after SIGTERM, want 0", code)
	}
}

// chatterLine checks one of chatter's lines as the worker in slot wrote it: its seq, and its
// padding whole (one letter, 'a'+seq%26, to the line's size).
func chatterLine(slot string, seq int, pad string, size int, head string) error {
	if len(head)+len(pad)+1 != size {
		return fmt.Errorf("slot %s seq %d: %d bytes, want %d", slot, seq, len(head)+len(pad)+1, size)
	}
	if strings.Count(pad, string(rune('a'+seq%26))) != len(pad) {
		return fmt.Errorf("slot %s seq %d: torn padding", slot, seq)
	}
	return nil
}

// TestWorkerOutputWholeLines: four workers write 2,000 lines of 8 KiB each (far over PIPE_BUF,
// so written straight to one pipe they would tear) and one of 100 KiB. Every line comes out
// whole and labelled, in each worker's order; JSON objects keep their fields in order; the
// 100 KiB line comes out as two pieces that join back into it.
func TestWorkerOutputWholeLines(t *testing.T) {
	e2e.Require(t)
	const n, lines, size, long = 4, 2000, 8 << 10, 100 << 10
	for _, mode := range []string{"json", "text"} {
		t.Run(mode, func(t *testing.T) {
			args := []string{"-lines", strconv.Itoa(lines), "-size", strconv.Itoa(size), "-long", strconv.Itoa(long)}
			if mode == "json" {
				args = append(args, "-json")
			}
			p := outputPool(t, e2e.Options{}, mode, n, args...)
			stopWhenDone(t, p, n)
			t.Logf("written in %s", time.Since(p.Started).Round(time.Millisecond))
			check := checkText
			if mode == "json" {
				check = checkJSON
			}
			seen, err := check(strings.NewReader(p.Stdout()), size, long)
			if err != nil {
				t.Fatal(err)
			}
			if len(seen) != n {
				t.Fatalf("lines from %d workers, want %d", len(seen), n)
			}
			for pid, next := range seen {
				if next != lines+2 {
					t.Errorf("worker %d: %d lines out, want %d and the long line's 2 pieces", pid, next, lines)
				}
			}
		})
	}
}

// checkJSON reads narwhal's stdout in json mode and returns, per worker PID, how many of its
// lines came out (the long line's pieces counted each).
func checkJSON(r io.Reader, size, long int) (map[int]int, error) {
	seen := map[int]int{}
	pieces := map[int][]string{} // of the long line, by PID
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		b := sc.Bytes()
		if h, w := jsonChatter.FindSubmatch(b[:min(len(b), 60)]), jsonWorker.FindSubmatch(b[max(0, len(b)-80):]); h != nil && w != nil {
			// One of chatter's lines: it must be exactly the worker's, then narwhal's field.
			pid, _ := strconv.Atoi(string(w[2]))
			seq, _ := strconv.Atoi(string(h[2]))
			pad := size - len(h[0]) - len(`"}`+"\n")
			want := fmt.Sprintf(`%s%s","worker":{"slot":%s,"generation":1,"pid":%d}}`, h[0],
				strings.Repeat(string(rune('a'+seq%26)), pad), h[1], pid)
			if string(w[1]) != string(h[1]) || seq != seen[pid] || string(b) != want {
				return nil, fmt.Errorf("line %d of worker %d, want it whole, with the worker's fields first:\n%.200s…", seen[pid], pid, b)
			}
			seen[pid]++
			continue
		}
		keys, err := topKeys(b)
		if err != nil {
			return nil, fmt.Errorf("not one JSON object (%v): %.200s", err, b)
		}
		var l struct {
			Msg     *string
			Partial bool
			Worker  struct{ Slot, Generation, PID int }
		}
		if err := json.Unmarshal(b, &l); err != nil || l.Msg == nil {
			return nil, fmt.Errorf("neither a line of chatter's nor a piece of one (%v): %.200s", err, b)
		}
		pid := l.Worker.PID
		if got := strings.Join(keys, ","); got != "time,worker,stream,msg"+map[bool]string{true: ",partial"}[l.Partial] {
			return nil, fmt.Errorf("a piece's fields are %s", got)
		}
		pieces[pid] = append(pieces[pid], *l.Msg)
		if l.Partial {
			continue
		}
		joined, seq := strings.Join(pieces[pid], ""), seen[pid]
		if got, want := len(pieces[pid]), (long-1+output.MaxLine-1)/output.MaxLine; got != want {
			return nil, fmt.Errorf("worker %d: the long line came out as %d pieces, want %d", pid, got, want)
		}
		head := fmt.Sprintf("slot=%d seq=%06d ", l.Worker.Slot, seq)
		if err := chatterLine(strconv.Itoa(l.Worker.Slot), seq, strings.TrimPrefix(joined, head), long, head); err != nil {
			return nil, fmt.Errorf("the long line, joined from its pieces: %v", err)
		}
		seen[pid] += len(pieces[pid])
		delete(pieces, pid)
	}
	for pid := range pieces {
		return nil, fmt.Errorf("worker %d: the long line's last piece is missing", pid)
	}
	return seen, sc.Err()
}

// topKeys is the keys of the JSON object b, in order, and an error unless b is exactly one.
func topKeys(b []byte) ([]string, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	if tok, err := d.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("not an object")
	}
	var keys []string
	for d.More() {
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := d.Decode(&skip); err != nil {
			return nil, err
		}
	}
	if _, err := d.Token(); err != nil {
		return nil, err
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, fmt.Errorf("more after the object")
	}
	return keys, nil
}

var (
	jsonChatter = regexp.MustCompile(`^\{"z":"(\d+)","a":(\d+),"m":"`)
	jsonWorker  = regexp.MustCompile(`","worker":\{"slot":(\d+),"generation":1,"pid":(\d+)\}\}$`)
)

var textLabel = regexp.MustCompile(`^slot=(\d+) gen=1 pid=(\d+) \| `)

// checkText is checkJSON for text mode.
func checkText(r io.Reader, size, long int) (map[int]int, error) {
	seen := map[int]int{}
	cut := map[int]string{} // the first piece of a long line, by PID
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		text := sc.Text()
		m := textLabel.FindStringSubmatch(text[:min(len(text), 60)])
		if m == nil {
			return nil, fmt.Errorf("not a labelled line: %.200s", text)
		}
		slot, body := m[1], text[len(m[0]):]
		pid, _ := strconv.Atoi(m[2])
		seq, wantSize := seen[pid], size
		if first, ok := cut[pid]; ok {
			body, wantSize, seq = first+body, long, seq-1
			delete(cut, pid)
		} else if len(body) == output.MaxLine {
			cut[pid] = body
			seen[pid]++
			continue
		}
		head := fmt.Sprintf("slot=%s seq=%06d ", slot, seq)
		if !strings.HasPrefix(body, head) {
			return nil, fmt.Errorf("line %d of worker %d: %.60s", seen[pid], pid, body)
		}
		if err := chatterLine(slot, seq, body[len(head):], wantSize, head); err != nil {
			return nil, err
		}
		seen[pid]++
	}
	return seen, sc.Err()
}

// TestWorkerOutputCrash: a crashing worker's last line, unfinished and with a child of the
// worker still holding its stderr open, is written before narwhal logs the worker's exit.
func TestWorkerOutputCrash(t *testing.T) {
	e2e.Require(t)
	for _, mode := range []string{"json", "text"} {
		t.Run(mode, func(t *testing.T) {
			p := outputPool(t, e2e.Options{}, mode, 1,
				"-lines", "10", "-crash", "3", "-orphan")
			exit := p.WaitStderr(`"event":"exit"`, timeout)
			if exit == "" {
				t.Fatal("no exit logged")
			}
			stderr := p.Stderr()
			last, at := "last words of slot 0", strings.Index(stderr, `"event":"exit"`)
			if i := strings.Index(stderr, last); i < 0 || i > at {
				t.Fatalf("the worker's last line %q is not before its exit in narwhal's stderr:\n%s", last, stderr)
			}
			if !strings.Contains(exit, `"code":3`) {
				t.Errorf("exit line: %s", exit)
			}
		})
	}
}

// TestWorkerOutputBlocked: while nobody reads narwhal's stdout, workers writing 20 MiB each
// block in write(2), as they would writing to it themselves, and narwhal's memory stays small;
// once it is read, every line comes out whole.
func TestWorkerOutputBlocked(t *testing.T) {
	e2e.Require(t)
	const n, lines, size = 4, 20 << 10, 1 << 10
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	p := outputPool(t, e2e.Options{Stdout: w, Bin: e2e.PlainBinary(t)}, "json", n,
		"-lines", strconv.Itoa(lines), "-size", strconv.Itoa(size), "-json")
	w.Close()

	var blocked []int
	ok := e2e.Eventually(timeout, func() bool {
		blocked = blockedWriters(p.PID)
		return len(blocked) == n
	})
	if !ok {
		t.Fatalf("%d of %d workers blocked writing, within %s", len(blocked), n, timeout)
	}
	snap := proc.Host.Snapshot()
	st, _ := snap.Stat(p.PID)
	rss := st.RSSPages * int64(os.Getpagesize())
	t.Logf("all %d workers blocked in write(2); narwhal's RSS %.1f MiB", n, float64(rss)/(1<<20))
	if rss > 32<<20 {
		t.Errorf("narwhal's RSS is %.1f MiB with its stdout blocked, want under 32 MiB", float64(rss)/(1<<20))
	}
	if c := e2e.Count(p.Stderr(), "chatter done"); c > 0 {
		t.Errorf("%d workers finished writing %d MiB each though nobody read narwhal's stdout", c, lines*size>>20)
	}

	type result struct {
		seen map[int]int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		seen, err := checkJSON(r, size, 0)
		done <- result{seen, err}
	}()
	stopWhenDone(t, p, n)
	select {
	case res := <-done:
		if res.err != nil {
			t.Fatal(res.err)
		}
		for pid, got := range res.seen {
			if got != lines {
				t.Errorf("worker %d: %d lines, want %d", pid, got, lines)
			}
		}
		if len(res.seen) != n {
			t.Errorf("lines from %d workers, want %d", len(res.seen), n)
		}
	case <-time.After(timeout):
		t.Fatal("narwhal's stdout not closed after its exit")
	}
}

// blockedWriters is the children of pid with a thread asleep in write(2) to its stdout or
// stderr. Every thread is looked at: a Go worker writes from whichever thread runs the
// goroutine, and /proc/PID/syscall shows only the thread-group leader's.
func blockedWriters(pid int) []int {
	var out []int
	for _, c := range proc.Host.Snapshot().Children(pid) {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/syscall", c))
		for _, task := range tasks {
			// "1 0x1 …": write(2) to fd 1; a running thread shows "running" instead.
			sc, _ := os.ReadFile(task)
			f := strings.Fields(string(sc))
			if len(f) > 1 && f[0] == strconv.Itoa(int(syscall.SYS_WRITE)) && (f[1] == "0x1" || f[1] == "0x2") {
				out = append(out, c)
				break
			}
		}
	}
	return out
}
