package proc

import (
	"fmt"
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

// writeProc builds a fixture root whose /proc holds a stat file per pid and returns the root.
func writeProc(t *testing.T, stats map[string]string) FS {
	t.Helper()
	root := t.TempDir()
	for pid, stat := range stats {
		dir := filepath.Join(root, "proc", pid)
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
	return New(root)
}

// statLine is a /proc/PID/stat line of a sleeping process with the given figures.
func statLine(pid int, comm string, ppid, pgrp int, utime, stime uint64, rss int64) string {
	return fmt.Sprintf("%d (%s) S %d %d %d 0 -1 4194560 105 0 0 0 %d %d 0 0 20 0 1 0 1234 12345678 %d 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n",
		pid, comm, ppid, pgrp, pgrp, utime, stime, rss)
}

func TestSnapshotTree(t *testing.T) {
	fs := writeProc(t, map[string]string{
		"1":   statLine(1, "narwhal", 0, 1, 0, 0, 0),
		"10":  statLine(10, "app", 1, 10, 0, 0, 0),
		"11":  statLine(11, "sh -c (x)", 1, 11, 0, 0, 0),
		"12":  statLine(12, "worker", 10, 10, 0, 0, 0),
		"13":  statLine(13, "grand child", 12, 10, 0, 0, 0),
		"20":  statLine(20, "other", 2, 20, 0, 0, 0),
		"21":  statLine(21, "other child", 20, 20, 0, 0, 0),
		"30":  "",
		"31":  "garbage",
		"net": "not a process",
	})
	snap := fs.Snapshot()
	if snap.Len() != 7 {
		t.Errorf("Snapshot saw %d processes, want 7", snap.Len())
	}
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
		got := snap.Descendants(tc.root)
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("Descendants(%d) = %v, want %v", tc.root, got, tc.want)
		}
		tree := snap.Tree(tc.root)
		if tc.root == 999 {
			if tree != nil {
				t.Errorf("Tree of an unseen pid = %v, want nil", tree)
			}
			continue
		}
		if len(tree) == 0 || tree[0] != tc.root || len(tree) != len(tc.want)+1 {
			t.Errorf("Tree(%d) = %v, want %d first, then %v", tc.root, tree, tc.root, tc.want)
		}
	}
	if !snap.HasGroup(10) || snap.HasGroup(12) {
		t.Errorf("HasGroup(10), HasGroup(12) = %v, %v; want true, false", snap.HasGroup(10), snap.HasGroup(12))
	}
}

// TestSnapshotCycle: a PID reused while /proc is read can make a cycle of parents; the walk
// must still end, listing each process once.
func TestSnapshotCycle(t *testing.T) {
	fs := writeProc(t, map[string]string{
		"5": statLine(5, "a", 6, 5, 0, 0, 0),
		"6": statLine(6, "b", 5, 6, 0, 0, 0),
		"7": statLine(7, "c", 6, 7, 0, 0, 0),
	})
	done := make(chan []int, 1)
	go func() { done <- fs.Snapshot().Descendants(5) }()
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

func TestSnapshotWithoutProc(t *testing.T) {
	if n := New(filepath.Join(t.TempDir(), "missing")).Snapshot().Len(); n != 0 {
		t.Errorf("a snapshot with no /proc saw %d processes", n)
	}
}

func TestSnapshotUsage(t *testing.T) {
	fs := writeProc(t, map[string]string{
		"10": statLine(10, "worker", 1, 10, 100, 50, 1000),
		"11": statLine(11, "child", 10, 10, 20, 30, 500),
		"12": statLine(12, "stranger", 1, 12, 999, 999, 999),
	})
	u := fs.Snapshot().Usage(10)
	if want := int64(1500 * os.Getpagesize()); u.RSSBytes != want {
		t.Errorf("RSS = %d, want %d", u.RSSBytes, want)
	}
	if u.CPUSeconds != 2.0 {
		t.Errorf("CPU = %v s, want 2 (200 ticks)", u.CPUSeconds)
	}
}

func TestParseStat(t *testing.T) {
	// A real line, with a command name holding a space and a parenthesis.
	const line = "4242 (my app) x) S 1 4242 4242 0 -1 4194560 2214 0 0 0 151 37 0 0 20 0 9 0 1234567 1262718976 6718 18446744073709551615 1 1 0 0 0 0 0 0 2143420159 0 0 0 17 1 0 0 0 0 0"
	s, err := ParseStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if s.State != 'S' || s.PPID != 1 || s.PGRP != 4242 || s.UTime != 151 || s.STime != 37 || s.RSSPages != 6718 {
		t.Errorf("ParseStat = %+v, want state S, ppid 1, pgrp 4242, utime 151, stime 37, rss 6718", s)
	}
	for _, bad := range []string{"", "1 (x) S 1 2 3", "1 no parens", "1 (x) S y 1 1 0 -1 0 0 0 0 0 a b 0 0 0 0 0 0 0 0 c"} {
		if _, err := ParseStat(bad); err == nil {
			t.Errorf("ParseStat(%q) did not fail", bad)
		}
	}
}

func TestUsageOfThisProcess(t *testing.T) {
	u := Host.Snapshot().Usage(os.Getpid())
	if u.RSSBytes < 1<<20 || u.RSSBytes > 1<<34 {
		t.Errorf("RSS of the test binary = %d bytes, not plausible", u.RSSBytes)
	}
	if u.CPUSeconds < 0 {
		t.Errorf("CPU = %f", u.CPUSeconds)
	}
}

func TestParseStatusBytes(t *testing.T) {
	status := "Name:\tnarwhal\nVmPeak:\t 1262944 kB\nVmHWM:\t   11520 kB\nVmRSS:\t   11000 kB\n"
	if got, ok := parseStatusBytes(status, "VmHWM"); !ok || got != 11520<<10 {
		t.Errorf("VmHWM = %d, %v; want %d", got, ok, 11520<<10)
	}
	if _, ok := parseStatusBytes(status, "VmSwap"); ok {
		t.Error("a key that is absent was found")
	}
	if got, ok := Host.PeakRSS(os.Getpid()); !ok || got < 1<<20 {
		t.Errorf("this process's peak RSS = %d, %v", got, ok)
	}
}
