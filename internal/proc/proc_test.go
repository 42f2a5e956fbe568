package proc

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestParsePPID(t *testing.T) {
	t.Parallel()
	good := []struct {
		stat string
		want int
	}{
		{"1234 (sh) S 1 1234 1234 0 -1 4194560 105 0 0 0\n", 1},
		{"1234 (a) b) S 77 1234 1234 0 -1", 77},
		{"42 (my prog) R 7 42 42 0", 7},
		{"42 ((sd-pam)) S 41 41 41 0", 41},
		{"5 (x) 9 (y) S 3 5 5", 3},
		{"5 (a\nb) S 4 5 5", 4},
		{"5 () Z 6 0 0", 6},
		{"9 (:-)) D 123456 9 9", 123456},
		{"1 (init) S 0 1 1 0 -1", 0},
		{"77 (node) S\t99\t77", 99},
	}
	for _, tc := range good {
		got, err := ParsePPID(tc.stat)
		if err != nil {
			t.Errorf("ParsePPID(%q): %v", tc.stat, err)
			continue
		}
		if got != tc.want {
			t.Errorf("ParsePPID(%q) = %d, want %d", tc.stat, got, tc.want)
		}
	}
	for _, stat := range []string{
		"",
		"1234 sh S 1 1234",   // no command name
		"1234 (sh)",          // nothing after it
		"1234 (sh) S",        // no parent field
		"1234 (sh) S x 1234", // parent not a number
		"1234 (sh S 1 1234",  // command name not closed
	} {
		if got, err := ParsePPID(stat); err == nil {
			t.Errorf("ParsePPID(%q) = %d, want an error", stat, got)
		}
	}
}

func TestParsePPIDOfThisProcess(t *testing.T) {
	t.Parallel()
	stat, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	got, err := ParsePPID(string(stat))
	if err != nil {
		t.Fatalf("ParsePPID(%q): %v", stat, err)
	}
	if want := os.Getppid(); got != want {
		t.Errorf("ParsePPID(/proc/self/stat) = %d, want os.Getppid() = %d", got, want)
	}
}

// writeProc builds a fixture /proc holding a stat file per pid and returns its root.
func writeProc(t *testing.T, stats map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for pid, stat := range stats {
		dir := filepath.Join(root, pid)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if stat == "" {
			continue // a process that exited between the listing and the read
		}
		if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestDescendants(t *testing.T) {
	root := writeProc(t, map[string]string{
		"1":   "1 (narwhal) S 0 1 1",
		"10":  "10 (app) S 1 10 10",
		"11":  "11 (sh -c (x)) S 1 11 11",
		"12":  "12 (worker) S 10 10 10",
		"13":  "13 (grand child) S 12 10 10",
		"20":  "20 (other) S 2 20 20",
		"21":  "21 (other child) S 20 20 20",
		"30":  "",
		"31":  "garbage",
		"net": "not a process",
	})
	cases := []struct {
		root int
		want []int
	}{
		{1, []int{10, 11, 12, 13}},
		{10, []int{12, 13}},
		{20, []int{21}},
		{13, nil},
		{999, nil},
	}
	for _, tc := range cases {
		got, err := Descendants(root, tc.root)
		if err != nil {
			t.Fatalf("Descendants(%d): %v", tc.root, err)
		}
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("Descendants(%d) = %v, want %v", tc.root, got, tc.want)
		}
	}
}

// TestDescendantsCycle: a PID reused while /proc is read can make a cycle of parents; the walk
// must still end, listing each process once.
func TestDescendantsCycle(t *testing.T) {
	root := writeProc(t, map[string]string{
		"5": "5 (a) S 6 5 5",
		"6": "6 (b) S 5 6 6",
		"7": "7 (c) S 6 7 7",
	})
	done := make(chan []int, 1)
	go func() { got, _ := Descendants(root, 5); done <- got }()
	select {
	case got := <-done:
		slices.Sort(got)
		if !slices.Equal(got, []int{6, 7}) {
			t.Errorf("Descendants(5) = %v, want [6 7]", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Descendants loops on a cycle of parents")
	}
}

func TestDescendantsWithoutProc(t *testing.T) {
	if got, err := Descendants(filepath.Join(t.TempDir(), "missing"), 1); err == nil {
		t.Errorf("descendants(1) with no /proc = %v, want an error", got)
	}
}

func TestParseStat(t *testing.T) {
	// A real line, with a command name holding a space and a parenthesis.
	const line = "4242 (my app) x) S 1 4242 4242 0 -1 4194560 2214 0 0 0 151 37 0 0 20 0 9 0 1234567 1262718976 6718 18446744073709551615 1 1 0 0 0 0 0 0 2143420159 0 0 0 17 1 0 0 0 0 0"
	s, err := ParseStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if s.PPID != 1 || s.UTime != 151 || s.STime != 37 || s.RSSPages != 6718 {
		t.Errorf("ParseStat = %+v, want ppid 1, utime 151, stime 37, rss 6718", s)
	}
	for _, bad := range []string{"", "1 (x) S 1 2 3", "1 no parens", "1 (x) S y 1 1 0 -1 0 0 0 0 0 a b 0 0 0 0 0 0 0 0 c"} {
		if _, err := ParseStat(bad); err == nil {
			t.Errorf("ParseStat(%q) did not fail", bad)
		}
	}
}

func TestTreeUsageOfThisProcess(t *testing.T) {
	u := TreeUsage("/proc", os.Getpid())
	if u.RSSBytes < 1<<20 || u.RSSBytes > 1<<34 {
		t.Errorf("RSS of the test binary = %d bytes, not plausible", u.RSSBytes)
	}
	if u.CPUSeconds < 0 {
		t.Errorf("CPU = %f", u.CPUSeconds)
	}
}
