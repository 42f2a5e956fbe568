package worker

import (
	"strings"
	"testing"
)

func TestParseNotify(t *testing.T) {
	t.Parallel()
	good := []struct {
		name string
		msg  string
		want Notify
	}{
		{"ready", "READY=1", Notify{Ready: true}},
		{"ready with newline", "READY=1\n", Notify{Ready: true}},
		{"multi-line", "READY=1\nSTATUS=serving\n", Notify{Ready: true, Status: "serving", HasStatus: true}},
		{"status first", "STATUS=warming up\nREADY=1", Notify{Ready: true, Status: "warming up", HasStatus: true}},
		{"watchdog", "WATCHDOG=1\n", Notify{Watchdog: true}},
		{"watchdog trigger", "WATCHDOG=trigger\n", Notify{WatchdogTrigger: true}},
		{"watchdog other value", "WATCHDOG=0\n", Notify{}},
		{"stopping", "STOPPING=1\n", Notify{Stopping: true}},
		{"stopping other value", "STOPPING=yes\n", Notify{}},
		{"empty status", "STATUS=\n", Notify{HasStatus: true}},
		{"status holding '='", "STATUS=a=b\n", Notify{Status: "a=b", HasStatus: true}},
		{"status keeps spaces", "STATUS= 3 requests \n", Notify{Status: " 3 requests ", HasStatus: true}},
		{"last status wins", "STATUS=one\nSTATUS=two\n", Notify{Status: "two", HasStatus: true}},
		{"unknown keys ignored", "MAINPID=42\nERRNO=2\nX_NARWHAL=whatever\n", Notify{}},
		{"unknown key beside ready", "MAINPID=42\nREADY=1\n", Notify{Ready: true}},
		{"ready 0", "READY=0\n", Notify{}},
		{"ready 1 then 0 stays ready", "READY=1\nREADY=0\n", Notify{Ready: true}},
		{"ready with trailing space", "READY=1 \n", Notify{}},
		{"lower-case key is another key", "ready=1\n", Notify{}},
		{"all at once", "READY=1\nSTOPPING=1\nWATCHDOG=1\nWATCHDOG=trigger\nSTATUS=bye\n",
			Notify{Ready: true, Stopping: true, Watchdog: true, WatchdogTrigger: true, Status: "bye", HasStatus: true}},
		{"blank lines", "\n\nREADY=1\n\n", Notify{Ready: true}},
		{"empty message", "", Notify{}},
		{"exactly MaxNotify", "STATUS=" + strings.Repeat("x", MaxNotify-len("STATUS=")),
			Notify{Status: strings.Repeat("x", MaxNotify-len("STATUS=")), HasStatus: true}},
	}
	for _, tc := range good {
		got, err := ParseNotify(tc.msg)
		if err != nil {
			t.Errorf("%s: ParseNotify(%q): %v", tc.name, clip(tc.msg), err)
			continue
		}
		if got != tc.want {
			t.Errorf("%s: ParseNotify(%q) = %+v, want %+v", tc.name, clip(tc.msg), got, tc.want)
		}
	}

	bad := []struct {
		name string
		msg  string
	}{
		{"line without '='", "READY\n"},
		{"second line without '='", "READY=1\ngarbage\n"},
		{"empty key", "=1\n"},
		{"leading space in key", " READY=1\n"},
		{"trailing space in key", "READY =1\n"},
		{"tab in key", "READY\t=1\n"},
		{"NUL byte", "READY=1\x00\n"},
		{"NUL byte in status", "STATUS=a\x00b\n"},
		{"lone NUL", "\x00"},
		{"one byte over MaxNotify", "STATUS=" + strings.Repeat("x", MaxNotify+1-len("STATUS="))},
		{"far over MaxNotify", strings.Repeat("READY=1\n", MaxNotify)},
	}
	for _, tc := range bad {
		if got, err := ParseNotify(tc.msg); err == nil {
			t.Errorf("%s: ParseNotify(%q) = %+v, want an error", tc.name, clip(tc.msg), got)
		}
	}
}

// TestParseNotifyErrorDropsFields: a message with one bad line is reported, not half-read.
func TestParseNotifyErrorDropsFields(t *testing.T) {
	t.Parallel()
	got, err := ParseNotify("READY=1\nSTATUS=up\nnonsense\n")
	if err == nil {
		t.Fatal("ParseNotify with a bad third line: no error")
	}
	if got != (Notify{}) {
		t.Errorf("ParseNotify with a bad third line = %+v, want the zero Notify", got)
	}
}

// encodeNotify writes n back as the KEY=VALUE lines that ParseNotify reads. No trailing newline,
// so that a message of MaxNotify bytes never encodes longer than it was.
func encodeNotify(n Notify) string {
	var lines []string
	if n.Ready {
		lines = append(lines, "READY=1")
	}
	if n.Stopping {
		lines = append(lines, "STOPPING=1")
	}
	if n.Watchdog {
		lines = append(lines, "WATCHDOG=1")
	}
	if n.WatchdogTrigger {
		lines = append(lines, "WATCHDOG=trigger")
	}
	if n.HasStatus {
		lines = append(lines, "STATUS="+n.Status)
	}
	return strings.Join(lines, "\n")
}

func FuzzParseNotify(f *testing.F) {
	for _, s := range []string{
		"READY=1",
		"READY=1\nSTATUS=serving\n",
		"WATCHDOG=1\n",
		"WATCHDOG=trigger\n",
		"STOPPING=1\n",
		"STATUS=\n",
		"MAINPID=42\nREADY=0\n",
		"=1\n",
		" READY=1\n",
		"READY\n",
		"READY=1\x00",
		"\n\n",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		n, err := ParseNotify(msg)
		if strings.Contains(msg, "\x00") && err == nil {
			t.Fatalf("ParseNotify(%q) accepted a NUL byte: %+v", msg, n)
		}
		if len(msg) > MaxNotify && err == nil {
			t.Fatalf("ParseNotify of %d bytes accepted, more than MaxNotify", len(msg))
		}
		if err != nil {
			if n != (Notify{}) {
				t.Fatalf("ParseNotify(%q) failed (%v) but returned %+v", msg, err, n)
			}
			return
		}
		for _, line := range strings.Split(msg, "\n") {
			if line != "" && !strings.Contains(line, "=") {
				t.Fatalf("ParseNotify(%q) accepted line %q without '='", msg, line)
			}
		}
		if n.Status != "" && !n.HasStatus {
			t.Fatalf("ParseNotify(%q) = %+v: a status without HasStatus", msg, n)
		}
		enc := encodeNotify(n)
		again, err := ParseNotify(enc)
		if err != nil {
			t.Fatalf("ParseNotify(%q) = %+v, re-encoded as %q: %v", msg, n, enc, err)
		}
		if again != n {
			t.Fatalf("ParseNotify(%q) = %+v, re-encoded as %q parses to %+v", msg, n, enc, again)
		}
	})
}
