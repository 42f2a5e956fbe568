package proc

// CPULedger keeps narwhal_worker_cpu_seconds_total{slot} growing, as a Prometheus counter must.
// A slot's total is what every process seen in it has used: each process counts at the most it
// was seen with, and its figure stays in the total when it is gone. Summing only the live
// processes would fall whenever a worker's child or the worker itself exits (the time of a
// process reaped by narwhal, PID 1, is nobody's cutime); what a process used between the last
// look and its end is the only part lost.
type CPULedger struct {
	seen    map[int]cpuSeen // by PID, at the last look
	retired map[int]float64 // by slot: seconds of processes gone
}

type cpuSeen struct {
	slot    int
	seconds float64
}

// NewCPULedger returns an empty ledger.
func NewCPULedger() *CPULedger {
	return &CPULedger{seen: map[int]cpuSeen{}, retired: map[int]float64{}}
}

// Observe takes snap's figures for every process in the tree of each root, a worker's PID
// mapped to its slot.
func (l *CPULedger) Observe(snap *Snapshot, roots map[int]int) {
	now := make(map[int]cpuSeen, len(l.seen))
	for root, slot := range roots {
		for _, pid := range snap.Tree(root) {
			if _, dup := now[pid]; dup {
				continue
			}
			st, _ := snap.Stat(pid)
			now[pid] = cpuSeen{slot: slot, seconds: st.CPUSeconds()}
		}
	}
	for pid, old := range l.seen {
		// Gone, or a new process under a reused PID (less time than the old one had), or
		// moved to another slot: the old figure is final.
		if cur, ok := now[pid]; !ok || cur.seconds < old.seconds || cur.slot != old.slot {
			l.retired[old.slot] += old.seconds
		}
	}
	l.seen = now
}

// Totals is each slot's CPU time so far.
func (l *CPULedger) Totals() map[int]float64 {
	out := make(map[int]float64, len(l.retired))
	for slot, secs := range l.retired {
		out[slot] = secs
	}
	for _, c := range l.seen {
		out[c.slot] += c.seconds
	}
	return out
}
