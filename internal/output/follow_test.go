package output

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var clock = func() time.Time { return time.Date(2026, 11, 22, 3, 4, 5, 6e6, time.UTC) }

// feed runs chunks through one stream's line splitting, as reads of any size would bring them,
// and returns what it wrote.
func feed(format string, chunks ...string) string {
	var out bytes.Buffer
	s := &stream{dest: &out, enc: newEncoder(format == "json", Label{1, 3, 41}, "stderr", clock), buf: make([]byte, 2*MaxLine)}
	for _, c := range chunks {
		for len(c) > 0 {
			n := copy(s.buf[s.n:], c)
			s.n += n
			c = c[n:]
			s.emit(false)
		}
	}
	s.emit(true)
	return out.String()
}

func TestLines(t *testing.T) {
	for _, tc := range []struct {
		format string
		in     []string
		want   string
	}{
		{"text", []string{"a\nb", "c\n", "\n", "last"}, "slot=1 gen=3 pid=41 | a\nslot=1 gen=3 pid=41 | bc\nslot=1 gen=3 pid=41 | \nslot=1 gen=3 pid=41 | last\n"},
		{"json", []string{`{"level":"info","msg":"x","z":1}` + "\n"},
			`{"level":"info","msg":"x","z":1,"worker":{"slot":1,"generation":3,"pid":41}}` + "\n"},
		{"json", []string{" {  }\r\n"}, `{"worker":{"slot":1,"generation":3,"pid":41}}` + "\n"},
		{"json", []string{`Traceback "x"` + "\tat\n"},
			`{"time":"2026-11-22T03:04:05.006Z","worker":{"slot":1,"generation":3,"pid":41},"stream":"stderr","msg":"Traceback \"x\"\tat"}` + "\n"},
		{"json", []string{`{"a":1` + "\n"},
			`{"time":"2026-11-22T03:04:05.006Z","worker":{"slot":1,"generation":3,"pid":41},"stream":"stderr","msg":"{\"a\":1"}` + "\n"},
	} {
		if got := feed(tc.format, tc.in...); got != tc.want {
			t.Errorf("%s %q:\n got %s\nwant %s", tc.format, tc.in, got, tc.want)
		}
	}
}

// TestTemplateLabel: a template's lines are labelled without a slot.
func TestTemplateLabel(t *testing.T) {
	for format, want := range map[string]string{
		"text": "template gen=3 pid=9 | loading\n",
		"json": `{"time":"2026-11-22T03:04:05.006Z","worker":{"template":true,"generation":3,"pid":9},"stream":"stdout","msg":"loading"}` + "\n",
	} {
		var out bytes.Buffer
		s := &stream{dest: &out, enc: newEncoder(format == "json", Label{Template, 3, 9}, "stdout", clock), buf: make([]byte, 2*MaxLine)}
		s.n = copy(s.buf, "loading\n")
		s.emit(true)
		if out.String() != want {
			t.Errorf("%s: got %q, want %q", format, out.String(), want)
		}
	}
}

// TestLongLines: a line over MaxLine goes out in pieces of MaxLine, all but the last partial,
// never cutting a UTF-8 character; a line of exactly MaxLine stays whole.
func TestLongLines(t *testing.T) {
	whole := strings.Repeat("x", MaxLine)
	long := strings.Repeat("y", MaxLine-1) + "é" + strings.Repeat("z", 100<<10-MaxLine-1)
	in := whole + "\n" + long + "\n" + `{"a":"` + strings.Repeat("j", MaxLine) + `"}` + "\n"
	got := strings.Split(strings.TrimSuffix(feed("json", in[:1000], in[1000:]), "\n"), "\n")
	type line struct {
		Msg     string
		Partial bool
		Worker  map[string]int
	}
	var lines []line
	for _, g := range got {
		var l line
		if err := json.Unmarshal([]byte(g), &l); err != nil {
			t.Fatalf("%.80s…: %v", g, err)
		}
		lines = append(lines, l)
	}
	want := []line{
		{Msg: whole},
		{Msg: strings.Repeat("y", MaxLine-1), Partial: true},
		{Msg: "é" + strings.Repeat("z", 100<<10-MaxLine-1)},
		{Msg: `{"a":"` + strings.Repeat("j", MaxLine-6), Partial: true},
		{Msg: "jjjjjj" + `"}`},
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d", len(lines), len(want))
	}
	for i := range want {
		if lines[i].Msg != want[i].Msg || lines[i].Partial != want[i].Partial || lines[i].Worker["pid"] != 41 {
			t.Errorf("line %d: %d bytes partial %v, want %d bytes partial %v", i, len(lines[i].Msg), lines[i].Partial, len(want[i].Msg), want[i].Partial)
		}
	}
	if text := feed("text", long+"\n"); strings.Count(text, "\n") != 2 {
		t.Errorf("text: the 100 KiB line came out as %d lines, want 2", strings.Count(text, "\n"))
	}
}

// TestDrain: once the writer has exited, Drain returns with all it wrote out, the unfinished
// last line too, while a descendant still holds the pipe open.
func TestDrain(t *testing.T) {
	r, w := pipe(t)
	defer w.Close() // the descendant's copy: the pipe reaches no EOF before the test says
	quiet, qw := pipe(t)
	defer qw.Close()
	// Drain returning, and the end of the pipe, order the stream's writes before the reads here.
	var out, errs bytes.Buffer
	f := Follow("text", Label{0, 1, 7}, r, quiet, &out, &errs)
	w.Write([]byte("one\ntwo\nthe end, unfinished"))
	if !f.Drain(5 * time.Second) {
		t.Fatal("Drain timed out")
	}
	want := "slot=0 gen=1 pid=7 | one\nslot=0 gen=1 pid=7 | two\nslot=0 gen=1 pid=7 | the end, unfinished\n"
	if got := out.String(); got != want {
		t.Errorf("after Drain:\n%s\nwant\n%s", got, want)
	}
	w.Write([]byte("from a descendant\n"))
	w.Close()
	select {
	case <-f.streams[0].eof:
	case <-time.After(5 * time.Second):
		t.Fatal("the stream did not end within 5s of its pipe's last writer closing")
	}
	if got := out.String(); !strings.HasSuffix(got, "pid=7 | from a descendant\n") {
		t.Errorf("after Drain, a descendant's line was not followed: %q", got)
	}
}

func pipe(t *testing.T) (r, w *os.File) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	return os.NewFile(uintptr(p[0]), "r"), os.NewFile(uintptr(p[1]), "w")
}

// BenchmarkEmit is the formatting cost per line, without the pipes' system calls.
func BenchmarkEmit(b *testing.B) {
	for _, bc := range []struct{ name, format, line string }{
		{"json-text-100", "json", strings.Repeat("x", 99)},
		{"json-object-100", "json", `{"level":"info","msg":"` + strings.Repeat("x", 68) + `"}`},
		{"text-100", "text", strings.Repeat("x", 99)},
		{"json-text-8k", "json", strings.Repeat("x", 8<<10-1)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			chunk := []byte(strings.Repeat(bc.line+"\n", max(1, 64<<10/(len(bc.line)+1))))
			lines := bytes.Count(chunk, []byte("\n"))
			s := &stream{dest: io.Discard, enc: newEncoder(bc.format == "json", Label{1, 3, 41}, "stdout", time.Now), buf: make([]byte, 2*MaxLine)}
			b.SetBytes(int64(len(chunk)))
			b.ReportAllocs()
			for b.Loop() {
				s.n = copy(s.buf, chunk)
				s.emit(false)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*lines), "ns/line")
		})
	}
}
