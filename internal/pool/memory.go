package pool

import (
	"slices"
	"syscall"
	"time"
)

// Budget is what NARWHAL_MEMORY_BUDGET does when the container's working set is over it: which
// ready worker to replace (the one holding the most memory), and whether to stop it first. Its
// replacement starts first when the room left under the limit holds one more worker of the
// pool's median size; otherwise the worker stops first, since a short dip in capacity beats an
// OOM kill of the whole container.
type Budget struct {
	Worker    Worker
	Bytes     int64 // its memory
	Median    int64 // the ready workers' median
	StopFirst bool
}

// ChooseBudget picks the worker for Budget among workers, with size giving each one's memory
// and room the bytes left under the limit. It returns false with no ready worker.
func ChooseBudget(workers []Worker, size func(Worker) int64, room int64) (Budget, bool) {
	var sizes []int64
	var b Budget
	for _, w := range workers {
		if w.State != Ready {
			continue
		}
		n := size(w)
		sizes = append(sizes, n)
		if b.Worker.PID == 0 || n > b.Bytes {
			b.Worker, b.Bytes = w, n
		}
	}
	if b.Worker.PID == 0 {
		return Budget{}, false
	}
	slices.Sort(sizes)
	b.Median = sizes[len(sizes)/2]
	b.StopFirst = room < b.Median
	return b, true
}

// oomWindow is how long an OOM kill counted in the cgroup may be claimed by a worker's SIGKILL
// exit; older ones were another process's (a worker's child).
const oomWindow = 5 * time.Second

// OOMLedger names the kernel OOM killer's victims among the workers: a worker that died of a
// SIGKILL narwhal did not send, while the cgroup's count of OOM kills rose in the last few
// seconds. Each counted kill explains one exit.
type OOMLedger struct {
	seen, pending uint64
	at            time.Time
}

// Base takes the cgroup's count before the pool starts: earlier kills are not the pool's.
func (l *OOMLedger) Base(count uint64) { l.seen = count }

// Note takes the cgroup's count of OOM kills at now.
func (l *OOMLedger) Note(now time.Time, count uint64) {
	if count > l.seen {
		l.pending += count - l.seen
		l.seen, l.at = count, now
	}
}

// Claim reports whether an exit with code at now was an OOM kill, and uses up that kill.
func (l *OOMLedger) Claim(now time.Time, code int) bool {
	if code != 128+int(syscall.SIGKILL) || l.pending == 0 || now.Sub(l.at) > oomWindow {
		return false
	}
	l.pending--
	return true
}
