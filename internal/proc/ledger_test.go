package proc

import "testing"

// TestCPULedgerNeverFalls: a child that exits, a PID that comes back as another process and a
// worker replaced in its slot never make a slot's total fall.
func TestCPULedgerNeverFalls(t *testing.T) {
	l := NewCPULedger()
	last := 0.0
	look := func(what string, stats map[int]Stat, roots map[int]int) {
		t.Helper()
		l.Observe(NewSnapshot(stats), roots)
		got := l.Totals()[0]
		if got < last {
			t.Fatalf("%s: slot 0 fell from %v to %v", what, last, got)
		}
		last = got
	}
	look("worker and child", map[int]Stat{10: {PPID: 1, UTime: 100}, 11: {PPID: 10, UTime: 300}}, map[int]int{10: 0})
	if last != 4 {
		t.Fatalf("total %v, want 4", last)
	}
	look("child gone", map[int]Stat{10: {PPID: 1, UTime: 110}}, map[int]int{10: 0})
	look("PID 11 reused", map[int]Stat{10: {PPID: 1, UTime: 110}, 11: {PPID: 10, UTime: 5}}, map[int]int{10: 0})
	look("worker replaced", map[int]Stat{20: {PPID: 1, UTime: 1}}, map[int]int{20: 0})
	if want := 4.1 + 0.05 + 0.01; last < want-1e-9 || last > want+1e-9 {
		t.Errorf("total %v, want %v", last, want)
	}
}
